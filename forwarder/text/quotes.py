"""What to cut from a mail body before it becomes an SMS: quoted replies, signatures, disclaimers.

The rules work on plain text, line by line, because that is what every client's reply
layout degrades to (HTML quote containers are dropped earlier, in :mod:`htmltext`).
They follow the clients' actual output: Gmail and Thunderbird "On … wrote:" (wrapped
over up to three lines), Outlook's "From: / Sent: / To: / Subject:" block and
"-----Original Message-----", Apple's "Begin forwarded message:", and the Russian and
Ukrainian forms of each (Yandex, Mail.ru, localised Outlook and Gmail).

Forwarded mail is the exception: its "quoted" part *is* the message, so forward
markers are never cut, and the header block right after one is kept.  Cleaning that
would leave nothing falls back to the uncleaned text.
"""

from __future__ import annotations

import re

#: A "--" line without the trailing space of RFC 3676 §4.3, or a mobile footer, is taken
#: for the start of a signature only this close to the end (or to a forwarded message).
MAX_SIGNATURE_LINES = 15

#: An "On … wrote:" attribution may be wrapped by the composing client over this many lines.
MAX_ATTRIBUTION_LINES = 3

#: An Outlook header block: "From:" followed within this many lines by "Sent:" and "To:".
OUTLOOK_BLOCK_LINES = 6

_I = re.IGNORECASE

#: "On Mon, 25 Nov 2024 at 14:03, Ann <ann@example.com> wrote:" and its translations,
#: also with the verb before the name ("Am 25.11.2024 um 14:03 schrieb Ann:").
_ATTRIBUTION = re.compile(
    r"(?:on|le|am|el|il|op|em|w\s+dniu|dne)\s.{4,300}?"
    r"(?:wrote|a\s+écrit|schrieb|escribió|ha\s+scritto|schreef|escreveu|napisał|napsal)"
    r"(?:\s.{1,100})?\s*:",
    _I,
)

#: Russian and Ukrainian attributions end with the verb: "…, Иван <ivan@x.ru> написал(а):",
#: "Петро пише:", "… написав(ла):".
_ATTRIBUTION_CYRILLIC = re.compile(
    r".{0,300}?\b(?:пишет|пише|писал\(а\)|писала?|написал\(а\)|написала?|написав\(ла\)"
    r"|написав|писав)\s*:",
    _I,
)

#: Localised Gmail, Yandex and Mail.ru write no verb at all: a date, a time and an
#: address, then a colon ("пн, 25 нояб. 2024 г. в 14:03, Иван <i@x.ru>:",
#: "25.11.2024, 14:03, "Иван" <i@ya.ru>:").
_ATTRIBUTION_DATED = re.compile(r".{0,200}?\d{1,2}:\d{2}.{0,200}<[^<>\s@]+@[^<>\s]+>\s*:", _I)

#: A line that ends a sentence does not begin an attribution (or "Sure." + "Ann wrote:"
#: would be read as one wrapped attribution).
_SENTENCE_END = re.compile(r"[.!?)]\s*$")

#: "-----Original Message-----" in the languages of our users' Outlooks.
_ORIGINAL_MESSAGE = re.compile(
    r"-{2,}\s*(?:original\s+message|исходное\s+сообщение|оригинальное\s+сообщение"
    r"|вихідне\s+повідомлення|оригінальне\s+повідомлення|початкове\s+повідомлення"
    r"|message\s+d'origine|ursprüngliche\s+nachricht|mensaje\s+original)\s*-{2,}",
    _I,
)

_OUTLOOK_FROM = re.compile(r"\*?(?:from|от|від|von|de)\s*:\*?\s*\S", _I)
_OUTLOOK_SENT = re.compile(
    r"\*?(?:sent|date|отправлено|дата|надіслано|відправлено|gesendet|envoyé)\s*:", _I
)
_OUTLOOK_TO = re.compile(r"\*?(?:to|subject|кому|тема|an|betreff|à|objet)\s*:", _I)
_RULE_LINE = re.compile(r"[_\-=─]{8,}")

#: Forward markers: never cut, they introduce the content.
_FORWARD_MARKER = re.compile(
    r"-*\s*(?:forwarded\s+message|пересылаемое\s+сообщение|пересланное\s+сообщение"
    r"|перенаправленное\s+сообщение|переслане\s+повідомлення|пересланий\s+лист"
    r"|message\s+transféré|weitergeleitete\s+nachricht|mensaje\s+reenviado)\s*-*"
    r"|begin\s+forwarded\s+message\s*:|начало\s+пересылаемого\s+сообщения\s*:"
    r"|початок\s+пересланого\s+повідомлення\s*:",
    _I,
)

#: Subject prefixes of a forward (RFC 5322 has none; these are the clients').
FORWARD_SUBJECT = re.compile(
    r"\s*(?:\[?(?:fwd?|fw|tr|wg|rv|пересл|переслано|перес|пер|пересилання)\s*:)", _I
)

#: Footers mobile clients append, in the languages of our users.
_MOBILE_FOOTER = re.compile(
    r"(?:sent\s+(?:from|with|via)\s+.{2,50}|get\s+outlook\s+for\s+\S{2,20}"
    r"|отправлено\s+(?:с|из|со)\s+.{2,50}|надіслано\s+(?:з|із|зі)\s+.{2,50}"
    r"|відправлено\s+(?:з|із|зі)\s+.{2,50}|von\s+meinem\s+.{2,30}\s+gesendet"
    r"|envoyé\s+de\s+mon\s+.{2,30})",
    _I,
)

#: Legal disclaimers, recognised by their stock phrases.
_DISCLAIMER = re.compile(
    r"confidentiality\s+notice|privileged\s+and\s+confidential|disclaimer\s*:"
    r"|this\s+(?:e-?mail|message|communication)\b.{0,120}?\b(?:is|are|may\s+be|contains?)\s+"
    r"(?:confidential|privileged|intended\s+(?:solely|only))"
    r"|if\s+you\s+(?:are\s+not|have\s+received\s+this).{0,80}?(?:intended\s+recipient|in\s+error)"
    r"|please\s+consider\s+the\s+environment\s+before\s+printing"
    r"|this\s+(?:e-?mail|message)\s+has\s+been\s+(?:scanned|checked)"
    r"|(?:данное|это|настоящее)\s+(?:электронное\s+)?(?:сообщение|письмо).{0,120}?конфиденциальн"
    r"|если\s+вы\s+(?:получили|не\s+являетесь).{0,120}?(?:по\s+ошибке|адресатом)"
    r"|(?:цей|це|даний|дане)\s+(?:електронний\s+)?(?:лист|повідомлення).{0,120}?конфіденційн"
    r"|якщо\s+ви\s+(?:отримали|не\s+є).{0,120}?(?:помилков|адресатом)",
    _I | re.DOTALL,
)

_QUOTED_LINE = re.compile(r"\s*>")

#: Every disclaimer pattern contains one of these: a cheap test before the expensive one.
_DISCLAIMER_WORDS = (
    "confidential",
    "intended",
    "disclaimer",
    "environment",
    "scanned",
    "checked",
    "конфиденц",
    "конфіденц",
    "адресат",
    "ошибк",
    "помилк",
)


def _might_be_disclaimer(text: str) -> bool:
    lowered = text.lower()
    return any(word in lowered for word in _DISCLAIMER_WORDS)


def is_forward_block(text: str) -> bool:
    """True if ``text`` starts with a forward marker (used to keep forwarded HTML quotes)."""
    first_lines = text.lstrip().split("\n", 3)[:3]
    return any(_FORWARD_MARKER.fullmatch(line.strip()) for line in first_lines)


def _is_attribution(lines: list[str], i: int) -> bool:
    """True if an attribution line ("On … wrote:") starts at line ``i``.

    Clients wrap long attributions, so up to :data:`MAX_ATTRIBUTION_LINES` non-blank
    lines are joined, as long as none of the leading ones ends a sentence.
    """
    joined = ""
    for line in lines[i : i + MAX_ATTRIBUTION_LINES]:
        line = line.strip()
        if not line or len(joined) + len(line) > 400:
            break
        joined = f"{joined} {line}" if joined else line
        if joined.endswith(":") and (  # every attribution ends with a colon: a cheap test first
            _ATTRIBUTION.fullmatch(joined)
            or _ATTRIBUTION_CYRILLIC.fullmatch(joined)
            or _ATTRIBUTION_DATED.fullmatch(joined)
        ):
            return True
        if _SENTENCE_END.search(line):
            break
    return False


def _is_outlook_block(lines: list[str], i: int) -> bool:
    if not _OUTLOOK_FROM.match(lines[i].strip()):
        return False
    window = [line.strip() for line in lines[i + 1 : i + 1 + OUTLOOK_BLOCK_LINES]]
    return any(_OUTLOOK_SENT.match(line) for line in window) and any(
        _OUTLOOK_TO.match(line) for line in window
    )


def _reply_start(lines: list[str], *, forwarded: bool) -> int | None:
    """Index of the first line of quoted reply history, or None."""
    forward_at = -10
    skip_block = forwarded  # an Outlook forward's header block looks like a reply's
    for i, raw in enumerate(lines):
        line = raw.strip()
        if not line:
            continue
        if _FORWARD_MARKER.fullmatch(line):
            forward_at = i
            continue
        header = _ORIGINAL_MESSAGE.fullmatch(line) or _is_outlook_block(lines, i)
        if header:
            if i - forward_at <= 2 or skip_block:
                # The header of a forwarded message: keep it, and treat it as the marker
                # so that a "From:" block right under "-----Original Message-----" stays too.
                skip_block = False
                forward_at = i
                continue
            # Outlook puts a rule line above the block.
            if i > 0 and _RULE_LINE.fullmatch(lines[i - 1].strip()):
                return i - 1
            return i
        if _is_attribution(lines, i):
            return i
    return None


def _is_signature_start(lines: list[str], i: int) -> bool:
    """True if a signature starts at line ``i``.

    "-- " is the RFC 3676 §4.3 separator and always one.  A bare "--" (clients strip
    the space) or a mobile footer ("Sent from my iPhone") counts only near the end of
    the text or of the note above a forwarded message: in the middle of a text the
    same words may be content.
    """
    line = lines[i].rstrip("\r")
    if line == "-- ":
        return True
    if line.strip() != "--" and not _MOBILE_FOOTER.fullmatch(line.strip()):
        return False
    rest = [x for x in lines[i + 1 : _next_forward(lines, i + 1)] if x.strip()]
    return len(rest) <= MAX_SIGNATURE_LINES


def _next_forward(lines: list[str], start: int) -> int:
    for j in range(start, len(lines)):
        if _FORWARD_MARKER.fullmatch(lines[j].strip()):
            return j
    return len(lines)


def _drop_signatures(lines: list[str]) -> list[str]:
    """Drop each signature block: from its separator to the next forwarded message or the end."""
    out: list[str] = []
    i = 0
    while i < len(lines):
        if _is_signature_start(lines, i):
            i = _next_forward(lines, i + 1)
            continue
        out.append(lines[i])
        i += 1
    return out


def _drop_disclaimers(lines: list[str]) -> list[str]:
    """Drop disclaimer paragraphs (never the first) up to the next forwarded message or the end."""
    out: list[str] = []
    paragraph: list[str] = []
    i = 0
    seen_text = False

    def flush() -> None:
        out.extend(paragraph)
        paragraph.clear()

    while i < len(lines):
        line = lines[i]
        if not line.strip():
            flush()
            out.append(line)
            i += 1
            continue
        if not paragraph and seen_text:
            end = i
            while end < len(lines) and lines[end].strip():
                end += 1
            text = " ".join(lines[i:end])
            if _might_be_disclaimer(text) and _DISCLAIMER.search(text):
                i = _next_forward(lines, end)
                continue
        paragraph.append(line)
        seen_text = True
        i += 1
    flush()
    return out


def clean(text: str, *, forwarded: bool = False) -> str:
    """``text`` without quoted history, signatures and disclaimers.

    ``forwarded`` says the mail is a forward (see :data:`FORWARD_SUBJECT`): then the
    first header block after the note introduces the forwarded message and is kept.
    Lines quoted with ``>`` are dropped wherever they are, so an interleaved reply keeps
    its answers.  If nothing would be left, the text comes back unchanged.
    """
    lines = text.split("\n")
    cut = _reply_start(lines, forwarded=forwarded)
    if cut is not None:
        lines = lines[:cut]
    lines = [line for line in lines if not _QUOTED_LINE.match(line)]
    lines = _drop_disclaimers(lines)  # first: a disclaimer can make a signature look long
    lines = _drop_signatures(lines)
    while lines and (not lines[-1].strip() or _RULE_LINE.fullmatch(lines[-1].strip())):
        lines.pop()  # the rule line that stood above a cut signature or quote
    cleaned = "\n".join(lines).strip()
    return cleaned if cleaned else text.strip()
