"""From a parsed mail to its SMS: pick the readable body, clean it, fill the template."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import datetime
from email.message import Message

from forwarder.mail import Mail
from forwarder.text import htmltext, mime, quotes, smstext
from forwarder.text.smstext import SmsOptions, SmsText

logger = logging.getLogger(__name__)

#: The body is read up to this many characters (HTML: of visible text): an SMS shows at
#: most 500, the daemon fetches only the first few KiB of a part anyway, and quote and
#: signature detection need only what the SMS could show plus some context.
MAX_BODY_CHARS = 4000

#: HTML is converted until this much visible text is collected.  Its quotes and
#: signatures are found in the markup, so less context is needed than for plain text,
#: and the tokenizer is the slowest step of the transformer.
HTML_TEXT_LIMIT = 2000

#: A forwarded message (message/rfc822) is opened this deep for a body, no deeper.
MAX_NESTING = 3

#: Shown for a mail without a subject; the sender's name falls back to the address.
NO_SUBJECT = "(no subject)"
NO_SENDER = "(unknown sender)"

#: ``{date}``: day.month hour:minute in the reader's time zone; the year only if not this year.
DATE_FORMAT = "%d.%m %H:%M"
DATE_FORMAT_OTHER_YEAR = "%d.%m.%Y %H:%M"

#: Text subtypes that are a body (others, like text/csv or text/x-ruby, are documents).
BODY_SUBTYPES = ("plain", "html", "enriched", "richtext")

_LOOKS_LIKE_HTML = re.compile(
    r"\s*(?:<!doctype\s+html|<html|<head|<body|<div|<table|<p[\s>])", re.I
)
#: "Click here <https://…>": plain-text renderings of HTML links.  The link text says what
#: matters; the address is unreadable on a phone and costs characters.
_LINK_TARGET = re.compile(r"[ \t]*<(?:https?|mailto|ftp):[^<>\s]*(?:>[ \t]*|\Z)")
_ENRICHED_PARAM = re.compile(r"<param>.*?</param>", re.I | re.S)
_ENRICHED_TAG = re.compile(r"<[^<>]{1,60}>")


# ---------------------------------------------------------------------------
# Choosing the parts that make the body


def _is_attachment(part: Message) -> bool:
    """True for a part meant to be saved rather than read (RFC 2183 Content-Disposition)."""
    disposition = str(part.get("Content-Disposition", "")).split(";", 1)[0].strip().lower()
    if disposition == "attachment":
        return True
    try:
        named = part.get_filename() is not None
    except Exception:  # a malformed RFC 2231 filename
        named = True
    return named and disposition != "inline"


def _children(part: Message) -> list[Message]:
    if not part.is_multipart():  # get_payload() of a leaf decodes it, and may raise
        return []
    return [child for child in part.get_payload() if isinstance(child, Message)]


def _related_root(part: Message, children: list[Message]) -> Message:
    """RFC 2387 §3.2: the root of multipart/related is named by ``start``, else the first part."""
    start = part.get_param("start")
    if isinstance(start, str):
        for child in children:
            if str(child.get("Content-ID", "")).strip() == start.strip():
                return child
    return children[0]


def body_parts(part: Message) -> list[Message]:
    """The leaf parts whose text is the body of ``part``, in reading order.

    multipart/alternative (RFC 2046 §5.1.4): text/plain preferred (unless it is empty),
    else HTML, else the richest other alternative.  related: its root.  signed, report:
    the first part (the content, the human-readable explanation).  mixed and the rest:
    every inline text part, in order (mobile clients split a body around inline
    pictures), skipping attachments and attached messages.
    """
    children = _children(part)
    maintype, _, subtype = part.get_content_type().partition("/")
    if part.is_multipart():
        if not children:
            return []
        if subtype == "alternative":
            for wanted in ("text/plain", "text/html"):
                for child in children:
                    if child.get_content_type() != wanted or _is_attachment(child):
                        continue
                    # Some senders pair their HTML with an empty text/plain part.
                    if wanted == "text/plain" and not mime.part_text(child).strip():
                        continue
                    return [child]
            for child in reversed(children):
                found = body_parts(child)
                if found:
                    return found
            return []
        if subtype == "related":
            return body_parts(_related_root(part, children))
        if subtype in ("signed", "report"):
            return body_parts(children[0])
        found = []
        for child in children:
            if not child.get_content_type().startswith("message/") and not _is_attachment(child):
                found.extend(body_parts(child))
        return found
    if maintype == "text" and subtype in BODY_SUBTYPES:
        return [] if _is_attachment(part) else [part]
    return []


def _attached_messages(message: Message) -> list[Message]:
    """Messages attached as message/rfc822 (forwarded "as attachment")."""
    found = []
    for part in message.walk():
        if part is not message and part.get_content_type() == "message/rfc822":
            found.extend(_children(part))
    return found


# ---------------------------------------------------------------------------
# Turning one part into text


def unflow(text: str, *, delsp: bool) -> str:
    """Undo RFC 3676 format=flowed: join soft-broken lines, remove space-stuffing.

    A line ending in a space continues on the next line of the same quote depth
    (§4.2); with DelSp=yes that space was added by the sender and is dropped (§4.3).
    The signature separator "-- " is never a soft break (§4.3).
    """
    out: list[str] = []
    paragraph: str | None = None
    paragraph_depth = 0
    for line in text.split("\n"):
        depth = len(line) - len(line.lstrip(">"))
        content = line[depth:]
        if content.startswith(" "):
            content = content[1:]  # space-stuffing (§4.4)
        if paragraph is not None and depth != paragraph_depth:
            out.append(paragraph)  # a soft break never joins different quote depths
            paragraph = None
        if paragraph is None:
            paragraph = (">" * depth + " " if depth else "") + content
            paragraph_depth = depth
        else:
            paragraph += content
        if content.endswith(" ") and content != "-- ":
            if delsp:
                paragraph = paragraph[:-1]
            continue
        out.append(paragraph)
        paragraph = None
    if paragraph is not None:
        out.append(paragraph)
    return "\n".join(out)


def _enriched_to_text(text: str) -> str:
    """RFC 1896 text/enriched without its formatting commands."""
    text = _ENRICHED_PARAM.sub("", text.replace("<<", "\x00"))  # "<<" is a literal "<"
    return _ENRICHED_TAG.sub("", text).replace("\x00", "<")


def part_to_text(part: Message, keep_quote: Callable[[str], bool]) -> str:
    """The plain text of one body part: decoded, HTML converted, line ends normalised."""
    text = mime.part_text(part).replace("\r\n", "\n").replace("\r", "\n")
    subtype = part.get_content_subtype()
    if subtype == "html" or (subtype == "plain" and _LOOKS_LIKE_HTML.match(text[:512])):
        return htmltext.html_to_text(text, keep_quote=keep_quote, limit=HTML_TEXT_LIMIT)
    if subtype in ("enriched", "richtext"):
        return _enriched_to_text(text)
    if "flowed" in str(part.get("Content-Type", "")).lower() and (
        str(part.get_param("format", "")).lower() == "flowed"
    ):
        text = unflow(text, delsp=str(part.get_param("delsp", "")).lower() == "yes")
    return _LINK_TARGET.sub(" ", text)


# ---------------------------------------------------------------------------
# Public API


def _is_forward(message: Message) -> bool:
    return quotes.FORWARD_SUBJECT.match(mime.decode_header(message.get("Subject"))) is not None


def _keep_all(_: str) -> bool:
    return True


def body_text(message: Message) -> str:
    """The readable body: best text part (text/plain preferred, HTML converted), decoded with a
    robust charset fallback, quoted history/signatures/disclaimers removed, whitespace collapsed.

    Single line breaks are kept, blank lines dropped (on a phone they only cost characters).
    When cleaning would leave nothing, the uncleaned text is used; when the mail has no
    text of its own but forwards a message as an attachment, that message's body is used.
    At most about :data:`MAX_BODY_CHARS` characters are returned.
    """
    return _body_text(message, depth=0)


def _body_text(message: Message, *, depth: int) -> str:
    parts = body_parts(message)
    raw = "\n\n".join(part_to_text(part, quotes.is_forward_block) for part in parts)
    text = quotes.clean(raw[:MAX_BODY_CHARS], forwarded=_is_forward(message))
    if not text.strip() and parts:
        # Everything was quote (an HTML reply with nothing above the quote): keep it all.
        logger.debug("body is all quote, keeping the quote")
        raw = "\n\n".join(part_to_text(part, _keep_all) for part in parts)
        text = raw[:MAX_BODY_CHARS]
    text = smstext.clean_field(text, multiline=True)
    if not text and depth < MAX_NESTING:
        for inner in _attached_messages(message):
            text = _body_text(inner, depth=depth + 1)
            if text:
                logger.debug("body taken from an attached message")
                break
    return text


def format_date(value: datetime | None, now: datetime) -> str:
    """``{date}``: "25.11 14:03" in the time zone of ``now``, with the year if it differs."""
    if value is None:
        return ""
    local = value.astimezone(now.tzinfo) if now.tzinfo else value.astimezone()
    pattern = DATE_FORMAT if local.year == now.year else DATE_FORMAT_OTHER_YEAR
    return local.strftime(pattern)


def template_fields(template: str) -> frozenset[str]:
    """The fields a (valid) template uses, so that unused ones are not computed."""
    return frozenset(name for name in smstext.TEMPLATE_FIELDS if "{" + name + "}" in template)


def render(
    mail: Mail, options: SmsOptions, *, rule: str = "", now: datetime | None = None
) -> SmsText:
    """Fill the template with fields from the mail and fit it to the limits.

    ``now`` is the reader's clock: its time zone is used for ``{date}`` (default: the
    system's).  A mail without a Date header shows the server's arrival time.  If the
    body cannot be decoded at all (a bug, not bad mail), the SMS goes out without it.
    """
    now = now or datetime.now().astimezone()
    used = template_fields(options.template)
    name, address = mail.sender
    fields = {
        "from_name": name or address or NO_SENDER,
        "from_addr": address,
        "subject": mail.subject or NO_SUBJECT,
        "date": format_date(mail.date or mail.internal_date, now),
        "folder": mail.folder,
        "rule": rule,
        "to": ", ".join(addr or nm for nm, addr in mail.addresses("To")) if "to" in used else "",
        "body": "",
    }
    if "body" in used:
        try:
            fields["body"] = mail.body  # transform.body_text, cached on the Mail
        except Exception:
            logger.exception(
                "%s rule %s: body could not be read, sending without it", mail.describe(), rule
            )
    sms = smstext.fit(fields, options)
    logger.debug(
        "%s rule %s: SMS of %d characters, %s, %d segment(s)",
        mail.describe(), rule, sms.length, sms.encoding, sms.segments,
    )  # fmt: skip
    return sms
