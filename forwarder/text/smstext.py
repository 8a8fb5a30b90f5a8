"""Composing the SMS text: template, cleanup, GSM-7/UCS-2 choice, trimming to length and cost.

Pure functions: :func:`fit` takes the template fields and :class:`SmsOptions` and returns
an :class:`SmsText`.  The rules and their sources:

Length
    The AlphaSMS Email2SMS gateway takes at most 500 characters (Email2SMS doc, Limits).
    The document does not say how it counts; Python counts code points, a Java or .NET
    gateway counts UTF-16 code units (an emoji outside the BMP is 2).  We count UTF-16
    code units, which is never less than code points, so the text fits either way.

Cost
    An SMS is billed per segment (3GPP TS 23.038 and TS 23.040): 160 GSM-7 septets or
    70 UCS-2 code units fit in one message, 153 or 67 per part once it is concatenated
    (the rest of each part holds the UDH).  The GSM-7 extension table characters
    ``^{}\\[~]|€`` take two septets (escape + code), and a part never ends between the
    two, nor between the two halves of a UTF-16 surrogate pair.

Encoding
    ``auto`` sends GSM-7 when the text, after typographic normalisation (’ → ', “ → ",
    – → -, … → ..., no-break spaces → space), is all GSM-7, else UCS-2 unchanged.  A single
    curly apostrophe would otherwise double the price.  ``gsm7`` forces GSM-7: typography
    as above, Cyrillic transliterated (``transliterate`` if set, else ``uk`` when the text
    has і ї є ґ and ``ru`` otherwise), diacritics GSM-7 lacks removed (ą → a), Greek
    letters mapped to the GSM-7 capitals and Latin look-alikes, emoji dropped, anything
    else ``?``.  ``ucs2`` keeps the text as it is.

Trimming
    The body is cut first, at a word boundary, with "…" (or "..." in GSM-7); then the
    other fields, the subject and the sender last; then the whole text.  Cuts fall only
    between grapheme clusters (a simplified UAX #29: combining marks, ZWJ emoji
    sequences, skin-tone modifiers, tag sequences and regional-indicator flag pairs stay
    whole), so a trimmed text never ends in half an accent or half a flag.
"""

from __future__ import annotations

import functools
import math
import re
import string
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from forwarder.text import translit

#: Email2SMS limit on the SMS text (Email2SMS doc, Limits); also the ceiling of ``max_length``.
SMS_MAX_CHARS = 500
#: The smallest ``max_length`` accepted (the config allows any positive limit).
SMS_MIN_CHARS = 1

#: 3GPP TS 23.040 §9.2.3.24.1 with a 6-octet concatenation header: one SMS vs each part.
GSM7_SINGLE_SEPTETS = 160
GSM7_PART_SEPTETS = 153
UCS2_SINGLE_UNITS = 70
UCS2_PART_UNITS = 67

DEFAULT_TEMPLATE = "{from_name}: {subject}\n{body}"
TEMPLATE_FIELDS = frozenset(
    {"from_name", "from_addr", "subject", "body", "date", "folder", "rule", "to"}
)
ENCODINGS = ("auto", "gsm7", "ucs2")
TRANSLITERATIONS = ("off", *translit.STANDARDS)

#: Fields are trimmed in this order; the sender and subject survive longest.
TRIM_ORDER = ("body", "to", "folder", "rule", "date", "from_addr", "subject", "from_name")
#: Fields that are one line; only the body keeps its line breaks.
MULTILINE_FIELDS = frozenset({"body"})

ELLIPSIS_UCS2 = "…"
ELLIPSIS_GSM7 = "..."
#: What is sent when nothing else fits or everything is empty (GSM-7, one segment)...
FALLBACK_TEXT = "(no text)"
#: ...and when even that is longer than ``max_length``.
TINY_FALLBACK_TEXT = "?"

#: A trimmed field ends at the last space when one is this close to the cut.
MAX_WORD_BACKTRACK = 25
#: More combining marks than this on one letter is "Zalgo" text: the rest are dropped.
MAX_COMBINING_MARKS = 5

# -- GSM 03.38 (3GPP TS 23.038 §6.2.1) -------------------------------------------

#: The basic character set, without ESC (0x1B) and CR (we never send CR).
GSM7_BASIC = (
    "@£$¥èéùìòÇ\nØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
#: The extension table (reached through ESC, so two septets each), without form feed.
GSM7_EXTENSION = "^{}\\[~]|€"
_GSM7_TEXT = re.compile(f"[{re.escape(GSM7_BASIC + GSM7_EXTENSION)}]*")
_GSM7_EXTENSION_CHAR = re.compile(f"[{re.escape(GSM7_EXTENSION)}]")

#: Typographic characters and their GSM-7 equivalents, used by ``auto`` and ``gsm7``.
TYPOGRAPHY = {
    **dict.fromkeys("‘’‚‛′ʼ`´", "'"),
    **dict.fromkeys("“”„‟″«»", '"'),
    **dict.fromkeys("‐‑‒–—―−", "-"),
    **dict.fromkeys(
        "\xa0\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f\u205f\u3000",
        " ",
    ),
    "…": "...",
    "‹": "<",
    "›": ">",
    "•": "-",
    "·": "-",
    "×": "x",
    "÷": "/",
}
_TYPOGRAPHY_TABLE = str.maketrans(TYPOGRAPHY)

#: Forced GSM-7 only: letters and signs GSM-7 lacks that a Latin reader still understands.
GSM7_SUBSTITUTES = {
    "ł": "l",
    "Ł": "L",
    "đ": "d",
    "Đ": "D",
    "œ": "oe",
    "Œ": "OE",
    "þ": "th",
    "Þ": "Th",
    "ð": "d",
    "Ð": "D",
    "ı": "i",
    "ç": "Ç",
    "№": "No",
    "™": "TM",
    "©": "(c)",
    "®": "(R)",
    "°": "o",
    "≤": "<=",
    "≥": ">=",
    "≠": "!=",
    "½": "1/2",
    "¼": "1/4",
    "¾": "3/4",
    # Greek: GSM-7 has the capitals that differ from Latin; the rest look like Latin.
    "Α": "A",
    "Β": "B",
    "Ε": "E",
    "Ζ": "Z",
    "Η": "H",
    "Ι": "I",
    "Κ": "K",
    "Μ": "M",
    "Ν": "N",
    "Ο": "O",
    "Ρ": "P",
    "Τ": "T",
    "Υ": "Y",
    "Χ": "X",
}

# -- cleanup --------------------------------------------------------------------

#: Removed from every field: controls other than LF, lone surrogates, private use,
#: noncharacters, U+FFFD, zero-width and invisible characters, bidi controls.
_UNSAFE = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\ud800-\udfff\ue000-\uf8ff\ufdd0-\ufdef\ufffe\uffff\ufffd"
    "\u00ad\u034f\u061c\u115f\u1160\u180e\u200b\u200c\u200e\u200f\u202a-\u202e"
    "\u2060-\u2064\u2066-\u2069\u3164\ufeff\uffa0\ufff9-\ufffb\U000f0000-\U0010ffff]"
)
_EMOJI_RANGES = (
    "\u2190-\u21ff\u2300-\u23ff\u2460-\u27bf\u2900-\u297f\u2b00-\u2bff\U0001f000-\U0001faff"
)
#: A ZWJ joins emoji (👩‍💻); anywhere else it is invisible junk.
_STRAY_ZWJ = re.compile(
    f"(?<![{_EMOJI_RANGES}\ufe0f\U0001f3fb-\U0001f3ff])\u200d|\u200d(?![{_EMOJI_RANGES}])"
)
_LINE_SPACE = re.compile(r"[ \t\f\v\u2028\u2029]+")
_ALL_SPACE = re.compile(r"\s+")
#: Any whitespace around a line break, empty lines included.
_BLANK_LINES = re.compile(r"[^\S\n]*\n\s*")
_MARKS = "\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f"
_ZALGO = re.compile(f"([{_MARKS}]{{{MAX_COMBINING_MARKS}}})[{_MARKS}]+")
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")
_DOUBLE_SPACE = re.compile(" {2,}")


def clean_field(value: str, *, multiline: bool) -> str:
    """Unicode NFC, without characters the gateway or phones mangle, whitespace collapsed.

    A multi-line value keeps single line breaks (blank lines cost characters and say
    nothing on a phone); a one-line value gets its line breaks turned into spaces.
    """
    text = value.replace("\r\n", "\n").replace("\r", "\n").replace("\t", " ")
    text = _UNSAFE.sub("", text)
    if "\u200d" in text:
        text = _STRAY_ZWJ.sub("", text)
    if not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)
    text = _ZALGO.sub(r"\1", text)
    if not multiline:
        return _ALL_SPACE.sub(" ", text).strip()
    return _BLANK_LINES.sub("\n", _LINE_SPACE.sub(" ", text)).strip()


# -- grapheme clusters -------------------------------------------------------------

_REGIONAL_INDICATOR = range(0x1F1E6, 0x1F200)
_EMOJI_MODIFIER = range(0x1F3FB, 0x1F400)
_TAG = range(0xE0020, 0xE0080)


def _extends_cluster(char: str) -> bool:
    """True if ``char`` never starts a cluster (UAX #29 GB9, GB9a: Extend, ZWJ, SpacingMark)."""
    code = ord(char)
    if code < 0x300:
        return False
    return (
        unicodedata.category(char) in ("Mn", "Me", "Mc")
        or char == "\u200d"
        or code in _EMOJI_MODIFIER
        or code in _TAG
    )


def _regional_run(text: str, end: int) -> int:
    """How many regional indicators stand in a row right before offset ``end``."""
    start = end
    while start > 0 and ord(text[start - 1]) in _REGIONAL_INDICATOR:
        start -= 1
    return end - start


def is_boundary(text: str, i: int) -> bool:
    """True if ``text`` may be cut at offset ``i`` without splitting a grapheme cluster.

    Simplified UAX #29 (extended grapheme clusters): GB9/9a (marks, ZWJ, spacing marks,
    emoji modifiers and tags extend), GB11 (after a ZWJ the next character joins),
    GB12/13 (regional indicators pair up into flags).  Hangul jamo and Indic conjunct
    rules are left out: NFC composes modern Hangul, and a cut between Indic consonants
    still shows whole letters.
    """
    if i <= 0 or i >= len(text):
        return True
    char, previous = text[i], text[i - 1]
    if previous == "\u200d" or _extends_cluster(char):
        return False
    if ord(char) in _REGIONAL_INDICATOR and ord(previous) in _REGIONAL_INDICATOR:
        return _regional_run(text, i) % 2 == 0
    return True


def boundary_at_or_before(text: str, i: int) -> int:
    """The last offset ≤ ``i`` where ``text`` may be cut (see :func:`is_boundary`)."""
    i = min(max(i, 0), len(text))
    while not is_boundary(text, i):
        i -= 1
    return i


def grapheme_boundaries(text: str) -> list[int]:
    """All offsets where ``text`` may be cut: 0, each cluster start, and ``len(text)``."""
    return [i for i in range(len(text) + 1) if is_boundary(text, i)]


# -- encodings and cost ---------------------------------------------------------------


def is_gsm7(text: str) -> bool:
    """True if every character of ``text`` is in the GSM-7 default alphabet or its extension."""
    return _GSM7_TEXT.fullmatch(text) is not None


def normalize_typography(text: str) -> str:
    """Typographic quotes, dashes, ellipses and special spaces as their GSM-7 equivalents."""
    return text.translate(_TYPOGRAPHY_TABLE)


@functools.lru_cache(maxsize=4096)
def _gsm7_char(char: str) -> str:
    """The GSM-7 stand-in for one character that is not GSM-7 (forced ``gsm7``)."""
    if char in GSM7_SUBSTITUTES:
        return GSM7_SUBSTITUTES[char]
    if "\u0370" <= char <= "\u03ff" and char.upper() != char:
        capital = char.upper()  # GSM-7 has Greek capitals only, and only those unlike Latin
        if is_gsm7(capital):
            return capital
        if capital in GSM7_SUBSTITUTES:
            return GSM7_SUBSTITUTES[capital]
    category = unicodedata.category(char)
    if category.startswith("M") or category in ("So", "Sk", "Cf") or char == "\u200d":
        return ""  # emoji, their modifiers and joiners, stray marks
    base = "".join(c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c))
    if base and is_gsm7(base):
        return base
    if base and all(c in GSM7_SUBSTITUTES for c in base):
        return "".join(GSM7_SUBSTITUTES[c] for c in base)
    return "?"


def to_gsm7(text: str, standard: str) -> str:
    """``text`` forced into GSM-7 (see the module docstring); Cyrillic via ``standard``."""
    text = normalize_typography(text)
    if is_gsm7(text):
        return text
    text = translit.transliterate(text, standard)
    text = "".join(c if is_gsm7(c) else _gsm7_char(c) for c in text)
    return _DOUBLE_SPACE.sub(" ", text)  # where a dropped emoji stood between two words


def _parts(units: list[int], single: int, part: int) -> int:
    total = sum(units)
    if total <= single:
        return 1
    count, used = 1, 0
    for size in units:
        if used + size > part:  # never split an escape pair or a surrogate pair
            count, used = count + 1, 0
        used += size
    return count


def count_segments(text: str, encoding: str) -> int:
    """How many SMS the gateway bills for ``text`` in ``encoding`` (see module docstring)."""
    if encoding == "gsm7":
        extended = len(_GSM7_EXTENSION_CHAR.findall(text))
        septets = len(text) + extended
        if septets <= GSM7_SINGLE_SEPTETS:
            return 1
        if not extended:
            return math.ceil(septets / GSM7_PART_SEPTETS)
        units = [2 if c in GSM7_EXTENSION else 1 for c in text]
        return _parts(units, GSM7_SINGLE_SEPTETS, GSM7_PART_SEPTETS)
    astral = len(_ASTRAL.findall(text))
    code_units = len(text) + astral
    if code_units <= UCS2_SINGLE_UNITS:
        return 1
    if not astral:
        return math.ceil(code_units / UCS2_PART_UNITS)
    units = [2 if ord(c) > 0xFFFF else 1 for c in text]
    return _parts(units, UCS2_SINGLE_UNITS, UCS2_PART_UNITS)


def sms_length(text: str) -> int:
    """Length as checked against ``max_length``: UTF-16 code units (see module docstring)."""
    return len(text) + len(_ASTRAL.findall(text))


# -- templates -------------------------------------------------------------------------

_FORMATTER = string.Formatter()


def validate_template(template: str) -> str | None:
    """None if ``template`` is usable, else a message that tells the user what to fix.

    A template is text with ``{field}`` placeholders from :data:`TEMPLATE_FIELDS`;
    ``{{`` and ``}}`` are literal braces.  Format specs and conversions (``{body:10}``,
    ``{subject!r}``) are refused: trimming is the composer's job.
    """
    if not isinstance(template, str):
        return "the template must be text"
    if not template.strip():
        return "the template is empty"
    known = ", ".join("{%s}" % name for name in sorted(TEMPLATE_FIELDS))  # noqa: UP031
    try:
        parsed = list(_FORMATTER.parse(template))
    except ValueError as error:
        return f"stray brace in the template ({error}); write {{{{ or }}}} for a literal brace"
    for _literal, field, spec, conversion in parsed:
        if field is None:
            continue
        if field not in TEMPLATE_FIELDS:
            return f"unknown field {{{field}}} in the template; known fields: {known}"
        if spec or conversion:
            return f"field {{{field}}} has a format spec or conversion; write just {{{field}}}"
    return None


@functools.lru_cache(maxsize=64)
def _parse_template(template: str) -> tuple[tuple[str, str | None], ...]:
    problem = validate_template(template)
    if problem:
        raise ValueError(problem)
    return tuple((literal, field) for literal, field, _, _ in _FORMATTER.parse(template))


# -- options and result ------------------------------------------------------------------


@dataclass(frozen=True)
class SmsOptions:
    """How to compose the SMS; validated on construction (raises ValueError).

    ``max_length`` is in characters (see :func:`sms_length`), at most
    :data:`SMS_MAX_CHARS`; ``max_segments`` caps the cost instead, and both apply.
    """

    template: str = DEFAULT_TEMPLATE
    max_length: int = SMS_MAX_CHARS
    encoding: str = "auto"
    transliterate: str = "off"
    max_segments: int | None = None

    def __post_init__(self) -> None:
        problem = validate_template(self.template)
        if problem:
            raise ValueError(problem)
        if (
            isinstance(self.max_length, bool)
            or not isinstance(self.max_length, int)
            or not SMS_MIN_CHARS <= self.max_length <= SMS_MAX_CHARS
        ):
            raise ValueError(
                f"max_length must be a whole number from {SMS_MIN_CHARS} to {SMS_MAX_CHARS}"
                f" (the gateway's limit), not {self.max_length!r}"
            )
        if self.encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {', '.join(ENCODINGS)}")
        if self.transliterate not in TRANSLITERATIONS:
            raise ValueError(f"transliterate must be one of {', '.join(TRANSLITERATIONS)}")
        if self.max_segments is not None and (
            isinstance(self.max_segments, bool)
            or not isinstance(self.max_segments, int)
            or self.max_segments < 1
        ):
            raise ValueError(f"max_segments must be a whole number ≥ 1, not {self.max_segments!r}")


@dataclass(frozen=True)
class SmsText:
    """The composed SMS: its text, its length as counted against the limit, how it is
    encoded (``gsm7`` or ``ucs2``) and how many billed segments it takes."""

    text: str
    length: int
    encoding: str
    segments: int


# -- composing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Flavour:
    """One way to encode: how text is converted, what ellipsis it uses, what it accepts."""

    encoding: str
    convert: Callable[[str], str]
    ellipsis: str
    representable: Callable[[str], bool]


def _always(_: str) -> bool:
    return True


def _identity(text: str) -> str:
    return text


_UCS2 = _Flavour("ucs2", _identity, ELLIPSIS_UCS2, _always)
_GSM7_AUTO = _Flavour("gsm7", normalize_typography, ELLIPSIS_GSM7, is_gsm7)


def _finish(text: str) -> str:
    """The text as sent: no trailing spaces on a line, none at either end."""
    if " \n" in text:
        text = "\n".join(line.rstrip() for line in text.split("\n"))
    return text.strip()


#: Stripped from the end of a cut value before the ellipsis ("word, …" → "word…").
_TRAILING_JUNK = " \n,;:-–—(/"


class _Composer:
    """Fills one template with one set of values in one flavour and trims it to fit."""

    def __init__(
        self,
        pieces: tuple[tuple[str, str | None], ...],
        values: Mapping[str, str],
        flavour: _Flavour,
        options: SmsOptions,
    ) -> None:
        self.flavour = flavour
        self.options = options
        self.literals = [flavour.convert(literal) for literal, _ in pieces]
        self.fields = [field for _, field in pieces]
        self.values = {name: flavour.convert(value) for name, value in values.items()}
        # No value longer than this can fit, whatever else the text holds.
        self.window = options.max_length

    def render(self, values: Mapping[str, str]) -> str:
        out = []
        for literal, field in zip(self.literals, self.fields, strict=True):
            out.append(literal)
            if field is not None:
                out.append(values[field])
        return _finish("".join(out))

    def acceptable(self, text: str) -> bool:
        options = self.options
        if not text or sms_length(text) > options.max_length:
            return False
        if not self.flavour.representable(text):
            return False
        return options.max_segments is None or (
            count_segments(text, self.flavour.encoding) <= options.max_segments
        )

    def shorten(self, value: str, cut: int) -> str:
        """``value`` cut at most at offset ``cut``, between clusters, at a word if one is
        near, with the ellipsis; '' if nothing readable is left."""
        cut = boundary_at_or_before(value, cut)
        prefix = value[:cut]
        space = max(prefix.rfind(" "), prefix.rfind("\n"))
        if space > 0 and cut - space <= MAX_WORD_BACKTRACK and is_boundary(value, space):
            prefix = prefix[:space]
        stripped = prefix.rstrip(_TRAILING_JUNK)
        if is_boundary(value, len(stripped)):
            prefix = stripped
        return prefix + self.flavour.ellipsis if prefix.strip() else ""

    def largest(self, limit: int, candidate: Callable[[int], str]) -> str | None:
        """The acceptable ``candidate(k)`` with the largest k in 1..limit.

        Binary search: a longer cut never costs less, so acceptability is monotone in k.
        """
        low, high, best = 1, limit, None
        while low <= high:
            middle = (low + high) // 2
            text = candidate(middle)
            if self.acceptable(text):
                best, low = text, middle + 1
            else:
                high = middle - 1
        return best

    def trim_field(self, values: dict[str, str], name: str) -> str | None:
        """The best text with only field ``name`` shortened, or None if none fits."""
        value = values[name]

        def candidate(cut: int) -> str:
            return self.render({**values, name: self.shorten(value, cut)})

        return self.largest(min(len(value), self.window), candidate)

    def compose(self) -> str:
        values = dict(self.values)
        text = self.render(values)
        if self.acceptable(text):
            return text
        for name in TRIM_ORDER:
            if not values.get(name):
                continue
            best = self.trim_field(values, name)
            if best is not None:
                return best
            values[name] = ""
            text = self.render(values)
            if self.acceptable(text):
                return text
        # The template's own text is too long: cut the message as a whole, with an
        # ellipsis if there is room for one, else without.
        text = self.render(self.values)
        limit = min(len(text), self.window)
        best = self.largest(limit, lambda cut: self.shorten(text, cut))
        if best is None:
            best = self.largest(limit, lambda cut: text[: boundary_at_or_before(text, cut)])
        if best is not None:
            return best
        fallback = self.flavour.convert(FALLBACK_TEXT)
        return fallback if self.acceptable(fallback) else TINY_FALLBACK_TEXT


def _clean_literal(text: str) -> str:
    """Template text gets the character cleanup of field values, but keeps its spacing."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", " ")
    text = _STRAY_ZWJ.sub("", _UNSAFE.sub("", text))
    return unicodedata.normalize("NFC", text)


def _prepare(raw: str, field: str, max_length: int) -> str:
    """``raw`` cleaned (see :func:`clean_field`), but only as much of it as can matter.

    A body may hold thousands of characters and only the first ``max_length`` can be
    sent: cleaning a prefix is enough as long as the cleaned prefix is still longer
    than the limit (cleaning may remove characters, so the prefix grows until it is).
    """
    needed = max_length + 2  # one character past the limit, and the one after it
    size = 4 * needed
    while True:
        value = clean_field(raw[:size], multiline=field in MULTILINE_FIELDS)
        if size >= len(raw) or len(value) >= needed:
            return value
        size *= 4


def fit(fields: Mapping[str, str], options: SmsOptions) -> SmsText:
    """Fill ``options.template`` with ``fields`` and fit the result to the limits.

    Missing fields are empty.  The result is never empty, never longer than
    ``options.max_length`` (nor :data:`SMS_MAX_CHARS`), never more than
    ``options.max_segments`` segments, and never cut inside a grapheme cluster.
    Raises ValueError only for a template that :func:`validate_template` rejects
    (which :class:`SmsOptions` already refuses).
    """
    standard = options.transliterate
    pieces = []
    values: dict[str, str] = {}
    for literal, field in _parse_template(options.template):
        literal = _clean_literal(literal)
        if standard != "off":
            literal = translit.transliterate(literal, standard)
        pieces.append((literal, field))
        if field is not None and field not in values:
            value = _prepare(str(fields.get(field) or ""), field, options.max_length)
            if standard != "off":
                value = translit.transliterate(value, standard)
            values[field] = value
    template = tuple(pieces)

    if options.encoding == "ucs2":
        return _result(_Composer(template, values, _UCS2, options).compose(), _UCS2)
    if options.encoding == "gsm7":
        if standard == "off":
            everything = "".join(literal for literal, _ in pieces) + "".join(values.values())
            standard = translit.guess_standard(everything)
        forced = _Flavour(
            "gsm7", functools.partial(to_gsm7, standard=standard), ELLIPSIS_GSM7, _always
        )
        return _result(_Composer(template, values, forced, options).compose(), forced)
    # auto: GSM-7 when the normalised text is GSM-7, before or after trimming.
    gsm = _Composer(template, values, _GSM7_AUTO, options)
    if is_gsm7(gsm.render(gsm.values)):
        return _result(gsm.compose(), _GSM7_AUTO)
    text = _Composer(template, values, _UCS2, options).compose()
    if is_gsm7(normalize_typography(text)):
        # Trimming removed every character GSM-7 lacks: cheaper, and maybe longer too.
        return _result(gsm.compose(), _GSM7_AUTO)
    return _result(text, _UCS2)


def _result(text: str, flavour: _Flavour) -> SmsText:
    return SmsText(text, sms_length(text), flavour.encoding, count_segments(text, flavour.encoding))
