"""Gateway replies: recognise them, read their error code, tie each to the request it answers.

The AlphaSMS gateway "may answer by e-mail" after a send with one of five codes
(seed doc §4 / §Error replies: ``BANNED``, ``FORBIDDEN``, ``NO LIST``, ``MSG:XXX``,
``AUTH``), but the document never shows what such a reply looks like: not its From
address, not its Subject, not whether it quotes the request. Everything here is
therefore *tolerant*: codes are searched in the Subject and in the readable text
of every charset and transfer encoding, plain or HTML, and a reply is tied to its
request by every clue a mail can carry, strongest first.

This module is the pure core of the reply tracker (issue 7): values in, values
out. Storage, logging and the decision to mark a request answered belong to the
caller.

Secrets. Modes a, c, d and e put a password or API key in the request's Subject
(``alpha;login;password``, ``alpha;key``, seed doc §The five ways), and a reply may
quote that Subject. ``GatewayReply.detail``, the only reply text this module hands
on for logs, the store and the status page, goes through :func:`mask_subject` line by
line, so nothing after a ``;`` on any line reaches it. (:class:`ReplyText` is the
unmasked text the matching works on; it is not for display.)
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import Message
from email.parser import HeaderParser

from forwarder.gateway.account import MASK
from forwarder.mail import Mail
from forwarder.text import htmltext, mime

# -- constants -------------------------------------------------------------------------------

#: Where gateway replies come from. The seed doc does not say; the provider's own domain
#: and its subdomains (the gateway itself is ``mail.alphasms.com.ua``) are the safe guess.

#: The longest ``GatewayReply.detail``: enough for a status page line and a log line.
DETAIL_MAX_CHARS = 300

#: Lines of the reply's own text shown before the line that holds the code, for context
#: ("Your SMS to 380… could not be sent:" usually precedes "AUTH"); blank lines not counted.
DETAIL_CONTEXT_LINES = 1

#: A request sent up to this long *after* the reply's Date may still be the one it answers:
#: the gateway's clock and ours are not synchronised.
CLOCK_SKEW = timedelta(minutes=5)

#: A reply that quotes a request's SMS text is matched on this many leading characters:
#: a gateway may cut a long text when it quotes it.
QUOTED_TEXT_PREFIX_CHARS = 40

#: SMS texts shorter than this are not looked for in a reply: "Test" or "OK" appears in
#: too many gateway messages by chance. Time order still ties such replies.
QUOTED_TEXT_MIN_CHARS = 12

#: How many words before a success word are checked for a negation ("could not be sent").
NEGATION_WINDOW_WORDS = 3
NEGATION_LOOKBACK_CHARS = 80  # more than enough text to hold those words


# -- codes -----------------------------------------------------------------------------------


class ReplyCode(enum.Enum):
    """What a gateway reply says; ``value`` is the code as the gateway writes it.

    The first five are the seed doc's list (§4, "Возможны следующие варианты ошибок");
    ``OK`` and ``UNKNOWN`` are ours, for replies that report success and for replies
    we cannot read, which are recorded rather than ignored.
    """

    BANNED = "BANNED"
    FORBIDDEN = "FORBIDDEN"
    NO_LIST = "NO LIST"
    MSG = "MSG"
    AUTH = "AUTH"
    OK = "OK"
    UNKNOWN = "UNKNOWN"

    @property
    def meaning(self) -> str:
        """What the code means, in plain words (from the seed doc where it says)."""
        return _ADVICE[self][0]

    @property
    def action(self) -> str:
        """What the operator should do about it."""
        return _ADVICE[self][1]


_ADVICE: dict[ReplyCode, tuple[str, str]] = {
    # "BANNED – номер заблокирован"
    ReplyCode.BANNED: (
        "the gateway says the recipient's number is blocked",
        "check the number in gateway.recipients (or the saved list); "
        "ask AlphaSMS support why it is blocked if it should not be",
    ),
    # "FORBIDDEN - не активирован сервис email2sms" (§2: «Мой офис» - «Настройки» - «API»)
    ReplyCode.FORBIDDEN: (
        "Email2SMS is not activated for the account",
        "tick 'Activate Email2SMS' in My office → Settings → API",
    ),
    # "NO LIST - список не найден" (§2c: the list ID is under «Настройки» - «Получатели»)
    ReplyCode.NO_LIST: (
        "the gateway did not find the recipient list",
        "check gateway.list_id against the list's ID in My office → Settings → Recipients",
    ),
    # "MSG:XXX - код ошибки отправки sms": the document lists no values for XXX.
    ReplyCode.MSG: (
        "the gateway failed to send the SMS and gave an error code",
        "check the account balance and the alpha-name in My office; "
        "if it repeats, ask AlphaSMS support what the code means",
    ),
    # "AUTH - ошибка авторизации"
    ReplyCode.AUTH: (
        "the gateway rejected the login/password or key",
        "check gateway.login and gateway.password / gateway.api_key",
    ),
    ReplyCode.OK: (
        "the gateway reports the SMS as accepted",
        "nothing to do",
    ),
    ReplyCode.UNKNOWN: (
        "the gateway replied without a code this tracker knows",
        "read the reply; if it reports a failure, check the account in My office "
        "and tell the maintainers so the tracker learns the wording",
    ),
}


def explain(code: ReplyCode, detail: str = "") -> str:
    """One sentence for a log line or a status page: meaning, action, and the reply's words.

    ``detail`` is expected to be a ``GatewayReply.detail``, which is already masked.
    """
    text = f"{code.meaning}; {code.action}"
    return f"{text} (the reply said: {detail})" if detail else text


@dataclass(frozen=True)
class GatewayReply:
    """What one gateway reply says."""

    code: ReplyCode
    msg_code: str | None  # the XXX of MSG:XXX, as text: the doc does not say it is a number
    detail: str  # ≤ DETAIL_MAX_CHARS, masked: see mask_subject

    def label(self) -> str:
        """The code as the gateway writes it: "AUTH", "MSG:123", "NO LIST", "OK", "UNKNOWN"."""
        if self.code is ReplyCode.MSG and self.msg_code:
            return f"MSG:{self.msg_code}"
        return self.code.value

    def describe(self) -> str:
        """The label and its explanation: "AUTH: the gateway rejected … (the reply said: …)"."""
        return f"{self.label()}: {explain(self.code, self.detail)}"


# -- secrets ---------------------------------------------------------------------------------


def mask_subject(subject: str) -> str:
    """Keep the alpha-name, replace every later ``;``-field with ``***``.

    A request Subject is ``<alpha-name>[;<login>;<password>][;<key>][;<list id>]``
    (seed doc §The five ways, modes a–e). Which later field is secret depends on the
    mode, which a reply does not tell, so all of them are masked; empty fields stay
    empty because they hide nothing::

        MyAlpha                        → MyAlpha            (mode b)
        MyAlpha;380501234567;pw        → MyAlpha;***;***    (mode a)
        MyAlpha;380501234567;pw;12345  → MyAlpha;***;***;***  (mode c)
        MyAlpha;key                    → MyAlpha;***        (mode d)
        MyAlpha;key;12345              → MyAlpha;***;***    (mode e)

    Text before the alpha-name ("Re: ", "Subject: ") is kept with it, which makes this
    safe to apply to any line of any text.
    """
    head, *fields = subject.split(";")
    return ";".join([head, *(MASK if field else "" for field in fields)])


def _mask_lines(text: str) -> str:
    return "\n".join(mask_subject(line) for line in text.split("\n"))


# -- reading the text ------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplyText:
    """A reply's readable text, split into the gateway's own words and what it quotes.

    Codes are only looked for in ``own``: a quoted request carries our SMS text, and an
    SMS forwarded from a mail that says "AUTH failed" must not read as an AUTH reply.
    ``quoted`` (quote markers removed, embedded messages' headers included) is where
    the request's Message-ID and text are looked for.

    Both are unmasked and may hold a quoted password: use them for matching, never show
    them (``GatewayReply.detail`` is the masked text for people).
    """

    own: str
    quoted: str


def reply_text(message: Message) -> ReplyText:
    """The text of every readable part: charset and transfer encoding undone, HTML as text.

    This does not use ``Mail.body`` (``forwarder.text.transform.body_text``) on purpose: that
    text is made into an SMS, where quotes and embedded messages are noise, while here
    they are the clues that tie a reply to its request. It shares the decoding
    (``forwarder.text.mime.part_text``) and the HTML reader (``forwarder.text.htmltext``), keeping
    the quotes that reader would drop.
    """
    own: list[str] = []
    quoted: list[str] = []
    _collect(message, own, quoted, quoting=False)
    return ReplyText("\n".join(own).strip(), "\n".join(quoted).strip())


def _collect(part: Message, own: list[str], quoted: list[str], *, quoting: bool) -> None:
    maintype = part.get_content_maintype()
    ctype = part.get_content_type()
    if part.is_multipart():
        children = [c for c in part.get_payload() if isinstance(c, Message)]
        if maintype == "message":
            # message/rfc822, message/delivery-status, …: a copy of (part of) the request.
            # compat32 keeps their payload as a list of messages, header blocks included.
            for child in children:
                quoted.append(_render_headers(child.items()))
                _collect(child, own, quoted, quoting=True)
            return
        if ctype == "multipart/alternative":
            children = _preferred_alternative(children)
        for child in children:
            _collect(child, own, quoted, quoting=quoting)
        return
    if ctype == "text/rfc822-headers":  # RFC 6522 reports: the request's headers only
        headers = HeaderParser().parsestr(mime.part_text(part))
        quoted.append(_render_headers(headers.items()))
        return
    if maintype not in ("text", "message"):
        return
    text = mime.part_text(part)
    if ctype == "text/html":
        text = _html_to_text(text, quoted)
    if quoting or maintype == "message":
        quoted.append(_unquote_all(text))
        return
    mine, theirs = split_quotes(text)
    own.append(mine)
    quoted.append(theirs)


def _html_to_text(html: str, quoted: list[str]) -> str:
    """The visible text of ``html`` outside quotes; each quoted region is added to ``quoted``.

    Quoted regions are the ones ``forwarder.text.htmltext`` drops as history (``gmail_quote``,
    Outlook's reply markers, …) plus every ``<blockquote>``: in a reply, a bare one holds
    the request it answers. No limit: a quoted request may follow a long text, and a part
    is already capped at ``mime.MAX_PART_BYTES``.
    """

    def collect(region: str) -> bool:
        quoted.append(_unquote_all(region))
        return False  # keep it out of the own text

    return htmltext.html_to_text(
        html, keep_quote=collect, limit=mime.MAX_PART_BYTES, blockquote_is_quote=True
    )


def _preferred_alternative(children: list[Message]) -> list[Message]:
    """The plain-text alternative when it has text, else the last (richest, RFC 2046 §5.1.4)."""
    for child in children:
        if child.get_content_type() == "text/plain" and mime.part_text(child).strip():
            return [child]
    return children[-1:]


def _render_headers(items: list[tuple[str, object]]) -> str:
    return "\n".join(f"{name}: {mime.decode_header(value)}" for name, value in items)


#: Lines after which a mail client puts the quoted original (top-posting style).
_QUOTE_SEPARATOR = re.compile(
    r"""^\s*(?:
        -{2,}\s*(?:original\s+message|forwarded\s+message|исходное\s+сообщение
                  |пересылаемое\s+сообщение|оригінальне\s+повідомлення
                  |переслане\s+повідомлення)\s*-{2,}    # Outlook, Gmail, Yandex, Mail.ru
      | begin\s+forwarded\s+message:
      | on\s.+\swrote:                                 # "On Mon, 6 May, X wrote:"
      | .+\s(?:писал|написал|пишет|пише|написав)(?:\(?а\)?|\(?ла\)?)?:  # "X написал(а):"
    )\s*$""",
    re.IGNORECASE | re.VERBOSE,
)
_QUOTE_MARKS = re.compile(r"^\s*(?:>\s?)+")


def split_quotes(text: str) -> tuple[str, str]:
    """(own, quoted) lines of a plain text; quote marks are removed from the quoted lines.

    Quoted means a line starting with ``>``, or anything after a separator line such as
    "-----Original Message-----" or "On … wrote:".
    """
    own: list[str] = []
    quoted: list[str] = []
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if _QUOTE_SEPARATOR.match(line):
            quoted.extend(_QUOTE_MARKS.sub("", rest) for rest in lines[index:])
            break
        if _QUOTE_MARKS.match(line):
            quoted.append(_QUOTE_MARKS.sub("", line))
        else:
            own.append(line)
    return "\n".join(own), "\n".join(quoted)


def _unquote_all(text: str) -> str:
    return "\n".join(_QUOTE_MARKS.sub("", line) for line in text.splitlines())


# -- the code --------------------------------------------------------------------------------

# A code stands as a token: not glued to a letter or digit on either side, so "AUTH" is found
# in "AUTH", "ERR_AUTH" and "(AUTH)" but not in "Authorization", "author" or "OAuth".
_TOKEN_START = r"(?<![^\W_])"
_TOKEN_END = r"(?![^\W_])"
_CODE_SOURCE = (
    _TOKEN_START
    + r"""(?:
        (?P<BANNED>BANNED)
      | (?P<FORBIDDEN>FORBIDDEN)
      | (?P<NO_LIST>NO[\s_-]*LIST)                     # NO LIST, NO_LIST, NOLIST, NO  LIST
      | (?P<MSG>MSG\s*:\s*(?P<msg_code>-?\w(?:[\w-]*\w)?))  # MSG:123, MSG: 123, msg:abc
      | (?P<AUTH>AUTH)
    )"""
    + _TOKEN_END
)
#: The seed doc writes every code in capitals, so a capitalised code is the strongest sign …
_CODE_AS_WRITTEN = re.compile(_CODE_SOURCE, re.VERBOSE)
#: … and a code in any other case ("Banned", "no list", "msg:7") the next strongest.
_CODE_ANY_CASE = re.compile(_CODE_SOURCE, re.VERBOSE | re.IGNORECASE)
_CODE_GROUPS = ("BANNED", "FORBIDDEN", "NO_LIST", "MSG", "AUTH")

#: Words of a reply that reports success, in English, Russian and Ukrainian.
SUCCESS_WORDS = (
    "ok",
    "okay",
    "accepted",
    "success",
    "successful",
    "successfully",
    "sent",
    "delivered",
    "queued",
    "успешно",
    "отправлено",
    "доставлено",
    "принято",
    "успішно",
    "відправлено",
    "надіслано",
    "прийнято",
)
#: Word beginnings that veto success: "error(s)", "fail(ed|ure)", "ошибка", "помилка", …
FAILURE_STEMS = (
    "error",
    "fail",
    "reject",
    "denied",
    "invalid",
    "undeliver",
    "unable",
    "ошибк",
    "неудач",
    "отказ",
    "отклон",
    "помилк",
    "невдал",
    "відмов",
)
_SUCCESS = re.compile(rf"{_TOKEN_START}(?:{'|'.join(SUCCESS_WORDS)}){_TOKEN_END}", re.IGNORECASE)
_FAILURE = re.compile(rf"{_TOKEN_START}(?:{'|'.join(FAILURE_STEMS)})", re.IGNORECASE)
_NEGATIONS = frozenset({"not", "no", "never", "cannot", "не", "нет", "ні", "ни"})
_WORD = re.compile(r"[\w']+")


def parse_reply(mail: Mail) -> GatewayReply:
    """Read the code of a gateway reply; never raises, never drops a reply.

    Priority when several codes appear, strongest evidence first:

    1. a code in capitals, as the seed doc writes it, beats one in any other case
       ("Your number is not banned. Error: AUTH" is AUTH);
    2. within the same case rule, the Subject beats the body: it is the reply's headline;
    3. within the body, the first code wins: what follows tends to be explanation.

    Only the reply's own words are searched, never what it quotes of the request (see
    :class:`ReplyText`), and the Subject first only up to its first ``;``: a reply
    Subject is often "Re: " + the request's Subject, whose later fields are our login
    and password. Only when nothing else names a code is the rest of the Subject read,
    for a capitalised code a gateway may have appended ("MyAlpha;380…;pw: AUTH").

    With no code, a reply that reports success (OK, accepted, delivered, успешно,
    отправлено, …) with no failure word and no negation ("not delivered") is ``OK``;
    anything else is ``UNKNOWN``, kept with its text for a person to read.
    """
    full_subject = mail.subject
    subject = mask_subject(full_subject)
    body = reply_text(mail.message).own

    for pattern in (_CODE_AS_WRITTEN, _CODE_ANY_CASE):
        if match := pattern.search(subject):
            return _reply_with_code(match, _detail(subject, body, None))
        if match := pattern.search(body):
            code_line = body.count("\n", 0, match.start())
            return _reply_with_code(match, _detail(subject, body, code_line))
    if match := _CODE_AS_WRITTEN.search(full_subject):  # the match itself is never shown
        return _reply_with_code(match, _detail(subject, body, None))

    code = ReplyCode.OK if _reports_success(f"{subject}\n{body}") else ReplyCode.UNKNOWN
    return GatewayReply(code, None, _detail(subject, body, None))


def _reply_with_code(match: re.Match[str], detail: str) -> GatewayReply:
    name = next(group for group in _CODE_GROUPS if match.group(group))
    code = ReplyCode[name]
    return GatewayReply(code, match.group("msg_code") if code is ReplyCode.MSG else None, detail)


def _reports_success(text: str) -> bool:
    if _FAILURE.search(text):
        return False
    found = False
    for match in _SUCCESS.finditer(text):
        preceding = text[max(0, match.start() - NEGATION_LOOKBACK_CHARS) : match.start()]
        before = _WORD.findall(preceding.lower())[-NEGATION_WINDOW_WORDS:]
        if any(word in _NEGATIONS or word.endswith("n't") for word in before):
            return False  # "could not be sent": a failure said with a success word
        found = True
    return found


def _detail(subject: str, body: str, code_line: int | None) -> str:
    """Masked Subject and body, one line, ≤ DETAIL_MAX_CHARS, starting near the code."""
    lines = body.split("\n")
    start = 0
    if code_line is not None:
        # Only lines with text count: paragraphs are set apart by blank lines (in HTML, always).
        starts = [*(i for i in range(code_line) if lines[i].strip()), code_line]
        start = starts[-1 - DETAIL_CONTEXT_LINES] if len(starts) > DETAIL_CONTEXT_LINES + 1 else 0
    excerpt = " ".join(_mask_lines("\n".join(lines[start:])).split())
    if start and excerpt:
        excerpt = f"… {excerpt}"
    detail = " — ".join(part for part in (" ".join(subject.split()), excerpt) if part)
    detail = "".join(ch for ch in detail if ch.isprintable())
    if len(detail) > DETAIL_MAX_CHARS:
        detail = detail[: DETAIL_MAX_CHARS - 1].rstrip() + "…"
    return detail


# -- tying a reply to its request ------------------------------------------------------------


@dataclass(frozen=True)
class SentRequest:
    """What the store knows about an SMS request it sent."""

    message_id: str  # the Message-ID forwarder put on the request, with angle brackets
    sent_at: datetime  # aware
    subject: str  # masked (mask_subject or gateway.Request.masked_subject)
    text: str  # the SMS text
    answered: bool  # already tied to an earlier reply

    def __post_init__(self) -> None:
        if self.sent_at.tzinfo is None:
            raise ValueError(f"SentRequest {self.message_id}: sent_at must be timezone-aware")


class TieMethod(enum.StrEnum):
    """How a reply was tied to a request, strongest clue first."""

    IN_REPLY_TO = "in-reply-to"
    REFERENCES = "references"
    QUOTED_MESSAGE_ID = "quoted-message-id"
    QUOTED_TEXT = "quoted-text"
    TIME_ORDER = "time-order"
    NONE = "none"


@dataclass(frozen=True)
class Tie:
    """The request a reply answers (``None`` when nothing ties it) and the clue used."""

    message_id: str | None
    how: str  # a TieMethod value


_ANGLE_ID = re.compile(r"<([^<>]+)>")
# Characters a Message-ID is made of (RFC 5322 §3.6.4: dot-atom text, '@' and '.').
_ID_CHAR = r"[\w!#$%&'*+/=?^`{|}~@-]"
_ID_CHAR_OR_DOT = r"[\w!#$%&'*+/=?^`{|}~@.-]"


def tie_reply(mail: Mail, requests: Sequence[SentRequest]) -> Tie:
    """The request ``mail`` answers, by the strongest clue it carries.

    1. ``In-Reply-To`` names a request's Message-ID;
    2. ``References`` does (newest reference first; RFC 5322 §3.6.4 lists them oldest first);
    3. a request's Message-ID appears in the text, with or without angle brackets
       (a quoted header block, an attached copy of the request, a delivery report);
    4. a request's SMS text, or its first QUOTED_TEXT_PREFIX_CHARS characters, appears in
       the text: a whole-text match beats a prefix match, then an unanswered request
       beats an answered one, then the most recent wins;
    5. time order: the latest unanswered request sent before the reply.

    Clues 1–3 name one request, so they hold even for an answered request and whatever
    the clocks say. Clues 4–5 are guesses, so they skip requests sent after the reply's
    Date (plus CLOCK_SKEW): a reply cannot answer a later request. Without a usable Date
    the IMAP arrival time (``internal_date``) bounds the reply instead; without either,
    every request is a candidate.
    """
    by_id: dict[str, SentRequest] = {}
    for request in requests:
        by_id.setdefault(_normalize_id(request.message_id), request)

    for method, header, newest_first in (
        (TieMethod.IN_REPLY_TO, "In-Reply-To", False),
        (TieMethod.REFERENCES, "References", True),
    ):
        ids = _message_ids(mail.headers(header))
        for mid in reversed(ids) if newest_first else ids:
            if found := by_id.get(mid):
                return Tie(found.message_id, method.value)

    text = reply_text(mail.message)
    haystack = "\n".join((mail.subject, text.own, text.quoted))
    if named := [r for r in requests if _mentions_id(haystack, r.message_id)]:
        latest = max(named, key=lambda r: r.sent_at)
        return Tie(latest.message_id, TieMethod.QUOTED_MESSAGE_ID.value)

    replied_at = _reply_time(mail)
    candidates = [r for r in requests if replied_at is None or r.sent_at <= replied_at + CLOCK_SKEW]

    quoting = _normalize_text(haystack)
    scored = []
    for request in candidates:
        needle = _normalize_text(request.text)
        if len(needle) >= QUOTED_TEXT_MIN_CHARS and needle[:QUOTED_TEXT_PREFIX_CHARS] in quoting:
            scored.append(((needle in quoting, not request.answered, request.sent_at), request))
    if scored:
        best = max(scored, key=lambda pair: pair[0])[1]
        return Tie(best.message_id, TieMethod.QUOTED_TEXT.value)

    if unanswered := [r for r in candidates if not r.answered]:
        latest = max(unanswered, key=lambda r: r.sent_at)
        return Tie(latest.message_id, TieMethod.TIME_ORDER.value)
    return Tie(None, TieMethod.NONE.value)


def _normalize_id(message_id: str) -> str:
    """Compare Message-IDs without brackets, whitespace or case: gateways are not careful."""
    return "".join(message_id.split()).strip("<>").lower()


def _message_ids(values: list[str]) -> list[str]:
    """Message-IDs in header values, in order; bare ``local@domain`` tokens when unbracketed."""
    joined = " ".join(values)
    found = _ANGLE_ID.findall(joined) or [t for t in re.split(r"[\s,]+", joined) if "@" in t]
    return [_normalize_id(mid) for mid in found]


def _mentions_id(text: str, message_id: str) -> bool:
    core = _normalize_id(message_id)
    if not core:
        return False
    # Whole IDs only: "5.abc@host" must not be found inside "15.abc@host". A '.' may follow
    # (the end of a sentence) but not '.' and more of an ID ("abc@host.example").
    pattern = rf"(?<!{_ID_CHAR_OR_DOT}){re.escape(core)}(?!{_ID_CHAR}|\.\w)"
    return re.search(pattern, text, re.IGNORECASE) is not None


def _normalize_text(text: str) -> str:
    """For finding quoted SMS text: a quote may rewrap lines and change case."""
    return " ".join(text.casefold().split())


def _reply_time(mail: Mail) -> datetime | None:
    """When the reply was written: its Date, else when our IMAP server received it.

    A naive value is read as UTC: that is what RFC 5322 §3.3 makes of a "-0000" Date.
    """
    when = mail.date or mail.internal_date
    if when is not None and when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when
