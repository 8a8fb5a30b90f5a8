"""Composing the e-mail that asks the gateway to send one SMS (pure: values in, message out)."""

from __future__ import annotations

import email.utils
import secrets
from datetime import datetime
from email.message import EmailMessage

from forwarder.gateway.account import Request


def new_message_id(domain: str) -> str:
    """A Message-ID in forwarder's own domain: its mail and the gateway's replies to it are
    recognisable (loop guard, reply tracker), and it is generated once and reused on retries."""
    return f"<fwd.{secrets.token_hex(12)}@{domain}>"


def compose(
    request: Request, text: str, *, from_addr: str, message_id: str, date: datetime | None = None
) -> EmailMessage:
    """The Email2SMS request: To the number, Subject the alpha-name (and secrets), body the SMS.

    The charset is always declared (seed §Limits: without one the gateway
    assumes UTF-8, but a relay might re-label an undeclared body). The
    Subject is built only from validated tokens, so it is plain ASCII with no
    ';', CR or LF smuggled in. ``Auto-Submitted: auto-generated`` (RFC 3834)
    tells well-behaved responders not to answer with vacation mail.
    """
    message = EmailMessage()
    message["From"] = from_addr
    message["To"] = request.to
    message["Subject"] = request.subject.reveal()
    message["Date"] = email.utils.format_datetime(date) if date else email.utils.formatdate()
    message["Message-ID"] = message_id
    message["Auto-Submitted"] = "auto-generated"
    message["X-Auto-Response-Suppress"] = "All"  # Exchange's equivalent of RFC 3834
    message.set_content(text, subtype="plain", charset="utf-8")
    return message
