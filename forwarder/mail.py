"""The Mail value: one message as the pure core sees it, wherever it came from."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from email.message import Message
from functools import cached_property

from forwarder.text import mime


@dataclass(frozen=True)
class Mail:
    """A message with the facts the IMAP server told us about it.

    ``raw`` may be partial: the watcher fetches the headers and only the first
    few KiB of the text parts (never attachments), so ``size`` and
    ``has_attachment`` come from the server when it knows better than ``raw``.
    """

    raw: bytes
    folder: str = "INBOX"
    uid: int = 0
    uidvalidity: int = 0
    size: int | None = None
    flags: frozenset[str] = field(default_factory=frozenset)
    internal_date: datetime | None = None
    attachment_hint: bool | None = None
    account: str = "default"  # the name of the IMAP account it came from (config accounts:)

    @cached_property
    def message(self) -> Message:
        return mime.parse_message(self.raw)

    def header(self, name: str) -> str:
        """The decoded value of the first header called ``name``, or ''."""
        return mime.decode_header(self.message.get(name))

    def headers(self, name: str) -> list[str]:
        return [mime.decode_header(v) for v in self.message.get_all(name, [])]

    def addresses(self, name: str) -> list[tuple[str, str]]:
        """(display name, address) pairs of an address header."""
        return mime.parse_addresses(self.message.get_all(name, []))

    @cached_property
    def message_id(self) -> str:
        return self.message.get("Message-ID", "").strip()

    @cached_property
    def subject(self) -> str:
        return self.header("Subject")

    @cached_property
    def sender(self) -> tuple[str, str]:
        """(display name, address) of From, ('', '') when absent or unparsable."""
        found = self.addresses("From")
        return found[0] if found else ("", "")

    @cached_property
    def date(self) -> datetime | None:
        return mime.parse_date(self.message.get("Date"))

    @cached_property
    def body(self) -> str:
        """The readable body text (see ``forwarder.text.transform.body_text``), computed once."""
        from forwarder.text.transform import (
            body_text,  # the transformer imports Mail: avoid a cycle
        )

        return body_text(self.message)

    @property
    def total_size(self) -> int:
        return self.size if self.size is not None else len(self.raw)

    @cached_property
    def has_attachment(self) -> bool:
        if self.attachment_hint is not None:
            return self.attachment_hint
        for part in self.message.walk():
            disposition = (part.get("Content-Disposition") or "").split(";")[0].strip().lower()
            if disposition == "attachment" or (
                part.get_filename() and part.get_content_maintype() != "multipart"
            ):
                return True
        return False

    def describe(self) -> str:
        """How log lines name this mail: folder/UID and Message-ID."""
        return f"{self.folder}/{self.uid} {self.message_id or '<no Message-ID>'}"
