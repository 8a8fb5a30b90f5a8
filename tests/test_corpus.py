"""Every corpus mail becomes a sane SMS: whole, and cut short as the daemon fetches it."""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime
from email.message import Message
from pathlib import Path

import pytest

from forwarder.mail import Mail
from forwarder.text import mime
from forwarder.text.smstext import SMS_MAX_CHARS, SmsOptions
from forwarder.text.transform import body_parts, body_text, render
from tests.support.shared import shared_dir

CORPUS = Path(__file__).parents[2] / "shared" / "corpus"
FILES = sorted(CORPUS.rglob("*.eml")) if CORPUS.is_dir() else []
NOW = datetime(2024, 11, 25, 12, 0, tzinfo=UTC)

#: The daemon fetches ``BODY.PEEK[part]<0.N>``; the test cuts each text part to this.
PARTIAL_FETCH_BYTES = 2048
#: Besides the 2 KiB cut, each file is cut at this many random offsets (seeded by name).
RANDOM_CUTS = 3

#: Mojibake: UTF-8 read as windows-1252 ("Ã©"), UTF-8 Cyrillic read as windows-1252
#: ("Ð¿Ñ€Ð¸"), and characters lost to a failed decode (U+FFFD).
MOJIBAKE = {
    "Ã": re.compile("Ã"),
    "Ð/Ñ run": re.compile("(?:[ÐÑ].){2,}"),
    "U+FFFD": re.compile("\ufffd"),
}
#: Bytes that show the source itself holds the marker (then it is not our fault).
MARKER_IN_SOURCE = {"Ã": "Ã".encode(), "Ð/Ñ run": "Ð".encode(), "U+FFFD": "\ufffd".encode()}

#: What a cut must never leave at the end of the body: half a quoted-printable escape,
#: and in HTML half a tag or character reference.  (Plain text may end mid-word.)
QP_DEBRIS = re.compile(r"=[0-9A-F]?\Z")
HTML_DEBRIS = re.compile(r"(?:<[a-zA-Z/!][^>]*|&#?[a-zA-Z0-9]{1,8})\Z")


def _name(path: Path) -> str:
    return str(path.relative_to(CORPUS))


def test_corpus_is_there() -> None:
    shared_dir()  # without ../shared: skipped, or failed when CI is set
    assert len(FILES) > 100, f"{len(FILES)} .eml files under {CORPUS}, expected the 103 mails"


def _assert_sane(raw: bytes, source: bytes, name: str) -> None:
    mail = Mail(raw)
    body = body_text(mail.message)  # must not raise on its own either
    sms = render(mail, SmsOptions(), rule="corpus", now=NOW)
    assert sms.text, name
    assert len(sms.text) <= sms.length <= SMS_MAX_CHARS, name
    assert sms.encoding in ("gsm7", "ucs2")
    assert sms.segments >= 1
    for label, pattern in MOJIBAKE.items():
        if MARKER_IN_SOURCE[label] in source:
            continue
        for text in (sms.text, body, mail.subject, mail.sender[0]):
            assert not pattern.search(text), f"{name}: {label} in {text[:200]!r}"
    html = any(part.get_content_subtype() == "html" for part in body_parts(mail.message))
    debris = HTML_DEBRIS if html else QP_DEBRIS
    assert not debris.search(body), f"{name}: cut debris at the end of {body[-80:]!r}"


@pytest.mark.parametrize("path", FILES, ids=_name)
def test_corpus_mail_renders(path: Path) -> None:
    raw = path.read_bytes()
    _assert_sane(raw, raw, _name(path))


def _text_leaves(message: Message) -> list[Message]:
    return [
        part
        for part in message.walk()
        if not part.is_multipart() and part.get_content_maintype() == "text"
    ]


def _truncated(raw: bytes, cut: int) -> bytes:
    """``raw`` with every text part's encoded body cut to ``cut`` bytes, as a partial fetch."""
    message = mime.parse_message(raw)
    for part in _text_leaves(message):
        payload = part._payload
        if isinstance(payload, str):
            encoded = payload.encode("ascii", "surrogateescape")
            part._payload = encoded[:cut].decode("ascii", "surrogateescape")
    try:
        return message.as_bytes()
    except Exception:  # the generator cannot write every broken message back
        return raw[: raw.find(b"\n\n") + cut] if b"\n\n" in raw else raw[:cut]


@pytest.mark.parametrize("path", FILES, ids=_name)
def test_corpus_mail_renders_when_fetched_partially(path: Path) -> None:
    raw = path.read_bytes()
    rng = random.Random(_name(path))
    cuts = [PARTIAL_FETCH_BYTES] + [rng.randint(1, PARTIAL_FETCH_BYTES) for _ in range(RANDOM_CUTS)]
    for cut in cuts:
        _assert_sane(_truncated(raw, cut), raw, f"{_name(path)} cut at {cut}")
