"""Robust decoding of what real mail puts in headers: RFC 2047 words, addresses, dates."""

from __future__ import annotations

import email
import email.header
import email.policy
import email.utils
from datetime import datetime
from email.message import Message


def parse_message(raw: bytes) -> Message:
    """Parse bytes into a Message without ever raising.

    compat32 is used on purpose: the modern policy raises on some malformed
    headers when they are read, and a mail daemon must read anything.
    """
    return email.message_from_bytes(raw, policy=email.policy.compat32)


def decode_header(value: object) -> str:
    """Decode a header value (RFC 2047 encoded words) to text; never raises."""
    if value is None:
        return ""
    text = str(value)
    try:
        parts = email.header.decode_header(text)
    except Exception:
        return " ".join(text.split())
    out: list[str] = []
    for chunk, charset in parts:
        if isinstance(chunk, bytes):
            try:
                out.append(chunk.decode(charset or "utf-8", errors="replace"))
            except LookupError:
                out.append(chunk.decode("utf-8", errors="replace"))
        else:
            out.append(chunk)
    return " ".join("".join(out).split())


def parse_addresses(values: list[str]) -> list[tuple[str, str]]:
    """(display name, address) pairs from address headers; names decoded, addresses lowercased."""
    pairs = email.utils.getaddresses([str(v) for v in values])
    return [(decode_header(name), addr.strip().lower()) for name, addr in pairs if name or addr]


def parse_date(value: object) -> datetime | None:
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(str(value))
    except (TypeError, ValueError, IndexError):
        return None
