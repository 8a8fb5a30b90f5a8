"""The Mail value: one message as the pure core sees it, wherever it came from."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING

from forwarder.text import mime

if TYPE_CHECKING:
    from email.message import Message


@dataclass(frozen=True)
class Reads:
    """What deciding about a mail reads of it: the IMAP side fetches that, and no more.

    Computed from the compiled rules and guards (``RuleSet.reads``). ``header_fields``
    holds lowercased field names; ``structure`` is whether a rule looks at the MIME
    structure (``has_attachment``); ``body`` whether one reads the body text. The size
    and the folder are always known.
    """

    header_fields: frozenset[str] = frozenset()
    structure: bool = False
    body: bool = False

    def __or__(self, other: Reads) -> Reads:
        return Reads(
            self.header_fields | other.header_fields,
            self.structure or other.structure,
            self.body or other.body,
        )


@dataclass(frozen=True)
class Likely:
    """Header words that a mail the forward rules can match holds at least one of.

    Each term is (header field name, casefolded text): "this field contains this text,
    ignoring case". Computed from the compiled rules (``RuleSet.likely``), it lets a
    backlog be *ordered*: the mail a server-side SEARCH finds for these terms is decided
    first (``imap.checkpoints``). It never narrows anything: every mail is decided anyway,
    so a server that matches words where the rules match substrings, or decodes headers
    its own way, can only make the hint less useful, never make mail be missed.
    """

    terms: tuple[tuple[str, str], ...]


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
        """The whole MIME tree: for the body and the parts. Header lookups use ``head``."""
        return mime.parse_message(self.raw)

    @cached_property
    def head(self) -> mime.HeaderFields:
        """The header fields, the same values as ``message`` has, read without parsing MIME.

        Most mail is decided on a few header fields and never read further; parsing it
        into a ``Message`` would cost several times more than deciding.
        """
        return mime.read_headers(self.raw)

    def header(self, name: str) -> str:
        """The decoded value of the first header called ``name``, or ''."""
        return mime.decode_header(self.head.get(name))

    def headers(self, name: str) -> list[str]:
        return [mime.decode_header(v) for v in self.head.get_all(name)]

    def addresses(self, name: str) -> list[tuple[str, str]]:
        """(display name, address) pairs of an address header."""
        return mime.parse_addresses(self.head.get_all(name))

    @cached_property
    def message_id(self) -> str:
        return (self.head.get("Message-ID") or "").strip()

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
        return mime.parse_date(self.head.get("Date"))

    @cached_property
    def body(self) -> str:
        """The readable body text (see ``forwarder.text.transform.body_text``), computed once.

        The transformer (HTML, quotes, signatures) is imported here, on first use: the
        rules, ``check`` and ``test`` build Mail values and never need it (bench_cli).
        """
        from forwarder.text import transform

        return transform.body_text(self.message)

    @property
    def total_size(self) -> int:
        return self.size if self.size is not None else len(self.raw)

    @cached_property
    def has_attachment(self) -> bool:
        """Whether any part is a file the mail carries (``mime.is_attachment``)."""
        if self.attachment_hint is not None:
            return self.attachment_hint
        return any(mime.part_is_attachment(part) for part in self.message.walk())

    def describe(self) -> str:
        """How log lines name this mail: folder/UID and Message-ID."""
        return f"{self.folder}/{self.uid} {self.message_id or '<no Message-ID>'}"
