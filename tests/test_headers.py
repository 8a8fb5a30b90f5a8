"""``mime.read_headers`` gives exactly the header values ``mime.parse_message`` gives.

Mail is decided on its header fields read without the stdlib parser (``Mail.head``); the
transformer and the reply tracker still read the parsed ``Message``. The two must never
disagree, or a rule would see one Subject and the SMS show another: so the light reader is
held to the stdlib on every shape hypothesis can build from the characters that matter
(line ends CR, LF and CRLF, folding whitespace, colons, "From " lines, 8-bit bytes,
encoded words), and on the corpus.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from forwarder.mail import Mail
from forwarder.text import mime
from tests.support.shared import shared_dir

FIXTURES = Path(__file__).resolve().parent / "fixtures"

# The shared corpus sits beside the checkout (or beside the folder of worktrees).
CORPUS = next(
    (
        p / "shared" / "corpus"
        for p in Path(__file__).parents[1:4]
        if (p / "shared" / "corpus").is_dir()
    ),
    Path(__file__).parents[2] / "shared" / "corpus",
)

NAMES = ["Subject", "subject", "From", "To", "X-Foo", "x-foo", "Content-Type", "Received", "A"]
PIECES = [
    *[f"{name}: " for name in NAMES],
    *[f"{name} : " for name in NAMES],  # RFC 5322 §4.5.3 obsolete space before the colon
    "From ",
    ":",
    " ",
    "\t",
    "\r\n",
    "\n",
    "\r",
    "value",
    "=?utf-8?b?0J/RgNC40LLRltGC?=",
    "=?koi8-r?q?=F0=D2=C9?=",
    "charset=windows-1251",
    "\x0b",
    "\x0c",
    "\x00",
]
BYTES = [b"\xcf\xf0\xe8\xe2\xb3\xf2", b"\xd0\x9f\xd1\x80", b"\xff", b"\x85"]


def fragments() -> st.SearchStrategy[bytes]:
    text = st.sampled_from(PIECES).map(lambda piece: piece.encode("utf-8"))
    return st.lists(st.one_of(text, st.sampled_from(BYTES)), max_size=40).map(b"".join)


def assert_same(raw: bytes) -> None:
    message = mime.parse_message(raw)
    head = mime.read_headers(raw)
    assert head.names == {name.lower() for name in message}
    for name in {*head.names, *(n.lower() for n in NAMES)}:
        assert head.get_all(name) == message.get_all(name, []), name
        assert head.get(name) == message.get(name), name


@settings(max_examples=600, deadline=None)
@given(fragments(), st.sampled_from([b"", b"\r\n\r\nbody\r\n", b"\n\nbody", b"\r\rbody"]))
@example(b"From bob Mon Jan 1\r\nSubject: x\r\n", b"")
@example(b"Subject: x\r\nFrom bob", b"")
@example(b" leading continuation\r\nSubject: x\r\n", b"\r\n\r\n")
@example(b":no name\r\n cont\r\nSubject: x\r\n", b"\r\n")
@example(b"Subject : spaced\r\nTo : a@example.org\r\n", b"\r\n\r\nbody")
@example(
    b"Subject: \xcf\xf0\xe8\xe2\xb3\xf2\r\n",
    b"\r\n\r\n--b\r\nContent-Type: text/plain; charset=windows-1251\r\n",
)
@example(b"Subject: x\r\nnot a header line\r\nTo: y\r\n", b"\r\n")
@example(b"Subject: a\x0bb\r\n", b"")
def test_same_values_as_the_stdlib_parser(header: bytes, body: bytes) -> None:
    assert_same(header + body)


@given(st.lists(st.sampled_from([b"\r", b"\n", b"a", b":", b" "]), max_size=30).map(b"".join))
def test_header_end_is_found_where_the_regex_finds_it(raw: bytes) -> None:
    match = mime._HEADER_END.search(raw)
    assert mime._header_span(raw) == ((match.start(), match.end()) if match else None)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\r\n",
        b"Subject: folded\r\n  on two\r\n\tlines\r\nX-Empty:\r\nX-Foo: 1\r\nx-foo: 2\r\n\r\nbody",
        b"From: =?utf-8?b?0J/RgNC40LLRltGC?= <a@example.org>\r\n\r\n",
        b"Subject: only a header, no blank line",
    ],
)
def test_same_values_on_examples(raw: bytes) -> None:
    assert_same(raw)


def test_same_values_on_the_corpus_and_the_fixtures() -> None:
    files = sorted((shared_dir() / "corpus").rglob("*.eml"))
    assert files
    for path in [*files, *sorted(FIXTURES.rglob("*.eml"))]:
        assert_same(path.read_bytes())


def test_mail_reads_headers_without_parsing_the_message() -> None:
    raw = (
        b"From: Alice <alice@example.org>\r\nTo: bob@example.net\r\nSubject: =?utf-8?q?Hi?=\r\n"
        b"Message-ID: <1@example.org>\r\nDate: Mon, 05 Jan 2026 12:00:00 +0200\r\n"
        b'Content-Type: multipart/alternative; boundary="b"\r\n\r\n--b\r\n\r\ntext\r\n--b--\r\n'
    )
    mail = Mail(raw)
    assert (mail.subject, mail.sender, mail.message_id) == (
        "Hi",
        ("Alice", "alice@example.org"),
        "<1@example.org>",
    )
    assert mail.date is not None and mail.addresses("To") == [("", "bob@example.net")]
    assert "message" not in mail.__dict__  # no Message was built for any of that
    assert mail.body == "text"  # the body still comes from the parsed message
