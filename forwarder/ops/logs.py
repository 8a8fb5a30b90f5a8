"""Log lines: plain for journald (the default), or one JSON object per line for collectors.

``--log-format json`` / ``log_format: json`` prints, per record::

    {"time": "2024-05-01T09:12:03.120+00:00", "level": "INFO", "logger": "forwarder.daemon",
     "message": "mail …: forward (rule urgent)", "folder": "INBOX", "uid": 42,
     "message_id": "<a@b>", "rule": "urgent", "sms_id": 7}

``message_id`` (the mail's Message-ID), ``rule``, ``folder``, ``uid`` and ``sms_id``
(the outbox row) appear where the call passes them as ``extra={...}``; no other
``extra`` key is ever printed, so a body or a header handed to a log call by mistake
does not come out. ``exc`` carries a traceback when there is one.

Both formats pass every line through a ``Scrubber`` holding the secret values of the
running config (the IMAP, SMTP and gateway passwords, the API key, the health ping
URL), the approach ``delivery.sender.Sender.scrub`` takes for server replies: text
that quotes a secret — a server echoing a login, an exception holding a URL — shows
``***`` instead.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from forwarder.config import Config

from forwarder.gateway.account import MASK

__all__ = [
    "FIELDS",
    "FORMATS",
    "SCRUBBER",
    "JsonFormatter",
    "PlainFormatter",
    "Scrubber",
    "config_secrets",
    "configure_logging",
]

FORMATS = ("plain", "json")
#: The only ``extra`` keys a JSON line carries (values from the LogRecord).
FIELDS = ("message_id", "rule", "folder", "uid", "sms_id")
PLAIN = "%(levelname)s %(name)s: %(message)s"


class Scrubber:
    """Masks known secret values in text. ``update()`` after a reload; thread-safe."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._secrets: tuple[str, ...] = ()
        self.update(secrets)

    def update(self, secrets: Iterable[str]) -> None:
        # Longest first: a secret that contains another is masked whole.
        ordered = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))
        with self._lock:
            self._secrets = ordered

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text


#: The process's scrubber: ``configure_logging`` installs it; after a reload the daemon
#: calls ``SCRUBBER.update(config_secrets(new_config))``.
SCRUBBER = Scrubber()


def config_secrets(config: Config) -> tuple[str, ...]:
    """Every secret value of a ``forwarder.config.Config``, revealed, for a ``Scrubber``."""
    found = [
        config.imap.password,
        config.smtp.password,
        config.gateway.password,
        config.gateway.api_key,
        config.health.ping_url,
    ]
    return tuple(s.reveal() for s in found if s is not None and s.reveal())


class PlainFormatter(logging.Formatter):
    """``LEVEL logger: message``, as before, scrubbed."""

    def __init__(self, scrub: Scrubber | None = None) -> None:
        super().__init__(PLAIN)
        self.scrub = scrub or Scrubber()

    def format(self, record: logging.LogRecord) -> str:
        return self.scrub(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (``json.dumps`` escapes line breaks)."""

    def __init__(self, scrub: Scrubber | None = None) -> None:
        super().__init__()
        self.scrub = scrub or Scrubber()

    def format(self, record: logging.LogRecord) -> str:
        scrub = self.scrub
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": scrub(record.getMessage()),
        }
        for field in FIELDS:
            value = record.__dict__.get(field)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                value = scrub(str(value))
            entry[field] = value
        if record.exc_info:
            entry["exc"] = scrub(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exc"] = scrub(record.exc_text)
        if record.stack_info:
            entry["stack"] = scrub(self.formatStack(record.stack_info))
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(
    level: str,
    fmt: str = "plain",
    *,
    scrubber: Scrubber | None = None,
    stream: IO[str] | None = None,
) -> logging.Handler:
    """Logging for ``forwarder run``: one handler on the root logger, in ``fmt``.

    Like ``logging.basicConfig`` (which it calls) it leaves a root logger that already
    has handlers alone. Lines are scrubbed by ``scrubber`` (default: ``SCRUBBER``).
    """
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    scrubber = SCRUBBER if scrubber is None else scrubber
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(scrubber) if fmt == "json" else PlainFormatter(scrubber))
    logging.basicConfig(level=getattr(logging, level), handlers=[handler])
    # imapclient logs protocol lines at DEBUG; they are redacted, but not needed.
    logging.getLogger("imapclient").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    return handler
