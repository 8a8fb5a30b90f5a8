"""Decoding what real mail sends: RFC 2047 headers, charsets, transfer encodings, cut input."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone

import pytest

from forwarder.mail import Mail
from forwarder.text import mime

# -- RFC 2047 headers ------------------------------------------------------------------------


def b_word(text: str, charset: str) -> str:
    return f"=?{charset}?B?{base64.b64encode(text.encode(charset)).decode()}?="


def q_word(text: str, charset: str) -> str:
    return "=?%s?Q?%s?=" % (charset, "".join(f"={b:02X}" for b in text.encode(charset)))  # noqa: UP031


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain text", "plain text"),
        (b_word("Привіт", "utf-8"), "Привіт"),
        (q_word("Рахунок", "windows-1251"), "Рахунок"),
        (b_word("Счёт", "koi8-r"), "Счёт"),
        (b_word("Рахунок", "koi8-u"), "Рахунок"),
        (b_word("Отчёт", "iso-8859-5"), "Отчёт"),
        (b_word("会議", "iso-2022-jp"), "会議"),
        ("=?UTF-8?q?caf=C3=A9_cr=C3=A8me?=", "café crème"),
        # RFC 2047 §6.2: whitespace between adjacent encoded words is not shown ...
        (f"{b_word('При', 'utf-8')} {b_word('віт', 'utf-8')}", "Привіт"),
        # ... but whitespace next to plain text is.
        (f"Re: {b_word('звіт', 'utf-8')} 15", "Re: звіт 15"),
        # Encoded words split in the middle of a character (forbidden, common).
        ("=?utf-8?Q?=D0=9F=D1?= =?utf-8?Q?=80=D0=B8?=", "При"),
        ("=?utf-8?B?0J/R?= =?utf-8?B?gNC4?=", "При"),
        # Missing spaces around encoded words, folded lines, lowercase labels.
        ("Re:=?utf-8?B?0JrQuNGX0LI=?=abc", "Re:Київabc"),
        ("=?utf-8?B?0J/RgNC4?=\r\n =?utf-8?B?0LLRltGC?=", "Привіт"),
        # Broken: no padding, an unknown charset, a wrong charset label.
        ("=?utf-8?B?0J/RgNC40LLRltGC?=", "Привіт"),
        ("=?NONE?B?VEVTVA=?=", "TEST"),
        ("=?iso-8859-1?Q?=CF=F0=E8=E2=B3=F2_=F1=E2=B3=F2?=", "Привіт світ"),
        ("=?x-unknown?Q?=D0=9A=D0=B8=D1=97=D0=B2?=", "Київ"),
        ("=?utf-8?Q?bad_escape_=ZZ?=", "bad escape =ZZ"),
        ("a\tb\r\n  c", "a b c"),
    ],
)
def test_decode_header(value: str, expected: str) -> None:
    assert mime.decode_header(value) == expected


@pytest.mark.parametrize(
    ("junk", "expected"),
    [
        # Not an encoded word: kept as the text it is.
        ("=?", "=?"),
        ("=?utf-8?", "=?utf-8?"),
        ("=?utf-8?X?abc?=", "=?utf-8?X?abc?="),  # no encoding X
        # An encoded word with nothing decodable in it, and control characters: nothing.
        ("=?utf-8?B??=", ""),
        ("=?utf-8?B?@@@@?=", ""),
        ("\x00\x01", ""),
    ],
)
def test_decode_header_never_raises_on_junk(junk: str, expected: str) -> None:
    assert mime.decode_header(junk) == expected


@pytest.mark.parametrize(
    ("raw_subject", "body_charset", "expected"),
    [
        ("Звіт за листопад".encode(), None, "Звіт за листопад"),  # RFC 6532 UTF-8
        ("Звіт за листопад".encode("windows-1251"), "windows-1251", "Звіт за листопад"),
        ("Отчёт за ноябрь".encode("koi8-r"), "koi8-r", "Отчёт за ноябрь"),
        ("Отчёт за ноябрь".encode("windows-1251"), None, "Отчёт за ноябрь"),  # guessed
        ("Grüße aus München".encode("latin-1"), None, "Grüße aus München"),
    ],
)
def test_unencoded_8bit_headers(
    raw_subject: bytes, body_charset: str | None, expected: str
) -> None:
    content_type = b"text/plain" + (f"; charset={body_charset}".encode() if body_charset else b"")
    raw = b"From: a@example.com\r\nSubject: " + raw_subject + b"\r\nContent-Type: " + content_type
    mail = Mail(raw + b"\r\n\r\nbody\r\n")
    assert mail.subject == expected
    assert isinstance(mail.message["Subject"], str)  # never an email.header.Header


def test_obsolete_space_before_colon_is_a_header() -> None:
    mail = Mail(b"From  : John <j@example.com>\r\nSubject : Hi\r\n\r\nbody\r\n")
    assert (mail.sender, mail.subject) == (("John", "j@example.com"), "Hi")


def test_rfc2231_filename_is_decoded() -> None:
    raw = (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
        b"Content-Type: application/pdf\r\n"
        b"Content-Disposition: attachment;\r\n"
        b" filename*=utf-8''%D0%A0%D0%B0%D1%85%D1%83%D0%BD%D0%BE%D0%BA.pdf\r\n"
        b"\r\nJVBERi0=\r\n--b--\r\n"
    )
    part = next(p for p in Mail(raw).message.walk() if p.get_content_type() == "application/pdf")
    assert part.get_filename() == "Рахунок.pdf"


# -- addresses and dates ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["Ann Smith <Ann@Example.COM>"], [("Ann Smith", "ann@example.com")]),
        (
            [f'"{b_word("Олена, бухгалтерія", "utf-8")}" <o@example.ua>'],
            [("Олена, бухгалтерія", "o@example.ua")],
        ),
        (
            [f"{b_word('Петро', 'koi8-u')} <p@example.ua>, b@example.com"],
            [("Петро", "p@example.ua"), ("", "b@example.com")],
        ),
        (
            ["tim@example.com concierge@example.com"],
            [("", "tim@example.com"), ("", "concierge@example.com")],
        ),
        (["undisclosed-recipients:;"], []),
        ([""], []),
    ],
)
def test_parse_addresses(values: list[str], expected: list[tuple[str, str]]) -> None:
    assert mime.parse_addresses(values) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            "Mon, 25 Nov 2024 14:03:00 +0200",
            datetime(2024, 11, 25, 14, 3, tzinfo=timezone(timedelta(hours=2))),
        ),
        ("Mon, 25 Nov 2024 12:03:00 -0000", datetime(2024, 11, 25, 12, 3, tzinfo=UTC)),
        ("25 Nov 2024 12:03 GMT", datetime(2024, 11, 25, 12, 3, tzinfo=UTC)),
        ("Wed, 15 Dec 2010    59:10 -0500", None),
        ("yesterday", None),
        ("Fri, 31 Dec 9999 23:59:00 -1400", None),  # any zone change overflows
        ("", None),
        (None, None),
    ],
)
def test_parse_date(value: str | None, expected: datetime | None) -> None:
    assert mime.parse_date(value) == expected


# -- charsets -----------------------------------------------------------------------------------

UK = "Добрий день! Зустріч завтра о десятій, не запізнюйтесь."
RU = "Добрый день! Встреча завтра в десять, не опаздывайте."


@pytest.mark.parametrize(
    ("data", "label", "expected"),
    [
        (UK.encode(), "utf-8", UK),
        (UK.encode("windows-1251"), "windows-1251", UK),
        (UK.encode("windows-1251"), "win-1251", UK),
        (UK.encode("windows-1251"), '"Windows-1251"', UK),
        (UK.encode("koi8-u"), "koi8-u", UK),
        (UK.encode("koi8-u"), "koi8-r", UK),  # Ukrainian letters in "koi8-r" mail
        (RU.encode("koi8-r"), "koi8-r", RU),
        (RU.encode("iso-8859-5"), "iso-8859-5", RU),
        (RU.encode("cp866"), "cp866", RU),
        (RU.encode("mac-cyrillic"), "x-mac-cyrillic", RU),
        ("日本語のテキスト".encode("iso-2022-jp"), "iso-2022-jp", "日本語のテキスト"),
        ("日本語のテキスト".encode("shift_jis"), "shift_jis", "日本語のテキスト"),
        ("한국어 텍스트".encode("cp949"), "ks_c_5601-1987", "한국어 텍스트"),
        ("中文文本".encode("gb2312"), "gb2312", "中文文本"),
        # Wrong labels.
        (UK.encode("windows-1251"), "iso-8859-1", UK),
        (RU.encode("koi8-r"), "windows-1251", RU),
        (RU.encode("windows-1251"), "koi8-r", RU),
        ("Grüße, schön".encode(), "iso-8859-1", "Grüße, schön"),
        (UK.encode("windows-1251"), "utf-8", UK),
        (UK.encode("windows-1251"), "us-ascii", UK),
        (UK.encode("windows-1251"), "no-such-charset", UK),
        # No label at all.
        (UK.encode(), None, UK),
        (UK.encode("windows-1251"), None, UK),
        (UK.encode("koi8-u"), None, UK),
        (RU.encode("cp866"), None, RU),
        ("Réunion à 10h, café compris".encode("cp1252"), None, "Réunion à 10h, café compris"),
        (
            "これは日本語のテキストです。長い文章".encode("shift_jis"),
            None,
            "これは日本語のテキストです。長い文章",
        ),
        # UTF-8 with one stray windows-1251 word pasted in.
        (
            "Привіт, ".encode() + "світ".encode("windows-1251") + " і всім іншим".encode(),
            None,
            "Привіт, світ і всім іншим",
        ),
        # A byte-order mark.
        (b"\xef\xbb\xbf" + UK.encode(), "windows-1251", UK),
        (b"plain ascii", "koi8-r", "plain ascii"),
        (b"", "utf-8", ""),
    ],
)
def test_decode_bytes(data: bytes, label: str | None, expected: str) -> None:
    assert mime.decode_bytes(data, label) == expected


@pytest.mark.parametrize(
    ("label", "codec"),
    [
        ("UTF-8", "utf-8"),
        ('"windows-1251"', "cp1251"),
        ("win-1251", "cp1251"),
        ("cp-1251", "cp1251"),
        ("x-mac-cyrillic", "mac-cyrillic"),
        ("iso-8859-8-i", "iso8859-8"),
        ("utf-8*en", "utf-8"),  # RFC 2231 language suffix
        ("iso-8859-1", "cp1252"),  # WHATWG: what senders mean
        ("koi8-r", "koi8-u"),
        ("gb2312", "gb18030"),
        ("x-unknown", None),
        ("unknown-8bit", None),
        ("base64", None),  # a bytes-to-bytes codec, not a charset
        ("zlib", None),
        ("undefined", None),
        ("no-such-charset", None),
        (None, None),
    ],
)
def test_codec_for(label: str | None, codec: str | None) -> None:
    assert mime.codec_for(label) == codec


@pytest.mark.parametrize("cut", range(1, 12))
def test_decode_bytes_drops_a_cut_multibyte_character(cut: int) -> None:
    whole = "Київ 日本"
    text = mime.decode_bytes(whole.encode()[:cut], "utf-8")
    # Every character that fits in the cut whole, and nothing of the one cut through.
    kept = next(whole[:n] for n in range(len(whole), -1, -1) if len(whole[:n].encode()) <= cut)
    assert text == kept
    assert "\ufffd" not in text


def test_decode_bytes_cut_iso2022_escape() -> None:
    whole = "会議は明日"
    data = whole.encode("iso-2022-jp")  # ESC $ B, two bytes per character, ESC ( B
    for cut in range(len(data) + 1):
        text = mime.decode_bytes(data[:cut], "iso-2022-jp")
        assert text == whole[: max(0, (cut - 3) // 2)], (cut, text)


# -- transfer encodings ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoded", "expected"),
    [
        (b"SGVsbG8gd29ybGQ=", b"Hello world"),
        (b"SGVsbG8gd29ybGQ", b"Hello world"),  # no padding
        (b"SGVsbG8gd29ybG", b"Hello worl"),  # cut: 2 characters still hold a byte
        (b"SGVsbG8gd29yb", b"Hello wor"),  # cut: 1 character holds none
        (b"SGVs\r\nbG8=\r\n", b"Hello"),
        (b"SGVsbG8=SGVsbG8=", b"HelloHello"),  # concatenated blocks
        (b"SG!V$sb*G8=", b"Hello"),  # junk outside the alphabet (RFC 2045 6.8)
        (b"", b""),
    ],
)
def test_decode_base64(encoded: bytes, expected: bytes) -> None:
    assert mime.decode_base64(encoded) == expected


@pytest.mark.parametrize(
    ("encoded", "expected"),
    [
        (b"caf=C3=A9", b"caf\xc3\xa9"),
        (b"caf=c3=a9", b"caf\xc3\xa9"),
        (b"soft=\r\nbreak", b"softbreak"),
        (b"cut =C", b"cut "),
        (b"cut =", b"cut "),
        (b"bad =ZZ escape", b"bad =ZZ escape"),
    ],
)
def test_decode_quoted_printable(encoded: bytes, expected: bytes) -> None:
    assert mime.decode_quoted_printable(encoded) == expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("quoted-printable", "quoted-printable"),
        ("Quoted-Printable", "quoted-printable"),
        ("quoted printable", "quoted-printable"),
        ("quoted-printable;", "quoted-printable"),
        (" BASE64 ", "base64"),
        ("7-bit", "identity"),
        ("8bits", "identity"),
        ("", "identity"),
        ("7vladi.Pimenovit", "identity"),
    ],
)
def test_transfer_encoding_labels(header: str, expected: str) -> None:
    mail = Mail(f"Content-Transfer-Encoding: {header}\r\n\r\nx".encode())
    assert mime.transfer_encoding(mail.message) == expected


def test_deeply_nested_mime_is_read_as_headers() -> None:
    depth = 2000
    raw = b"Subject: deep\r\n" + b"".join(
        b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i)
        for i in range(depth)
    )
    message = mime.parse_message(raw)
    assert mime.decode_header(message["Subject"]) == "deep"
