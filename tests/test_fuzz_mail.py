"""Fuzzing: mutated mail through the whole mail → SMS path and the reply parser.

Seeds are the mails of ``../shared/corpus`` and ``../shared/extcorpus`` (when present)
and a few shapes written here; Hypothesis mutates them — header lines dropped, doubled,
unindented or replaced, MIME types, charsets and transfer encodings swapped, bodies
re-encoded, messages wrapped in messages, boundaries broken, bytes flipped, cut short —
and every result must go through ``Mail``, ``render``, ``pipeline.plan`` (rules,
guards, composition) and ``parse_reply``/``tie_reply`` without an exception escaping,
with every SMS within its limits and every text that is stored valid Unicode.  A fourth
test draws header values alone, densely: encoded words of every charset and shape.

Budget: the ``fuzz-ci`` profile (deterministic, about a minute on the project's 2-core
machine for the four tests together). By hand, for longer and random:
``FORWARDER_FUZZ=long FORWARDER_FUZZ_EXAMPLES=20000 pytest tests/test_fuzz_mail.py``.
"""

from __future__ import annotations

import base64
import binascii
import os
import quopri
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forwarder import config as config_module
from forwarder import pipeline
from forwarder.gateway.replies import DETAIL_MAX_CHARS, SentRequest, parse_reply, tie_reply
from forwarder.mail import Mail
from forwarder.text import smstext
from forwarder.text.smstext import SmsOptions
from forwarder.text.transform import render
from tests.support.configs import config_dict
from tests.support.shared import SHARED

pytestmark = pytest.mark.slow

#: Examples per test in CI: about 14 s each on the project's 2-core machine, 1 minute in all.
CI_EXAMPLES = 1200
settings.register_profile(
    "fuzz-ci",
    max_examples=CI_EXAMPLES,
    deadline=None,
    derandomize=True,  # the same examples every run: CI fails only on a real change
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "fuzz-long",
    max_examples=int(os.environ.get("FORWARDER_FUZZ_EXAMPLES") or 20_000),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FUZZ = settings.get_profile("fuzz-long" if os.environ.get("FORWARDER_FUZZ") else "fuzz-ci")

NOW = datetime(2024, 11, 25, 12, 0, tzinfo=UTC)


def _words(text: str) -> list[str]:
    return text.split()


INNER = (
    b"From: Alice <alice@example.org>\r\nSubject: inner\r\nDate: Mon, 25 Nov 2024 10:00:00 +0200"
    b"\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
) + "Сервер впав. The server room is on fire.\r\n".encode()
SEEDS: list[bytes] = [
    INNER,
    b"From: =?utf-8?B?0J7Qu9C10LM=?= <oleg@example.ua>\r\nTo: me@example.com\r\n"
    b"Subject: =?koi8-r?Q?=F3=DE=C5=D4?=\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/alternative; boundary="alt"\r\n\r\n--alt\r\n'
    b"Content-Type: text/plain; charset=windows-1251\r\nContent-Transfer-Encoding: "
    b"quoted-printable\r\n\r\n=D0=E0=F5=F3=ED=EE=EA =B9 7 soft=\r\nbreak\r\n--alt\r\n"
    b"Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    + base64.encodebytes("<p>Рахунок&nbsp;№7</p><style>p{x:y}</style>".encode())
    + b"--alt--\r\n",
    b"From: tickets@example.org\r\nSubject: fwd\r\nContent-Type: message/rfc822\r\n"
    b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(INNER),
    b'From: a@example.org\r\nSubject: split\r\nContent-Type: message/partial; id="x@y"; '
    b"number=2; total=3\r\n\r\nnlzNO8mVGVkbzXm8W55Zaellt0KqRv0ysF6H9+olv3MeCXGGNcLkE\r\n",
    b"From: bob@example.org\r\nSubject: secret\r\n"
    b'Content-Type: multipart/encrypted; boundary="e"; protocol="application/pgp-encrypted"'
    b"\r\n\r\n--e\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n--e\r\n"
    b"Content-Type: application/octet-stream\r\n\r\n-----BEGIN PGP MESSAGE-----\r\n\r\n"
    b"hF4DR2b2udXyHrYSAQdAaeIg60NLGEEqeARW\r\n-----END PGP MESSAGE-----\r\n--e--\r\n",
    b"From: MAILER-DAEMON@example.org\r\nSubject: Undelivered Mail\r\nAuto-Submitted: auto-"
    b'replied\r\nContent-Type: multipart/report; report-type=delivery-status; boundary="r"'
    b"\r\n\r\n--r\r\nContent-Type: text/plain\r\n\r\nThe mail could not be delivered.\r\n--r\r\n"
    b"Content-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.org\r\n\r\n"
    b"Final-Recipient: rfc822; x@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n--r\r\n"
    b"Content-Type: text/rfc822-headers\r\n\r\nSubject: AUTH\r\nMessage-ID: <a@b>\r\n--r--\r\n",
    b"From: noreply@alphasms.com.ua\r\nSubject: Re: MyAlpha;380501234567;pw\r\n"
    b"In-Reply-To: <1.abc@forwarder.example.org>\r\nContent-Type: text/html; charset=utf-8\r\n"
    b"\r\n<div>MSG:123 error</div><blockquote>On Mon wrote: hello</blockquote>\r\n",
    b"Subject: uu\r\n\r\nSee the logo:\r\nbegin 644 a.gif\r\n"
    + binascii.b2a_uu(b"GIF89a" + bytes(range(30)))
    + b"`\r\nend\r\n",
    b"Subject: flowed\r\nContent-Type: text/plain; format=flowed; delsp=yes\r\n\r\n"
    b"A long line that is \r\nsoft broken.\r\n> quoted \r\n> text\r\n-- \r\nsig\r\n",
]

HEADER_NAMES = _words(
    "Content-Type Content-Transfer-Encoding Content-Disposition Subject From To Date "
    "MIME-Version Message-ID Auto-Submitted In-Reply-To Received"
)
CHARSETS = [
    *_words(
        "utf-8 us-ascii koi8-r koi8-u windows-1251 iso-8859-1 utf-16 utf-16le utf-32 utf-7 "
        "iso-2022-jp gb2312 big5 shift_jis base64 zlib x-unknown utf-8*en undefined "
        "unicode-escape rot13"
    ),
    "",
    '"',
    "x" * 300,
]
CONTENT_TYPES = [
    *_words(
        "text/plain text/html text/enriched text/richtext text/rfc822-headers text <html> "
        "multipart/mixed multipart/alternative multipart/related multipart/signed "
        "multipart/report multipart/encrypted multipart/digest message/rfc822 message/global "
        "message/partial message/delivery-status message/external-body "
        "application/pkcs7-mime application/octet-stream image/png"
    ),
    "",
]
PARAMS = [
    "",
    "; charset={charset}",
    '; boundary="{boundary}"',
    "; boundary=",
    "; format=flowed",
    "; format=flowed; delsp=yes",
    "; number=2; total=3",
    "; number=1",
    "; number=x; total=-1",
    "; number=99999999999999",
    "; smime-type=enveloped-data",
    "; smime-type=signed-data",
    '; start="<a@b>"',
    "; name*0*=utf-8''%D0%9F; name*1=.txt",
    "; name==?utf-8?B?0J8=?=",
    "; charset*=utf-8''%FF%FE",
    "; report-type=delivery-status",
    ";;;",
    '; name="',
]
TRANSFER_ENCODINGS = [
    *_words("base64 quoted-printable x-uuencode x-gzip64 7bit 8bit binary junk BASE64 qp"),
    "Quoted printable;",
    "",
]
DISPOSITIONS = ["inline", "attachment", 'attachment; filename="a.txt"', 'inline; filename="b"']


def _encoded_word(charset: str, encoding: str, data: bytes) -> str:
    if encoding == "B":
        text = base64.b64encode(data).decode()
    else:
        text = "".join(chr(b) if 33 <= b < 127 and b not in b"=?_" else f"={b:02X}" for b in data)
    return f"=?{charset}?{encoding}?{text}?="


def _encode(text: str, charset: str) -> bytes:
    try:
        return text.encode(charset, errors="replace")
    except (LookupError, UnicodeError, TypeError):
        return text.encode("utf-8", errors="surrogatepass")


#: Text of any kind, lone surrogates included (UTF-7 and the escape codecs carry them).
ODD_CHARACTERS = "\ud800\udbff\udc00\udfff\ud83d\x00\r\n\t\u202e\ufeff\ufffd\u0301"
ANY_TEXT = st.lists(st.sampled_from(ODD_CHARACTERS) | st.characters(), min_size=1, max_size=20).map(
    "".join
)
#: The charsets of header words: stateful and escape codecs first, where text is odd.
WORD_CHARSETS = [
    *_words(
        "utf-7 UTF-7 x-utf-7 unicode-escape raw-unicode-escape utf-16 utf-16-be utf-32 hz "
        "iso-2022-jp utf-8 koi8-r windows-1251 big5 x-unknown base64"
    ),
    "",
]
#: RFC 2047 encoded words in any charset, of any bytes or of text encoded in that charset:
#: where header decoding breaks.
ENCODED_WORDS = st.sampled_from(WORD_CHARSETS).flatmap(
    lambda charset: st.builds(
        _encoded_word,
        st.just(charset),
        st.sampled_from(["B", "Q"]),
        ANY_TEXT.map(lambda text: _encode(text, charset)) | st.binary(max_size=30),
    )
)
HEADER_VALUES = st.one_of(
    ANY_TEXT,
    ENCODED_WORDS,
    st.builds("{} <{}>".format, ENCODED_WORDS, st.sampled_from(["a@b.c", "", "@", "x"])),
    st.sampled_from(
        [
            "=?utf-8?B?0J/RgNC40LLRltGC?=",
            "=?utf-8?Q?=D0=9F=D1?= =?utf-8?Q?=80?=",
            "=?x-bogus?B?!!!?=",
            "=?utf-8?B?",
            "<>",
            "auto-replied",
            "Mon, 31 Feb 9999 25:61:61 +9999",
            "Thu, 1 Jan 1 00:00:00 -0000",
            '"\\"" <@>',
            "a@b, c@d; e",
            "(((((",
            "<a@b> <c@d>",
        ]
    ),
)


def _content_type(draw) -> str:
    base = draw(st.sampled_from(CONTENT_TYPES))
    params = draw(st.lists(st.sampled_from(PARAMS), max_size=3))
    text = base + "".join(params)
    return text.replace("{charset}", draw(st.sampled_from(CHARSETS))).replace(
        "{boundary}", draw(st.sampled_from(["alt", "b", "r", "e", "=_x", "", "a" * 80]))
    )


@st.composite
def _header_value(draw, name: str) -> str:
    if name == "Content-Type":
        return _content_type(draw)
    if name == "Content-Transfer-Encoding":
        return draw(st.sampled_from(TRANSFER_ENCODINGS))
    if name == "Content-Disposition":
        return draw(st.sampled_from(DISPOSITIONS))
    return draw(HEADER_VALUES)


POSITION = st.floats(min_value=0, max_value=1, allow_nan=False)
#: Header values are where decoding has the most ways to go wrong: drawn 4 times as often.
MUTATION_KINDS = [
    *_words(
        "truncate flip insert delete drop_line double_line unindent reencode wrap boundary "
        "line_endings non_header_line"
    ),
    *["set_header", "set_part_header"] * 4,
]


@st.composite
def mutations(draw) -> tuple:
    kind = draw(st.sampled_from(MUTATION_KINDS))
    if kind in ("truncate", "drop_line", "double_line", "unindent", "boundary"):
        return (kind, draw(POSITION))
    if kind == "flip":
        return (kind, draw(POSITION), draw(st.integers(0, 255)))
    if kind == "insert":
        return (kind, draw(POSITION), draw(st.binary(min_size=1, max_size=40)))
    if kind == "delete":
        return (kind, draw(POSITION), draw(st.integers(1, 200)))
    if kind in ("set_header", "set_part_header"):
        name = draw(st.sampled_from(HEADER_NAMES))
        return (kind, draw(POSITION), name, draw(_header_value(name)))
    if kind == "reencode":
        return (
            kind,
            draw(st.sampled_from(["base64", "quoted-printable", "x-uuencode"])),
            draw(st.booleans()),
        )
    if kind == "wrap":
        outer = st.sampled_from(["message/rfc822", "multipart/mixed", "message/partial"])
        return (kind, draw(st.sampled_from(["", "base64", "quoted-printable"])), draw(outer))
    if kind == "line_endings":
        return (kind, draw(st.sampled_from(["lf", "crlf", "cr"])))
    return (kind, draw(POSITION), draw(ANY_TEXT))


def _split(raw: bytes) -> tuple[bytes, bytes]:
    for sep in (b"\r\n\r\n", b"\n\n"):
        at = raw.find(sep)
        if at >= 0:
            return raw[:at], raw[at:]
    return raw, b""


def _at(position: float, length: int) -> int:
    return min(int(position * length), max(length - 1, 0))


def mutate(raw: bytes, mutation: tuple) -> bytes:
    """Apply one mutation (a plain value, so Hypothesis can shrink and print it)."""
    kind = mutation[0]
    if kind == "truncate":
        return raw[: int(mutation[1] * len(raw))]
    if kind == "flip" and raw:
        at = _at(mutation[1], len(raw))
        return raw[:at] + bytes([mutation[2]]) + raw[at + 1 :]
    if kind == "insert":
        at = int(mutation[1] * len(raw))
        return raw[:at] + mutation[2] + raw[at:]
    if kind == "delete":
        at = int(mutation[1] * len(raw))
        return raw[:at] + raw[at + mutation[2] :]
    lines = raw.split(b"\n")
    if kind in ("drop_line", "double_line", "unindent", "non_header_line") and lines:
        at = _at(mutation[1], len(lines))
        if kind == "drop_line":
            del lines[at]
        elif kind == "double_line":
            lines.insert(at, lines[at])
        elif kind == "unindent":
            lines[at] = lines[at].lstrip(b" \t")
        else:
            lines.insert(at, mutation[2].encode("utf-8", "surrogatepass"))
        return b"\n".join(lines)
    if kind == "set_header":
        header, body = _split(raw)
        line = f"{mutation[2]}: {mutation[3]}".encode("utf-8", "surrogatepass")
        kept = [
            h
            for h in header.split(b"\r\n")
            if not h.lower().startswith(mutation[2].lower().encode() + b":")
        ]
        return b"\r\n".join([line, *kept]) + body
    if kind == "set_part_header":
        name = mutation[2].encode()
        starts = [i for i, line in enumerate(lines) if line.lower().startswith(name.lower() + b":")]
        if not starts:
            return raw
        at = starts[_at(mutation[1], len(starts))]
        lines[at] = f"{mutation[2]}: {mutation[3]}\r".encode("utf-8", "surrogatepass")
        return b"\n".join(lines)
    if kind == "reencode":
        header, body = _split(raw)
        content = body.lstrip(b"\r\n")
        if mutation[1] == "base64":
            encoded = base64.encodebytes(content)
        elif mutation[1] == "quoted-printable":
            encoded = quopri.encodestring(content)
        else:
            encoded = (
                b"begin 644 x\n"
                + b"".join(binascii.b2a_uu(content[i : i + 45]) for i in range(0, len(content), 45))
                + b"`\nend\n"
            )
        label = b"\r\nContent-Transfer-Encoding: " + mutation[1].encode() if mutation[2] else b""
        return header + label + b"\r\n\r\n" + encoded
    if kind == "wrap":
        cte, outer = mutation[1], mutation[2]
        content = raw
        if cte == "base64":
            content = base64.encodebytes(raw)
        elif cte == "quoted-printable":
            content = quopri.encodestring(raw)
        label = f"\r\nContent-Transfer-Encoding: {cte}".encode() if cte else b""
        if outer == "multipart/mixed":
            return (
                b'Subject: wrapped\r\nContent-Type: multipart/mixed; boundary="w"\r\n\r\n--w\r\n'
                b"Content-Type: message/rfc822" + label + b"\r\n\r\n" + content + b"\r\n--w--\r\n"
            )
        params = b"; number=1; total=2" if outer == "message/partial" else b""
        return (
            b"Subject: wrapped\r\nContent-Type: "
            + outer.encode()
            + params
            + label
            + b"\r\n\r\n"
            + content
        )
    if kind == "boundary":
        marks = [i for i, line in enumerate(lines) if line.startswith(b"--")]
        if not marks:
            return raw
        at = marks[_at(mutation[1], len(marks))]
        lines[at] = lines[at][: len(lines[at]) // 2]
        return b"\n".join(lines)
    if kind == "line_endings":
        plain = raw.replace(b"\r\n", b"\n")
        return {
            "lf": plain,
            "crlf": plain.replace(b"\n", b"\r\n"),
            "cr": plain.replace(b"\n", b"\r"),
        }[mutation[1]]
    return raw


def _corpus() -> list[Path]:
    root = SHARED
    files = sorted((root / "corpus").rglob("*.eml")) if (root / "corpus").is_dir() else []
    return files + (
        sorted((root / "extcorpus").glob("*.eml")) if (root / "extcorpus").is_dir() else []
    )


CORPUS = _corpus()
SEED = st.one_of(
    st.sampled_from(range(len(SEEDS))).map(lambda i: SEEDS[i]),
    *([st.sampled_from(CORPUS).map(Path.read_bytes)] if CORPUS else []),
)
MUTATED = st.builds(
    lambda raw, steps: _apply(raw, steps), SEED, st.lists(mutations(), min_size=1, max_size=4)
)


def _apply(raw: bytes, steps: list[tuple]) -> bytes:
    for step in steps:
        raw = mutate(raw, step)
    return raw


OPTIONS = st.builds(
    SmsOptions,
    template=st.sampled_from(
        [
            smstext.DEFAULT_TEMPLATE,
            "{body}",
            "{subject}",
            "{from_name} <{from_addr}> {date}: {subject} / {to} [{folder}] {rule}\n{body}",
            "Alarm! {subject}",
        ]
    ),
    max_length=st.integers(smstext.SMS_MIN_CHARS, smstext.SMS_MAX_CHARS),
    encoding=st.sampled_from(smstext.ENCODINGS),
    transliterate=st.sampled_from(smstext.TRANSLITERATIONS),
    max_segments=st.none() | st.integers(1, 10),
)

REQUESTS = [
    SentRequest(
        "<1.abc@forwarder.example.org>",
        datetime(2024, 11, 25, 9, tzinfo=UTC),
        "MyAlpha;***;***",
        "Alice: inner\nThe server room is on fire.",
        False,
    ),
    SentRequest(
        "<2.abc@forwarder.example.org>",
        datetime(2024, 11, 25, 11, tzinfo=UTC),
        "MyAlpha",
        "short",
        True,
    ),
]


def _assert_storable(*values: object) -> None:
    """Text that reaches the state file, a log line or an SMS must be valid Unicode: SQLite
    refuses a lone surrogate with UnicodeEncodeError (and the mail would be stuck)."""
    for value in values:
        if isinstance(value, str):
            value.encode("utf-8")


def _assert_fits(sms: smstext.SmsText, options: SmsOptions) -> None:
    assert sms.text, "an SMS is never empty"
    assert len(sms.text) <= sms.length <= options.max_length <= smstext.SMS_MAX_CHARS
    assert sms.length == smstext.sms_length(sms.text)
    if options.max_segments is not None:
        assert sms.segments <= options.max_segments
    if sms.encoding == "gsm7":
        assert smstext.is_gsm7(sms.text)
    sms.text.encode("utf-8")  # no lone surrogates


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> config_module.Config:
    """A config with ``default: forward``: every mail the guards let through is composed."""
    where = tmp_path_factory.mktemp("fuzz")
    servers = SimpleNamespace(host="127.0.0.1", port=1, user="me", password="pw")
    rules = [
        {"name": "fire", "match": {"body": {"regex": "(?i)fire|впав"}}, "action": "forward"},
        {
            "name": "inner",
            "match": {"subject": "inner", "has_attachment": False},
            "action": "forward",
        },
    ]
    settings_ = config_dict(servers, servers, where / "state.db", rules=rules, default="forward")
    path = where / "forwarder.yaml"
    path.write_text(yaml.safe_dump(settings_))
    return config_module.load(str(path))


@FUZZ
@given(raw=MUTATED, options=OPTIONS)
def test_mutated_mail_becomes_an_sms_within_its_limits(raw: bytes, options: SmsOptions) -> None:
    mail = Mail(raw)
    assert isinstance(mail.subject, str) and isinstance(mail.message_id, str)
    assert all(isinstance(part, str) for part in mail.sender)
    assert mail.date is None or mail.date.tzinfo is not None
    assert isinstance(mail.has_attachment, bool)
    addresses = [text for pair in mail.addresses("To") for text in pair]
    body = mail.body  # must not raise: render would only log it and send without the body
    assert isinstance(body, str) and len(body) <= 2 * 4000
    _assert_storable(mail.subject, *mail.sender, mail.message_id, body, *addresses)
    _assert_fits(render(mail, options, rule="fuzz", now=NOW), options)


HEADER_FIELDS = ["Subject", "From", "To", "Cc", "Reply-To", "Message-ID", "Date"]


@FUZZ
@given(
    seed=st.sampled_from(SEEDS),
    headers=st.lists(st.tuples(st.sampled_from(HEADER_FIELDS), HEADER_VALUES), max_size=4),
    options=OPTIONS,
)
def test_mutated_headers_decode_to_text_that_can_be_stored(
    seed: bytes, headers: list[tuple[str, str]], options: SmsOptions
) -> None:
    """Header decoding alone, drawn densely: every charset and encoded-word shape."""
    raw = seed
    for name, value in headers:
        raw = mutate(raw, ("set_header", 0.0, name, value))
    mail = Mail(raw)
    names = [
        text for field in ("From", "To", "Cc") for pair in mail.addresses(field) for text in pair
    ]
    _assert_storable(mail.subject, *mail.sender, mail.message_id, *names)
    _assert_fits(render(mail, options, rule="fuzz", now=NOW), options)


@FUZZ
@given(raw=MUTATED)
def test_mutated_mail_goes_through_the_pipeline(config, raw: bytes) -> None:
    ids = iter(range(10))
    plan = pipeline.plan(Mail(raw, uid=7), config, NOW, new_message_id=lambda: f"<{next(ids)}@x>")
    _assert_storable(*vars(plan.entry).values())
    if plan.sms is not None:
        _assert_fits(plan.sms, pipeline.sms_options(config, plan.decision))
        assert all(item.text == plan.sms.text for item in plan.outbox)
    for item in plan.outbox:  # every field the outbox row stores
        _assert_storable(*vars(item).values())


@FUZZ
@given(raw=MUTATED)
def test_mutated_mail_never_breaks_the_reply_parser(raw: bytes) -> None:
    mail = Mail(raw)
    reply = parse_reply(mail)
    assert len(reply.detail) <= DETAIL_MAX_CHARS
    reply.detail.encode("utf-8")
    reply.describe()
    tie = tie_reply(mail, REQUESTS)
    assert tie.message_id in (None, *(r.message_id for r in REQUESTS))
