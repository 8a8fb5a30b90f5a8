"""Robust decoding of what real mail contains: headers, charsets and transfer encodings.

Everything here takes the bytes a server handed over and returns text, and none of it
raises on malformed input: a mail daemon must read whatever arrives.  Three kinds of
damage are routine and handled on purpose:

* wrong or missing labels: 8-bit headers without RFC 2047 encoding (RFC 6532 allows raw
  UTF-8; older mailers send raw windows-1251 or big5), bodies whose declared charset is
  wrong (UTF-8 labelled ISO-8859-1, windows-1251 labelled koi8-r) or absent;
* sloppy encoding: RFC 2047 words split in the middle of a character, missing spaces,
  base64 without padding, ``Content-Transfer-Encoding: quoted printable;``;
* partial input: the watcher fetches only the first few KiB of each text part
  (``BODY.PEEK[1]<0.4096>``), so a base64 quantum, a quoted-printable escape or a
  multi-byte character may be cut at the end.  Incomplete tails are dropped, never
  turned into garbage.
"""

from __future__ import annotations

import binascii
import codecs
import email
import email.generator
import email.header
import email.parser
import email.utils
import functools
import io
import logging
import math
import re
from datetime import UTC, datetime
from email.message import Message
from email.policy import Compat32

logger = logging.getLogger(__name__)

#: Decode at most this much of one part: an SMS shows 500 characters, and the daemon
#: fetches only a few KiB of each part anyway.
MAX_PART_BYTES = 64 * 1024

#: How much of a text the charset scorer looks at; a few hundred letters decide.
SCORE_SAMPLE_CHARS = 2048

#: A wrongly labelled single-byte text is re-decoded only when another charset reads
#: this many nats per non-ASCII character better, and with at least this much evidence.
RELABEL_MARGIN = 1.0
RELABEL_MIN_CHARS = 2

#: Below this average score no single-byte charset is plausible (CJK, binary):
#: ask charset-normalizer, which needs some length to be reliable.
PLAUSIBLE_SCORE = -6.5
DETECTOR_MIN_BYTES = 32

#: Single-byte charsets a label-less 8-bit text is tried against, in order of
#: preference on ties.  The project's mail is mostly Ukrainian, Russian and Western.
GUESS_CHARSETS = ("cp1251", "koi8-u", "cp1252", "cp1250", "iso8859-5", "cp866")

#: Labels that, when they decode without error, may still be wrong: any byte is valid
#: in them, so mislabelled text decodes to mojibake instead of failing.
CONFUSABLE_CHARSETS = frozenset(GUESS_CHARSETS) | {"iso8859-1", "iso8859-2", "mac-cyrillic"}

#: Labels replaced by the superset that real senders actually use (WHATWG Encoding
#: Standard §4.2 does the same for iso-8859-1 → windows-1252 and the CJK labels).
#: koi8-r → koi8-u: Ukrainian senders routinely label koi8-u text as koi8-r, and the
#: two differ only in 8 box-drawing positions.
CHARSET_UPGRADES = {
    "iso8859-1": "cp1252",
    "koi8-r": "koi8-u",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "big5": "big5hkscs",
    "shift_jis": "cp932",
    "euc_kr": "cp949",
    "iso8859-11": "cp874",
    "tis-620": "cp874",
}

#: Labels that say nothing about the bytes.  "us-ascii" on 8-bit data is a lie too,
#: handled by the strict decode failing.
MEANINGLESS_CHARSETS = frozenset(
    {"", "x-unknown", "unknown", "unknown-8bit", "x-user-defined", "none", "default", "charset"}
)

_UTF8_BOM = codecs.BOM_UTF8


# ---------------------------------------------------------------------------
# Parsing


class RobustPolicy(Compat32):
    """compat32, but header values always come back as ``str``.

    compat32 is used on purpose: the modern policy raises on some malformed headers
    when they are read.  Its one flaw is that a header with raw 8-bit bytes comes back
    as an ``email.header.Header`` whose text is lost in ``unknown-8bit``; here such
    bytes are decoded (RFC 6532 UTF-8 first, then the message's own charset, then a
    guess), so ``msg["Subject"]`` is always plain text.
    """

    header_charset: str | None = None

    def header_fetch_parse(self, name, value):  # type: ignore[override]
        if isinstance(value, str) and not value.isascii() and _has_surrogates(value):
            raw = value.encode("ascii", "surrogateescape")
            return decode_bytes(raw, self.header_charset, prefer_utf8=True)
        return super().header_fetch_parse(name, value)


_CHARSET_PARAM = re.compile(rb"""charset\s*=\s*["']?([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
_SURROGATES = re.compile("[\udc80-\udcff]")
_SURROGATE_RUN = re.compile("[\udc80-\udcff]+")


def _has_surrogates(text: str) -> bool:
    """True if ``text`` holds bytes the parser could not decode (surrogate escapes)."""
    return _SURROGATES.search(text) is not None


def _header_charset_hint(raw: bytes) -> str | None:
    """The first charset the message declares anywhere: the best guess for its raw 8-bit headers."""
    for match in _CHARSET_PARAM.finditer(raw, 0, MAX_PART_BYTES):
        label = match.group(1).decode("ascii").lower()
        if label not in ("us-ascii", "ascii"):
            return label
    return None


#: RFC 5322 §4.5.3 obsolete syntax allows spaces before the colon ("Subject : hi"), which
#: the stdlib parser takes for the start of the body.
_OBSOLETE_HEADER_NAME = re.compile(rb"^([!-9;-~]+)[ \t]+:", re.MULTILINE)
_HEADER_END = re.compile(rb"\r?\n\r?\n")
#: A header field line as the stdlib parser recognises one (RFC 5322 §2.2: name, colon).
_HEADER_FIELD = re.compile(rb"[!-9;-~]+:")
#: A line (after the first) that is neither a field, a continuation nor empty.
_BROKEN_HEADER_LINE = re.compile(rb"\n(?![ \t]|[!-9;-~]+:|\r?$)")
#: Fields that only a header holds: seeing one further down proves the header goes on.
_HEADER_ONLY_FIELD = re.compile(
    rb"(?:x-[!-9;-~]*|content-[!-9;-~]+|list-[!-9;-~]+|arc-[!-9;-~]+|dkim-signature"
    rb"|received|received-spf|return-path|message-id|mime-version|date|from|to|cc|subject"
    rb"|reply-to|sender|in-reply-to|references|delivered-to|authentication-results)[ \t]*:",
    re.IGNORECASE,
)

#: Messages inside messages are opened this deep, no deeper (forwarded as attachment,
#: message/rfc822 sent base64, BODYSTRUCTURE's attached messages).
MAX_NESTING = 3

#: message/* types that hold a whole message, which the stdlib parses but not when
#: a transfer encoding hides it.
_WHOLE_MESSAGE_TYPES = frozenset({"message/rfc822", "message/global", "message/news"})


@functools.lru_cache(maxsize=64)
def _policy(header_charset: str | None) -> RobustPolicy:
    """Policies are immutable: one per header charset is enough."""
    return RobustPolicy(header_charset=header_charset)


def _header_span(raw: bytes) -> tuple[int, int] | None:
    """Where ``_HEADER_END`` first matches in ``raw`` (start, end), or None: the same answer
    from two ``bytes.find`` calls, ten times faster than the regex on a whole mail."""
    found = [i for i in (raw.find(b"\n\n"), raw.find(b"\n\r\n")) if i >= 0]
    if not found:
        return None
    i = min(found)  # the first LF that a (CR) LF follows
    start = i - 1 if i and raw[i - 1] == 13 else i
    return start, i + (2 if raw[i + 1] == 10 else 3)


def _header_end(raw: bytes) -> int:
    span = _header_span(raw)
    return span[0] if span else len(raw)


def _repair_header(header: bytes) -> bytes:
    """Rejoin header lines a mailer or an archive broke: continuation lines without their
    leading white space (RFC 5322 §2.2.3 folding undone by a news gateway, a long Exchange
    header wrapped by hand).  The stdlib parser ends the header at the first such line and
    reads everything after it, Content-Type included, as the body.

    A line that is neither a field nor a continuation is joined to the field above when
    a header-only field (Received, Content-Type, X-…) still follows; otherwise it is
    the start of a body that has no blank line before it, and stays.  A MIME boundary
    line ("--…") always starts the body.
    """
    if not _BROKEN_HEADER_LINE.search(header):  # the usual header: nothing to rejoin
        return header
    lines = header.split(b"\n")
    stop = next((i for i, line in enumerate(lines) if line.startswith(b"--")), len(lines))
    last = max((i for i in range(stop) if _HEADER_ONLY_FIELD.match(lines[i])), default=0)
    for i in range(1, last):
        line = lines[i]
        if line[:1] not in (b" ", b"\t") and line.strip() and not _HEADER_FIELD.match(line):
            lines[i] = b" " + line
    return b"\n".join(lines)


def parse_message(raw: bytes) -> Message:
    """Parse bytes into a Message without ever raising.

    Header values of the result are always ``str`` (see :class:`RobustPolicy`).  A
    message too deeply nested for the parser is read as headers plus an opaque body.
    Broken header lines are rejoined (:func:`_repair_header`), and a message/rfc822 part
    sent base64 or quoted-printable, which RFC 2046 §5.2.1 forbids and the stdlib
    therefore reads as a message made of encoded text, is decoded and parsed.
    """
    return _parse(raw, depth=0)


def _parse(raw: bytes, *, depth: int) -> Message:
    end = _header_end(raw)
    header, body = raw[:end], raw[end:]
    # The hint costs a scan of the message: only 8-bit headers need it.
    hint = None if header.isascii() else _header_charset_hint(raw)
    fixed = header
    if b" :" in fixed or b"\t:" in fixed:
        fixed = _OBSOLETE_HEADER_NAME.sub(rb"\1:", fixed)
    fixed = _repair_header(fixed)
    if fixed != header:
        raw = fixed + body
    policy = _policy(hint)
    try:
        message = email.message_from_bytes(raw, policy=policy)
    except Exception:  # RecursionError on pathological nesting, anything else on junk
        logger.warning("unparsable MIME structure, reading headers only", exc_info=True)
        return email.parser.BytesHeaderParser(policy=policy).parsebytes(raw)
    if depth < MAX_NESTING:
        _open_encoded_messages(message, depth=depth)
    return message


def _open_encoded_messages(message: Message, *, depth: int) -> None:
    """Replace each encoded message/rfc822 part's content by the message it encodes."""
    for part in message.walk():
        if part.get_content_type() not in _WHOLE_MESSAGE_TYPES:
            continue
        cte = transfer_encoding(part)
        payload = part._payload  # compat32 keeps the parsed message in a list
        if cte not in ("base64", "quoted-printable") or not isinstance(payload, list):
            continue
        try:
            encoded = b"".join(_as_bytes(inner) for inner in payload)
        except Exception:  # the generator cannot write every broken message back
            logger.debug("cannot re-read an encoded attached message", exc_info=True)
            continue
        inner = _parse(undo_transfer_encoding(encoded, cte), depth=depth + 1)
        part.set_payload([inner])
        part.replace_header("Content-Transfer-Encoding", "8bit")


def _as_bytes(message: Message) -> bytes:
    """``message`` as the bytes it was parsed from (as near as compat32 can write them)."""
    out = io.BytesIO()
    email.generator.BytesGenerator(out, mangle_from_=False, maxheaderlen=0).flatten(message)
    return out.getvalue()


# The stdlib parser's own line rules (email.feedparser): a line ends at CRLF, CR or LF; the
# header ends at the first line that is neither a field, a continuation nor a Unix From.
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")
_HEADER_LINE = re.compile(r"From |[\041-\071\073-\176]*:|[\t ]")


class HeaderFields:
    """The header fields of a message, as ``parse_message(raw)`` would give them, unparsed MIME.

    Building an ``email.message.Message`` costs ~80 µs even for a few header lines, and
    most mail is decided on three or four fields and never read further: this reads the
    header block alone, with the stdlib parser's rules (line ends, continuation lines, Unix
    From, a line without a colon ending the header, compat32's values) and the same
    preprocessing and 8-bit decoding as :func:`parse_message`. ``get`` and ``get_all``
    return exactly what ``Message.get`` and ``Message.get_all`` return there; the property
    tests in tests/test_headers.py hold the two to that.
    """

    __slots__ = ("_fields", "_policy", "names")

    def __init__(self, fields: list[tuple[str, str]], policy: RobustPolicy) -> None:
        self._fields = fields
        self._policy = policy
        #: Lowercased names of the fields present (``{n.lower() for n in message}``).
        self.names = frozenset(name.lower() for name, _ in fields)

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first field called ``name`` (any case), or ``default``."""
        wanted = name.lower()
        for key, value in self._fields:
            if key.lower() == wanted:
                return self._value(key, value)
        return default

    def get_all(self, name: str) -> list[str]:
        """Every field called ``name``, in order; [] when there is none."""
        wanted = name.lower()
        return [self._value(k, v) for k, v in self._fields if k.lower() == wanted]

    def _value(self, name: str, value: str) -> str:
        if value.isascii():
            return value
        return self._policy.header_fetch_parse(name, value)  # 8-bit bytes: RobustPolicy


def read_headers(raw: bytes) -> HeaderFields:
    """The header fields of ``raw`` (a whole message, or a header block) without parsing MIME."""
    end = _header_span(raw)
    cut = end[0] if end else len(raw)
    header = raw[:cut]
    hint = None if header.isascii() else _header_charset_hint(raw)
    if b" :" in header or b"\t:" in header:
        header = _OBSOLETE_HEADER_NAME.sub(rb"\1:", header)
    header = _repair_header(header)  # as _parse does: the same fields, broken lines rejoined
    # Only the header is decoded; the blank line after it ends the field lines as it does
    # in the full parse.
    text = (header + (raw[cut : end[1]] if end else b"")).decode("ascii", "surrogateescape")
    fields = _plain_fields(text) if end else None
    if fields is None:
        fields = _fields(text)
    return HeaderFields(fields, _policy(hint))


#: One field of a plain header: CRLF line ends only, a name, continuation lines.
_PLAIN_FIELD = re.compile(r"([!-9;-~]+):[ \t]*([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)\r\n")


def _plain_fields(text: str) -> list[tuple[str, str]] | None:
    """The fields of the usual header (every line a field or a continuation, CRLF line ends,
    a blank line after), or None for any other shape, which ``_fields`` then reads."""
    if text.count("\r") != text.count("\n") or text.count("\r\n") != text.count("\n"):
        return None  # a bare CR or LF
    fields = []
    position, size = 0, len(text) - 2  # the blank line, CRLF
    match = _PLAIN_FIELD.match
    while position < size:
        found = match(text, position)
        if found is None:
            return None  # a Unix From, a line without a colon, a first continuation...
        fields.append(found.groups())
        position = found.end()
    return fields if position == size and text.endswith("\r\n") else None


def _fields(text: str) -> list[tuple[str, str]]:
    """Every shape of header, exactly as email.feedparser reads it."""
    lines = []
    for match in _LINE.finditer(text):
        line = match.group()
        if not _HEADER_LINE.match(line):
            break
        lines.append(line)
    fields: list[tuple[str, str]] = []
    name: str | None = None
    source: list[str] = []
    last = len(lines) - 1
    for number, line in enumerate(lines):  # as email.feedparser.FeedParser._parse_headers
        if line[0] in " \t":
            if name is not None:  # a continuation before any field is dropped
                source.append(line)
            continue
        if name is not None:
            fields.append(_field(source))
            name, source = None, []
        if line.startswith("From "):
            if number == last and number:  # the first body line, really
                break
            continue  # the Unix From line, or a misplaced one: not a field
        colon = line.find(":")
        if colon == 0:  # no name: not a field
            continue
        name, source = line[:colon], [line]
    if name is not None:
        fields.append(_field(source))
    return fields


def _field(source: list[str]) -> tuple[str, str]:
    """compat32's ``header_source_parse``: the name as written, the value unfolded as is."""
    name, value = source[0].split(":", 1)
    value = value.lstrip(" \t") + "".join(source[1:])
    return name, value.rstrip("\r\n")


# ---------------------------------------------------------------------------
# Charsets


@functools.lru_cache(maxsize=256)
def codec_for(label: str | None) -> str | None:
    """The Python codec to decode a MIME charset label with, or None if the label is useless.

    Tolerates what senders write (``"windows-1251"``, ``win-1251``, ``cp-1251``,
    ``x-mac-cyrillic``, RFC 2231 ``utf-8*en``) and upgrades labels to the superset
    real mail uses (:data:`CHARSET_UPGRADES`).
    """
    if label is None:
        return None
    name = label.strip().strip("\"'").lower().split("*", 1)[0]
    if name in MEANINGLESS_CHARSETS:
        return None
    candidates = [name]
    if name.startswith("x-"):
        candidates.append(name[2:])
    win = re.fullmatch(r"(?:x-)?(?:win|windows|cp|ms)[-_ ]?(\d{3,4})", name)
    if win:
        candidates.append("cp" + win.group(1))
    iso = re.fullmatch(r"iso[-_ ]?8859[-_ ]?(\d+)(?:-[ie])?", name)
    if iso:
        candidates.append("iso8859-" + iso.group(1))
    for candidate in candidates:
        try:
            codec = codecs.lookup(candidate).name
            # Only text encodings: "charset=base64" or "zlib" name bytes-to-bytes codecs.
            if not isinstance(codecs.decode(b"", codec), str):
                continue
        except Exception:  # LookupError, or the "undefined" codec refusing everything
            continue
        return CHARSET_UPGRADES.get(codec, codec)
    logger.debug("unknown charset label %r", label)
    return None


def _decode_strict(data: bytes, codec: str) -> str | None:
    """Decode all complete characters of ``data``, or None if it is not valid ``codec``.

    An incremental decoder with ``final=False`` keeps an incomplete multi-byte sequence
    at the end in its buffer instead of failing: exactly what a cut-off fetch needs.
    """
    try:
        decoder = codecs.getincrementaldecoder(codec)(errors="strict")
        return decoder.decode(data, final=False)
    except (UnicodeDecodeError, LookupError):
        return None
    except Exception:  # some CJK codecs raise odd errors on junk
        return None


_RU_FREQ = {  # Russian letter frequencies (National Corpus of Russian), per letter
    "о": 0.1097,
    "е": 0.0845,
    "а": 0.0801,
    "и": 0.0735,
    "н": 0.067,
    "т": 0.0626,
    "с": 0.0547,
    "р": 0.0473,
    "в": 0.0454,
    "л": 0.044,
    "к": 0.0349,
    "м": 0.0321,
    "д": 0.0298,
    "п": 0.0281,
    "у": 0.0262,
    "я": 0.0201,
    "ы": 0.019,
    "ь": 0.0174,
    "г": 0.017,
    "з": 0.0165,
    "б": 0.0159,
    "ч": 0.0144,
    "й": 0.0121,
    "х": 0.0097,
    "ж": 0.0094,
    "ш": 0.0073,
    "ю": 0.0064,
    "ц": 0.0048,
    "щ": 0.0036,
    "э": 0.0032,
    "ф": 0.0026,
    "ъ": 0.0004,
    "ё": 0.0004,
}
_UK_EXTRA = {"і": 0.055, "ї": 0.006, "є": 0.004, "ґ": 0.0005, "’": 0.003}
_LATIN_EXTRA = "éèêëàâäáãåçîïíìôöóòõøœûüúùñßæłąęśżźćńčřšžýőű"
_PUNCTUATION = "«»—–…’‘“”„•№°±©®€£§·\xa0"
_LETTER_LOGP = {
    **{c: math.log(p) for c, p in _RU_FREQ.items()},
    **{c: math.log(p) for c, p in _UK_EXTRA.items()},
    **{c: math.log(0.01) for c in _LATIN_EXTRA},
    # Typographic punctuation is as common as a frequent letter in real text (HTML mail
    # is full of no-break spaces): it must not make a Cyrillic misreading look better.
    **{c: math.log(0.03) for c in _PUNCTUATION},
}
_RARE_LOGP = math.log(1e-6)
_WORD = re.compile(r"[^\W\d_]{2,}")
_CYRILLIC = re.compile(r"[\u0400-\u04ff]")
_ASCII_LETTER = re.compile(r"[A-Za-z]")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")

#: The shapes mojibake takes, which real text practically never has: three accented
#: Latin letters in a row (Cyrillic read as windows-1252: "Ïðèâåò"), a small Cyrillic
#: letter followed by a capital (koi8 read as windows-1251: "оПХБЕР"), a word mixing
#: Latin and Cyrillic letters (windows-1252 read as windows-1251: "Rйunion").
_MOJIBAKE = re.compile(
    r"[\u00c0-\u00ff]{3,}|[а-яёіїєґ][А-ЯЁІЇЄҐ]"
    r"|[A-Za-z][\u0400-\u04ff]|[\u0400-\u04ff][A-Za-z]|[\x80-\x9f\u2500-\u257f]"
)


def plausibility(text: str) -> float:
    """Average log-probability per non-ASCII character that ``text`` is real prose.

    A small language model in the spirit of Mozilla's universal charset detector: letter
    frequencies of Russian/Ukrainian and common Western diacritics, plus penalties for
    the two shapes mojibake takes: words mixing Latin and Cyrillic letters (windows-1252
    read as windows-1251) and wrong capitalisation inside a word (koi8 read as
    windows-1251 swaps the cases).  Returns 0.0 for pure ASCII.
    """
    sample = text[:SCORE_SAMPLE_CHARS]
    non_ascii = _NON_ASCII.findall(sample)
    if not non_ascii:
        return 0.0
    total = sum(_LETTER_LOGP.get(c.lower(), _RARE_LOGP) for c in non_ascii)
    for word in _WORD.findall(sample):
        if word.isascii():
            continue
        if _CYRILLIC.search(word) and _ASCII_LETTER.search(word):
            total += _RARE_LOGP
        if not (word.islower() or word.isupper() or word[1:].islower()):
            total += _RARE_LOGP
    return total / len(non_ascii)


def _best_single_byte(data: bytes, candidates: tuple[str, ...]) -> tuple[str, str, float]:
    """(text, codec, score) of the candidate that reads ``data`` most plausibly."""
    best = ("", "", -math.inf)
    for codec in candidates:
        text = _decode_strict(data, codec)
        if text is None:
            continue
        score = plausibility(text)
        if score > best[2]:
            best = (text, codec, score)
    return best


def _detect(data: bytes) -> str:
    """Decode bytes whose charset is unknown: single-byte scoring, then charset-normalizer."""
    text, codec, score = _best_single_byte(data, GUESS_CHARSETS)
    if score < PLAUSIBLE_SCORE and len(data) >= DETECTOR_MIN_BYTES:
        import charset_normalizer  # 40 ms to import; rarely needed (see cli's docstring)

        try:
            match = charset_normalizer.from_bytes(data[:MAX_PART_BYTES]).best()
        except Exception:  # a detector bug must not lose the mail
            logger.warning("charset-normalizer failed", exc_info=True)
            match = None
        if match is not None:
            logger.debug("charset-normalizer guessed %s", match.encoding)
            return str(match)
    if codec:
        return text
    return data.decode("cp1252", errors="replace").replace("\ufffd", "")


def _utf8_with_fallback(data: bytes, fallback: str | None) -> str | None:
    """Mostly-UTF-8 text with a few stray legacy bytes (a signature pasted from elsewhere).

    Returns None unless valid UTF-8 sequences outnumber the invalid bytes: then the
    valid parts are kept and each invalid run is decoded on its own.
    """
    mixed = codecs.getincrementaldecoder("utf-8")(errors="surrogateescape").decode(data)
    invalid = len(_SURROGATES.findall(mixed))
    valid = len(_NON_ASCII.findall(mixed)) - invalid
    if valid < 2 * invalid:
        return None

    def redecode(run: re.Match[str]) -> str:
        raw = run.group().encode("utf-8", errors="surrogateescape")
        return decode_bytes(raw, fallback) if fallback else _detect(raw)

    return _SURROGATE_RUN.sub(redecode, mixed)


_LONE_SURROGATES = re.compile("[\ud800-\udfff]")


def decode_bytes(data: bytes, charset: str | None = None, *, prefer_utf8: bool = False) -> str:
    """Decode ``data`` labelled ``charset`` to text; never raises, never returns mojibake knowingly.

    Never returns a lone surrogate either: UTF-7 and the escape codecs can spell one
    ("+2AA-", "\\ud800"), and no text holds it (nor can it be stored or encoded).
    """
    text = _decode_bytes(data, charset, prefer_utf8=prefer_utf8)
    return _LONE_SURROGATES.sub("", text) if _LONE_SURROGATES.search(text) else text


def _decode_bytes(data: bytes, charset: str | None, *, prefer_utf8: bool) -> str:
    """:func:`decode_bytes` without the final clean-up.

    Order of trust:

    1. 7-bit stateful charsets (ISO-2022-JP, UTF-7) honour their label: their bytes are ASCII.
    2. Pure ASCII is ASCII.
    3. Valid UTF-8 wins over a single-byte label (legacy text is practically never
       valid UTF-8 by accident, while UTF-8 labelled ISO-8859-1 is common), and over
       no label at all.  ``prefer_utf8`` makes it win over any label (RFC 6532 headers).
    4. The declared charset, if it decodes; for single-byte labels the result is
       compared with the other single-byte charsets and replaced when it reads as
       mojibake (:func:`plausibility`).
    5. Detection.
    """
    if not data:
        return ""
    if data.startswith(_UTF8_BOM):
        data = data[len(_UTF8_BOM) :]
        charset = "utf-8"
    codec = codec_for(charset)
    if codec and (codec.startswith("iso2022") or codec in ("utf-7", "hz")):
        text = _decode_strict(data, codec)
        if text is not None:
            return text
    if data.isascii():
        return data.decode("ascii")
    if codec is None or prefer_utf8 or codec in CONFUSABLE_CHARSETS or codec == "utf-8":
        text = _decode_strict(data, "utf-8")
        if text is not None:
            return text
    if codec and codec != "utf-8":
        text = _decode_strict(data, codec)
        if text is not None:
            if codec not in CONFUSABLE_CHARSETS:
                return text
            if not _MOJIBAKE.search(text[:SCORE_SAMPLE_CHARS]):
                return text
            score = plausibility(text)
            alternatives = tuple(c for c in GUESS_CHARSETS if c != codec)
            better, better_codec, better_score = _best_single_byte(data, alternatives)
            enough = len(_NON_ASCII.findall(text[:SCORE_SAMPLE_CHARS])) >= RELABEL_MIN_CHARS
            if enough and better_score > score + RELABEL_MARGIN:
                logger.debug("charset %s reads as mojibake, using %s", codec, better_codec)
                return better
            return text
    mostly_utf8 = _utf8_with_fallback(data, codec if codec != "utf-8" else None)
    if mostly_utf8 is not None:
        return mostly_utf8
    return _detect(data)


# ---------------------------------------------------------------------------
# Headers

#: RFC 2047 §2 encoded word.  Tolerates what breaks the strict grammar in the wild:
#: spaces inside the encoded text, and no whitespace around the word.
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([QqBb])\?([^?]*)\?=")
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_QP_HEADER_ESCAPE = re.compile(rb"=([0-9A-Fa-f]{2})")
#: Controls, U+FFFD and every surrogate: a lone one (UTF-7 "+2AA-" decodes to U+D800) is
#: not text, and SQLite refuses it (UnicodeEncodeError) when the Subject goes to the outbox.
_UNSAFE_HEADER_CHARS = re.compile("[\x00-\x08\x0b-\x1f\x7f\ufffd\ud800-\udfff]")


def _decode_q(text: str) -> bytes:
    """RFC 2047 §4.2 "Q" encoding; a malformed escape stays literal."""
    raw = text.replace("_", " ").encode("ascii", errors="replace")
    return _QP_HEADER_ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), raw)


def decode_base64(data: bytes) -> bytes:
    """Base64 that survives missing padding, junk characters, concatenation and truncation.

    RFC 2045 §6.8 says to ignore characters outside the alphabet.  Each ``=``-padded
    run is decoded on its own (some encoders concatenate encoded blocks), and an
    incomplete final quantum yields the whole bytes it holds: 2 or 3 leftover
    characters still carry 1 or 2 bytes, a single one carries none.
    """
    clean = re.sub(rb"[^A-Za-z0-9+/=]", b"", data)
    out = []
    for chunk in clean.split(b"="):
        if not chunk:
            continue
        usable = len(chunk) - (1 if len(chunk) % 4 == 1 else 0)
        chunk = chunk[:usable]
        chunk += b"=" * (-len(chunk) % 4)
        try:
            out.append(binascii.a2b_base64(chunk))
        except binascii.Error:
            continue
    return b"".join(out)


def _decode_b(text: str) -> bytes:
    return decode_base64(text.encode("ascii", errors="ignore"))


def decode_header(value: object) -> str:
    """Decode a header value (RFC 2047 encoded words) to one line of text; never raises.

    Beyond RFC 2047: adjacent encoded words in the same charset are joined as bytes
    before decoding, so a multi-byte character split across two words (a common
    encoder bug that §5 forbids) comes out whole; each charset is decoded with the
    fallbacks of :func:`decode_bytes`; whitespace is collapsed and control characters
    and U+FFFD are dropped.
    """
    if value is None:
        return ""
    if isinstance(value, email.header.Header):
        chunks = email.header.decode_header(value)
        text = "".join(
            decode_bytes(chunk, charset, prefer_utf8=charset == "unknown-8bit")
            if isinstance(chunk, bytes)
            else chunk
            for chunk, charset in chunks
        )
        return _tidy_header(text)
    text = _FOLD.sub("", str(value))
    pieces: list[tuple[str | None, bytes | str]] = []  # (charset, bytes) or (None, text)
    position = 0
    for match in _ENCODED_WORD.finditer(text):
        between = text[position : match.start()]
        # RFC 2047 §6.2: whitespace between two adjacent encoded words is not displayed.
        if between and not (between.isspace() and pieces and pieces[-1][0] is not None):
            pieces.append((None, between))
        charset, encoding, encoded = match.groups()
        raw = _decode_q(encoded) if encoding in "Qq" else _decode_b(encoded)
        charset = charset.lower().split("*", 1)[0]
        if pieces and pieces[-1][0] == charset:
            pieces[-1] = (charset, pieces[-1][1] + raw)  # type: ignore[operator]
        else:
            pieces.append((charset, raw))
        position = match.end()
    pieces.append((None, text[position:]))
    decoded = "".join(
        decode_bytes(chunk, charset) if isinstance(chunk, bytes) else chunk
        for charset, chunk in pieces
    )
    return _tidy_header(decoded)


def _tidy_header(text: str) -> str:
    return " ".join(_UNSAFE_HEADER_CHARS.sub("", text).split())


_ADDRESS = re.compile(r"[^\s<>\"',;:()@]+@[^\s<>\"',;:()@]+")


def parse_addresses(values: list[str]) -> list[tuple[str, str]]:
    """(display name, address) pairs from address headers; names decoded, addresses lowercased.

    Names are decoded after the address list is split (RFC 2047 §5: an encoded word
    may hold a comma).  If the stdlib parser chokes, addresses are picked out by shape.
    """
    pairs: list[tuple[str, str]] = []
    for value in values:
        text = decode_header(value) if isinstance(value, email.header.Header) else str(value)
        try:
            found = email.utils.getaddresses([text])
        except Exception:
            found = []
        if not found or any(addr and not _ADDRESS.fullmatch(addr) for _, addr in found):
            # "a@x b@x" without a comma, stray "@": take what looks like addresses.
            logger.debug("unparsable address header %r", text)
            found = [("", addr) for addr in _ADDRESS.findall(text)]
        pairs.extend(found)
    out = []
    for name, addr in pairs:
        name = decode_header(name).strip("\"' ")
        addr = addr.strip().lower()
        if name or addr:
            out.append((name, addr))
    return out


def parse_date(value: object) -> datetime | None:
    """The Date header as an aware datetime, or None when it cannot be read.

    RFC 5322 §3.3: ``-0000`` means "UTC, local zone unknown"; the stdlib returns a
    naive datetime for it, made aware here so callers can always convert it.
    """
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(decode_header(value))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    # At the ends of datetime's range (year 1 or 9999) converting to another zone or adding
    # a few minutes overflows: such a Date is junk, and must not crash the mail's handling.
    if not 2 <= parsed.year <= 9998:
        return None
    return parsed


# ---------------------------------------------------------------------------
# Bodies

_TRANSFER_ENCODINGS = {
    "base64": "base64",
    "quotedprintable": "quoted-printable",
    "quoted-printable": "quoted-printable",
    "qp": "quoted-printable",
    # uuencode (POSIX uuencode; RFC 1341 drafts): old mailers and Usenet gateways.
    "x-uuencode": "x-uuencode",
    "x-uue": "x-uuencode",
    "uuencode": "x-uuencode",
    "uue": "x-uuencode",
    # Compressed then base64 (MIME-tools' x-gzip64, Netscape's x-compress…): not text.
    "x-gzip64": "compressed",
    "gzip64": "compressed",
    "x-gzip": "compressed",
    "gzip": "compressed",
    "x-compress": "compressed",
    "x-deflate": "compressed",
}
_QP_CUT_ESCAPE = re.compile(rb"=[0-9A-Fa-f]?\Z")


def transfer_encoding(part: Message) -> str:
    """The part's Content-Transfer-Encoding: "base64", "quoted-printable", "x-uuencode",
    "compressed" or "identity".

    Reads what senders write: ``Quoted-printable``, ``quoted printable``,
    ``quoted-printable;``.  Everything else (7bit, 8bit, binary, ``8bits``, empty, junk)
    needs no decoding.
    """
    label = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    label = re.sub(r"[\s_;]+", "", label.split(";", 1)[0])
    return _TRANSFER_ENCODINGS.get(label, "identity")


def decode_quoted_printable(data: bytes) -> bytes:
    """RFC 2045 §6.7 quoted-printable; an escape cut off by a partial fetch is dropped."""
    return binascii.a2b_qp(_QP_CUT_ESCAPE.sub(b"", data))


_UU_BEGIN = re.compile(rb"^begin [0-7]{3,4} [^\r\n]*\r?$", re.MULTILINE)


def decode_uuencode(data: bytes) -> bytes:
    """The bytes of the first uuencoded file in ``data`` ("begin 644 name" … "end").

    A line cut by a partial fetch yields the whole bytes it holds; a damaged one ends
    the file.
    """
    begin = _UU_BEGIN.search(data)
    lines = data[begin.end() :].split(b"\n")[1:] if begin else data.split(b"\n")
    out = []
    for line in lines:
        line = line.rstrip(b"\r")
        if line == b"end":
            break
        if line in (b"", b"`"):
            continue
        declared = (line[0] - 32) & 63
        carried = (len(line) - 1) * 3 // 4
        if carried < declared:  # cut short: claim only what is there
            line = bytes([32 + carried]) + line[1 : 1 + (carried + 2) // 3 * 4]
        try:
            out.append(binascii.a2b_uu(line))
        except binascii.Error:
            break
    return b"".join(out)


def _encoded_payload(part: Message) -> bytes | str:
    """The part's body exactly as it came, transfer encoding still applied.

    Bytes for a parsed message; ``str`` only for a text part built in memory (e.g. by
    ``EmailMessage.set_content``), which holds decoded text, not bytes.

    compat32 keeps bytes it cannot decode as surrogate escapes in ``Message._payload``.
    The public accessors cannot return them losslessly: ``get_payload()`` replaces them
    with the declared charset's reading (mojibake when the label is wrong) and
    ``get_payload(decode=True)`` mangles text built in memory.  Reading the attribute
    is the only lossless route, and it has been stable since Python 3.2.
    """
    payload = part._payload  # private on purpose: see the docstring
    if isinstance(payload, bytes):
        return payload
    if not isinstance(payload, str):
        return b""
    if payload.isascii() or _has_surrogates(payload):
        return payload.encode("ascii", errors="surrogateescape")
    return payload


def undo_transfer_encoding(encoded: bytes, cte: str) -> bytes:
    """Undo ``cte`` on at most :data:`MAX_PART_BYTES` of output; tolerant of truncation.

    "compressed" is not undone: its bytes are not text (see :func:`unreadable`).
    """
    if cte == "base64":
        # 4 characters carry 3 bytes, and line breaks count too: a generous slice.
        return decode_base64(encoded[: 2 * MAX_PART_BYTES])[:MAX_PART_BYTES]
    if cte == "quoted-printable":
        return decode_quoted_printable(encoded[: 3 * MAX_PART_BYTES])[:MAX_PART_BYTES]
    if cte == "x-uuencode":
        return decode_uuencode(encoded[: 2 * MAX_PART_BYTES])[:MAX_PART_BYTES]
    return encoded[:MAX_PART_BYTES]


#: Quoted-printable that the part does not declare (an empty or wrong label).  Evidence:
#: an encoded "=" (``=3D``), two encoded 8-bit bytes in a row (a UTF-8 character), or
#: two soft line breaks where an encoder wraps (76 columns); and no "=" that
#: quoted-printable could not have written.  (One "=" at the end of a line is as likely
#: the padding of a base64 line.)
_QP_ESCAPES = re.compile(rb"=3D|=[89A-F][0-9A-F]=[89A-F][0-9A-F]")
_QP_SOFT_BREAK = re.compile(rb"^[^\r\n]{60,75}=\r?$", re.MULTILINE)
_NOT_QP = re.compile(rb"=(?![0-9A-F]{2}|\r?\n|\Z)")
#: Base64 that the part does not declare: nothing but lines of its alphabet, at least
#: one of them long, mixing cases and digits as encoded bytes do.
#: (Each line ends in a line break or the end: an unambiguous repeat, so a text that is
#: base64 but for one character fails in linear time, not exponential.)
_BASE64_TEXT = re.compile(rb"(?:[A-Za-z0-9+/]+={0,2}[ \t]*(?:\r?\n|\Z))+")
_BASE64_LONG_LINE = re.compile(rb"^[A-Za-z0-9+/]{40,}", re.MULTILINE)
#: C0 controls that no text holds; not ESC, SO and SI, which ISO-2022 charsets switch with.
_CONTROL_BYTES = re.compile(rb"[\x00-\x08\x10-\x1a\x1c-\x1f\x7f]")
#: Decoded bytes with more control bytes than this are not text (random bytes: 11 %).
BINARY_CONTROL_SHARE = 0.05
#: Control bytes of UTF-16 text sit in one byte of each code unit: nearly all of them.
WIDE_TEXT_PARITY = 0.95
#: Charsets whose text is full of NUL bytes, which must not read as binary.
_WIDE_CHARSETS = re.compile(r"utf-?(?:16|32)|ucs-?[24]", re.IGNORECASE)


def sniff_transfer_encoding(data: bytes) -> str:
    """The transfer encoding an undeclared text part evidently has, else "identity".

    Real mail labels quoted-printable text ``7bit`` or not at all, and base64 ``binary``;
    shown as they are, they fill the SMS with ``=E2=99=9A`` or ``d2UgaGF2ZQ…``.
    """
    if not data.isascii():
        return "identity"
    stripped = data.strip()
    if (  # first: a base64 line's padding looks like a soft line break
        _BASE64_LONG_LINE.search(stripped)
        and _BASE64_TEXT.fullmatch(stripped)
        and re.search(rb"[A-Z]", stripped)
        and re.search(rb"[a-z]", stripped)
        and re.search(rb"[0-9+/]", stripped)
    ):
        return "base64"
    evidence = _QP_ESCAPES.search(data) or len(_QP_SOFT_BREAK.findall(data, 0, 8192)) >= 2
    if evidence and not _NOT_QP.search(data):
        return "quoted-printable"
    return "identity"


def _is_binary(data: bytes, charset: str | None) -> bool:
    """Whether decoded bytes are not text: many control bytes, scattered.

    UTF-16 and UTF-32 text is full of NUL and other low bytes too (Latin letters are
    ``00 61``, Cyrillic ``04 3F``), even under a wrong label, but always in the same
    byte of each code unit; bytes of a picture or an archive fall anywhere.
    """
    if charset and _WIDE_CHARSETS.search(charset):
        return False
    sample = data[:SCORE_SAMPLE_CHARS]
    positions = [match.start() for match in _CONTROL_BYTES.finditer(sample)]
    if len(positions) <= BINARY_CONTROL_SHARE * len(sample):
        return False
    even = sum(1 for position in positions if position % 2 == 0)
    return not max(even, len(positions) - even) >= WIDE_TEXT_PARITY * len(positions)


def _charset(part: Message) -> str | None:
    try:
        return part.get_content_charset()
    except Exception:  # a malformed RFC 2231 parameter
        return None


def _content(part: Message) -> bytes | str | None:
    """The part's content with its transfer encoding undone, None when it is not text."""
    encoded = _encoded_payload(part)
    if isinstance(encoded, str):
        return encoded
    cte = transfer_encoding(part)
    if cte == "compressed":
        return None
    if cte == "identity":
        cte = sniff_transfer_encoding(encoded[: 3 * MAX_PART_BYTES])
    data = undo_transfer_encoding(encoded, cte)
    if cte in ("base64", "x-uuencode") and _is_binary(data, _charset(part)):
        return None
    return data


_META_CHARSET = re.compile(rb"""<meta[^>]{0,200}?charset\s*=\s*["']?([A-Za-z0-9_.:-]+)""", re.I)


def part_text(part: Message) -> str:
    """The decoded text of a leaf part, with every fallback of :func:`decode_bytes`.

    The charset comes from Content-Type, else (for HTML) from ``<meta charset>``
    (the HTML Living Standard lets a document declare it inside), else detection.
    A transfer encoding the part does not declare is recognised
    (:func:`sniff_transfer_encoding`).  What is not text (see :func:`unreadable`) is "".
    """
    data = _content(part)
    if data is None:
        return ""
    if isinstance(data, str):
        return data
    charset = _charset(part)
    if not charset and part.get_content_subtype() == "html":
        meta = _META_CHARSET.search(data, 0, 4096)
        if meta:
            charset = meta.group(1).decode("ascii")
    return decode_bytes(data, charset)


def unreadable(part: Message) -> str | None:
    """Why a leaf part has no text to show: "compressed", "binary" (encoded bytes that are
    not text, e.g. a picture labelled text/plain), or None when it can be read."""
    if transfer_encoding(part) == "compressed":
        return "compressed"
    return "binary" if _content(part) is None else None


# ---------------------------------------------------------------------------
# Attachments


def is_attachment(content_type: str, disposition: str | None, named: bool) -> bool:
    """Whether a part is a file the mail carries (RFC 2183): marked ``attachment``, or a
    named part that is not a container.  The one answer, for ``Mail.has_attachment``, the
    body (:mod:`forwarder.text.transform`) and the partial fetch
    (``forwarder.imap.bodystructure``), which must agree.

    A file may still be meant to be shown where it stands (``inline``, see
    :func:`shown_inline`): Thunderbird attaches a .txt that way, and a text part shown
    inline is read as part of the body.
    """
    if (disposition or "").strip().lower() == "attachment":
        return True
    return named and not content_type.lower().startswith("multipart/")


def shown_inline(disposition: str | None) -> bool:
    """RFC 2183 §2.1: ``inline`` asks for the part to be displayed where it stands."""
    return (disposition or "").strip().lower() == "inline"


def _disposition(part: Message) -> str:
    return str(part.get("Content-Disposition", "")).split(";", 1)[0]


def part_is_attachment(part: Message) -> bool:
    """:func:`is_attachment` for a parsed part."""
    try:
        named = bool(part.get_filename())
    except Exception:  # a malformed RFC 2231 filename
        named = True
    return is_attachment(part.get_content_type(), _disposition(part), named)


def part_is_saved(part: Message) -> bool:
    """An attachment not meant to be shown inline: never read as the body."""
    return part_is_attachment(part) and not shown_inline(_disposition(part))
