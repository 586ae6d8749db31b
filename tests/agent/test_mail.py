"""Mail through a real SMTP receiver: plain, STARTTLS with login, implicit TLS."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from socle_agent.config import MailSection
from socle_agent.mail import Mailer, MailError

from tests.agent.conftest import Mailbox, _Collect, free_port


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (openssl)."""
    base = tmp_path_factory.mktemp("tls")
    cert, key = base / "cert.pem", base / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


def _authenticate(server: Any, session: Any, envelope: Any, mechanism: str,
                  auth_data: Any) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == b"agent" and \
        auth_data.password == b"pa:ss"
    return AuthResult(success=ok)


@pytest.fixture()
def tls_smtp(certificate: tuple[Path, Path]) -> Iterator[tuple[Mailbox, Mailbox]]:
    """Two receivers: STARTTLS requiring login, and implicit TLS."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*map(str, certificate))
    starttls = Mailbox("127.0.0.1", free_port())
    implicit = Mailbox("127.0.0.1", free_port())
    controllers = [
        Controller(_Collect(starttls), hostname="127.0.0.1", port=starttls.port,
                   tls_context=context, require_starttls=True, authenticator=_authenticate,
                   auth_required=True),
        Controller(_Collect(implicit), hostname="127.0.0.1", port=implicit.port,
                   ssl_context=context),
    ]
    for controller in controllers:
        controller.start()
    try:
        yield starttls, implicit
    finally:
        for controller in controllers:
            controller.stop()


def section(box: Mailbox, **kwargs: Any) -> MailSection:
    return MailSection(enabled=True, host=box.host, port=box.port, from_addr="agent@node.test",
                       to=("ops@node.test", "dba@node.test"), **kwargs)


def test_send_without_tls_delivers_subject_and_body(smtp: Mailbox) -> None:
    Mailer(section(smtp, security="none")).send("postgres_backup FAILED", "pg_dump exited")
    [message] = smtp.messages
    assert message["Subject"] == "[socle] postgres_backup FAILED"
    assert message["To"] == "ops@node.test, dba@node.test"
    assert "pg_dump exited" in message.get_payload()


def test_send_with_starttls_logs_in_from_secrets_file(
    tls_smtp: tuple[Mailbox, Mailbox], certificate: tuple[Path, Path], tmp_path: Path
) -> None:
    starttls, _ = tls_smtp
    secrets = tmp_path / "mail.toml"
    secrets.write_text('username = "agent"\npassword = "pa:ss"\n')
    Mailer(section(starttls, security="starttls", secrets_file=secrets,
                   ca_file=certificate[0])).send("hello", "body")
    assert starttls.subjects() == ["[socle] hello"]


def test_send_with_wrong_password_raises_mail_error(
    tls_smtp: tuple[Mailbox, Mailbox], certificate: tuple[Path, Path], tmp_path: Path
) -> None:
    starttls, _ = tls_smtp
    secrets = tmp_path / "mail.toml"
    secrets.write_text('username = "agent"\npassword = "wrong"\n')
    # The receiver stalls after a refused login; a short timeout keeps the test quick.
    mailer = Mailer(section(starttls, secrets_file=secrets, ca_file=certificate[0],
                            timeout_seconds=2.0))
    with pytest.raises(MailError, match="cannot send mail"):
        mailer.send("hello", "body")
    assert starttls.messages == []


def test_send_with_implicit_tls_verifies_the_certificate(
    tls_smtp: tuple[Mailbox, Mailbox], certificate: tuple[Path, Path]
) -> None:
    _, implicit = tls_smtp
    Mailer(section(implicit, security="tls", ca_file=certificate[0])).send("tls", "body")
    assert implicit.subjects() == ["[socle] tls"]
    with pytest.raises(MailError, match="CERTIFICATE_VERIFY_FAILED"):
        Mailer(section(implicit, security="tls")).send("untrusted", "body")
