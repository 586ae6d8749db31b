"""Mail with smtplib: one message when a job starts failing and one when it recovers.

Login comes from a root-only TOML secrets file:

    username = "agent@example.org"
    password = "..."

Example:

    Mailer(config.mail).send("backup failed", "pg_dump exited with 1 ...")
"""

from __future__ import annotations

import logging
import smtplib
import socket
import ssl
import tomllib
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from socle_agent.config import MailSection

log = logging.getLogger(__name__)


class MailError(Exception):
    """A mail could not be handed to the SMTP server."""


class Mailer:
    """Sends mails as the [mail] section says; a disabled section sends nothing."""

    def __init__(self, section: MailSection) -> None:
        self.section = section

    @property
    def enabled(self) -> bool:
        """Whether mails are sent at all."""
        return self.section.enabled

    def _credentials(self) -> tuple[str, str] | None:
        if self.section.secrets_file is None:
            return None
        with open(self.section.secrets_file, "rb") as handle:
            secrets = tomllib.load(handle)
        try:
            return str(secrets["username"]), str(secrets["password"])
        except KeyError as exc:
            raise MailError(f"{self.section.secrets_file}: missing key {exc}") from exc

    def _tls_context(self) -> ssl.SSLContext:
        ca = str(self.section.ca_file) if self.section.ca_file else None
        return ssl.create_default_context(cafile=ca)

    def send(self, subject: str, body: str) -> None:
        """Send one mail to every recipient; raises MailError when it cannot."""
        section = self.section
        message = EmailMessage()
        message["Subject"] = f"{section.subject_prefix} {subject}".strip()
        message["From"] = section.from_addr
        message["To"] = ", ".join(section.to)
        message["Date"] = formatdate(localtime=True)
        # the host name as the system knows it: getfqdn() (smtplib's default for EHLO too)
        # asks DNS, which may not answer for a long time
        local_name = socket.gethostname()
        message["Message-ID"] = make_msgid(domain=local_name)
        message.set_content(body)
        try:
            smtp: smtplib.SMTP
            if section.security == "tls":
                smtp = smtplib.SMTP_SSL(
                    section.host,
                    section.port,
                    local_hostname=local_name,
                    timeout=section.timeout_seconds,
                    context=self._tls_context(),
                )
            else:
                smtp = smtplib.SMTP(section.host, section.port, local_hostname=local_name,
                                    timeout=section.timeout_seconds)
            with smtp:
                if section.security == "starttls":
                    smtp.starttls(context=self._tls_context())
                credentials = self._credentials()
                if credentials:
                    smtp.login(*credentials)
                smtp.send_message(message)
        except (OSError, smtplib.SMTPException, tomllib.TOMLDecodeError) as exc:
            raise MailError(f"cannot send mail via {section.host}:{section.port}: {exc}") from exc
        log.info("mail sent: %s", subject)
