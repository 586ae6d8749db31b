"""Logging set-up: plain lines for a terminal, priority-prefixed lines for the journal.

Under systemd, stderr goes to the journal ($JOURNAL_STREAM is set); a `<3>` style
prefix gives each line its priority there (journalctl -p err), and the journal adds
the time itself.
"""

from __future__ import annotations

import logging
import os
import sys

_PRIORITIES = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}


class JournalFormatter(logging.Formatter):
    """`<priority>logger: message`, one line per record (tracebacks indented on the same entry)."""

    def format(self, record: logging.LogRecord) -> str:
        """Format `record` for the journal."""
        text = super().format(record).replace("\n", "\n    ")
        return f"<{_PRIORITIES.get(record.levelno, 6)}>{text}"


def setup_logging(level: str = "INFO") -> None:
    """Send the agent's logs to stderr at `level`, in the form that suits where it goes."""
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
