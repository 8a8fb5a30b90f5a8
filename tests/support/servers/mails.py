"""Build test messages with the stdlib, so each test states the shape it needs in one call."""

from __future__ import annotations

import email.policy
import email.utils
import itertools
from collections.abc import Mapping
from datetime import datetime
from email.message import EmailMessage

DEFAULT_FROM = "Alice Sender <alice@example.org>"
DEFAULT_TO = "Bob Owner <bob@example.net>"
MESSAGE_ID_DOMAIN = "test.forwarder.invalid"  # RFC 2606: .invalid never resolves

_sequence = itertools.count(1)


def make_message_id(domain: str = MESSAGE_ID_DOMAIN) -> str:
    """A unique Message-ID; the counter keeps ids distinct inside one process and run."""
    return email.utils.make_msgid(idstring=str(next(_sequence)), domain=domain)


def make_mail(
    subject: str = "Test message",
    body: str = "Hello from the test harness.\n",
    *,
    from_: str = DEFAULT_FROM,
    to: str = DEFAULT_TO,
    message_id: str | None = None,
    headers: Mapping[str, str] | None = None,
    charset: str = "utf-8",
    html: str | None = None,
    date: datetime | None = None,
) -> bytes:
    """An RFC 5322 message as bytes with CRLF line ends, ready for IMAP APPEND or SMTP.

    ``html`` turns the message into multipart/alternative (``body`` is the text part);
    ``headers`` are set after the standard ones and replace any of the same name.
    Non-ASCII subjects and names are RFC 2047-encoded by the stdlib policy.
    """
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = from_
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = email.utils.format_datetime(date) if date else email.utils.formatdate()
    msg["Message-ID"] = message_id or make_message_id()
    for name, value in (headers or {}).items():
        del msg[name]
        msg[name] = value
    msg.set_content(body, charset=charset)
    if html is not None:
        msg.add_alternative(html, subtype="html", charset=charset)
    return msg.as_bytes()
