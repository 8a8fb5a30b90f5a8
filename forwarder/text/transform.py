"""From a parsed mail to its SMS: pick the readable body, clean it, fill the template.

What cannot be read as text is never shown as its bytes: an encrypted message, a
fragment of a split one, a compressed or binary body, an armoured key or a uuencoded
file becomes a short note in brackets (:data:`NOTES`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import datetime
from email.message import Message
from typing import Protocol

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
MAX_NESTING = mime.MAX_NESTING

#: Shown for a mail without a subject; the sender's name falls back to the address.
NO_SUBJECT = "(no subject)"
NO_SENDER = "(unknown sender)"

#: ``{date}``: day.month hour:minute in the reader's time zone; the year only if not this year.
DATE_FORMAT = "%d.%m %H:%M"
DATE_FORMAT_OTHER_YEAR = "%d.%m.%Y %H:%M"

#: Text subtypes that are a body (others, like text/csv or text/x-ruby, are documents).
BODY_SUBTYPES = ("plain", "html", "enriched", "richtext")

#: What the SMS says instead of what it cannot show.
NOTES = {
    "encrypted": "[encrypted message]",
    "signed": "[signed message]",  # S/MIME opaque signed-data: the text is inside the DER
    "compressed": "[compressed message]",
    "binary": "[binary data]",
    "encoded": "[encoded data]",
}
NOTE_PARTIAL = "[part {number} of {total} of a split message]"
NOTE_PARTIAL_NO_TOTAL = "[part {number} of a split message]"
NOTE_UUENCODED = "[attachment {name}]"
NOTE_UUENCODED_NO_NAME = "[attachment]"

#: Containers whose content is encrypted (RFC 1847 §2.2 / RFC 3156 PGP/MIME, RFC 8551 S/MIME).
ENCRYPTED_TYPES = frozenset({"multipart/encrypted", "application/pgp-encrypted"})
PKCS7_TYPES = frozenset({"application/pkcs7-mime", "application/x-pkcs7-mime"})

_LOOKS_LIKE_HTML = re.compile(
    r"\s*(?:<!doctype\s+html|<html|<head|<body|<div|<table|<p[\s>])", re.I
)
#: HTML sent as text/plain further in than its first line ("…table.<br>"), or a document
#: pasted at the end (BlackBerry appends an XML plist): two tags of HTML's everyday
#: vocabulary, or one thing no plain text holds.
_HTML_TAG_IN_TEXT = re.compile(
    r"</?(?:br|p|div|span|font|table|tr|td|th|tbody|b|i|u|strong|em|a|img|ul|ol|li|center"
    r"|blockquote|h[1-6]|hr|html|head|body|meta|style)(?:\s[^<>]{0,300})?/?>",
    re.I,
)
_MARKUP_DOCUMENT = re.compile(r"<!doctype\s|<\?xml\s|<style[\s>]|<html[\s>]|<body[\s>]", re.I)
_HTML_LINE_BREAKS = re.compile(r"<(?:br|p|div|tr|li)[\s/>]", re.I)
#: ASCII armour (RFC 4880 §6.2, RFC 7468): an OpenPGP message, signature or key, a PEM
#: certificate.  Cut by a partial fetch, a block runs to the end of the text.
_ARMOUR = re.compile(
    r"^-----BEGIN (?P<label>[A-Z0-9][A-Z0-9 ]{0,40}?)-----[ \t]*$"
    r"(?:.*?^-----END (?P=label)-----[ \t]*$\n?|.*\Z)",
    re.MULTILINE | re.DOTALL,
)
#: The start of a clear-signed message (RFC 4880 §7): its armour headers ("Hash: SHA256")
#: up to the blank line.
_CLEARSIGN_START = re.compile(
    r"^-----BEGIN PGP SIGNED MESSAGE-----[ \t]*\n(?:[A-Za-z]+: [^\n]*\n)*\n?", re.MULTILINE
)
_DASH_ESCAPE = re.compile(r"^- (?=-)", re.MULTILINE)
#: A uuencoded file in the text ("begin 644 up.gif", lines of up to 61 characters from
#: " " to "`", "end").  Cut by a partial fetch, it runs to the end of the text.
_UUENCODED = re.compile(
    r"^begin [0-7]{3,4}(?: (?P<name>[^\n]{0,200}))?\n(?:[ -`]{1,62}(?:\n|\Z))+"
    r"(?:end[ \t]*(?:\n|\Z))?",
    re.MULTILINE,
)
#: Base64 left in the text (pasted, or in a part that says nothing of it): lines of
#: nothing but its alphabet, as long as encoders write them (64 or 76; a token, a hash or
#: an ID is shorter), the last one shorter, mixing cases and digits as encoded bytes do.
_BASE64_LINES = re.compile(
    r"^(?:[A-Za-z0-9+/]{60,}={0,2}[ \t]*(?:\n|\Z))+(?:[A-Za-z0-9+/]{1,59}={0,2}[ \t]*(?:\n|\Z))?",
    re.MULTILINE,
)
#: "Click here <https://…>": plain-text renderings of HTML links.  The link text says what
#: matters; the address is unreadable on a phone and costs characters.
_LINK_TARGET = re.compile(r"[ \t]*<(?:https?|mailto|ftp):[^<>\s]*(?:>[ \t]*|\Z)")
_ENRICHED_PARAM = re.compile(r"<param>.*?</param>", re.I | re.S)
_ENRICHED_TAG = re.compile(r"<[^<>]{1,60}>")


# ---------------------------------------------------------------------------
# Choosing the parts that make the body


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

    A part that has no text to show but must be mentioned (an encrypted message, a
    fragment of a split one: :func:`note_for`) counts as a body part.

    multipart/alternative (RFC 2046 §5.1.4): text/plain preferred (unless it is empty),
    else HTML, else the richest other alternative.  related: its root.  signed, report:
    the first part (the content, the human-readable explanation).  mixed and the rest:
    every inline text part, in order (mobile clients split a body around inline
    pictures), skipping attachments and attached messages.
    """
    if note_for(part) is not None:  # it has no text, but the reader must learn it is there
        return [part]
    children = _children(part)
    maintype, _, subtype = part.get_content_type().partition("/")
    if part.is_multipart():
        if not children:
            return []
        if subtype == "alternative":
            for wanted in ("text/plain", "text/html"):
                for child in children:
                    if child.get_content_type() != wanted or mime.part_is_saved(child):
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
            if not child.get_content_type().startswith("message/") and not mime.part_is_saved(
                child
            ):
                found.extend(body_parts(child))
        return found
    if maintype == "text" and subtype in BODY_SUBTYPES:
        return [] if mime.part_is_saved(part) else [part]
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


def note_for(part: Message) -> str | None:
    """The note that stands for ``part`` when its content cannot be read as text at all:
    an encrypted message (PGP/MIME, S/MIME), a fragment after the first of a split one
    (RFC 2046 §5.2.2 message/partial: only the first carries the header and the start),
    or None."""
    ctype = part.get_content_type()
    if ctype in ENCRYPTED_TYPES:
        return NOTES["encrypted"]
    if ctype in PKCS7_TYPES:
        kind = str(part.get_param("smime-type") or "").lower()
        return NOTES["signed" if kind == "signed-data" else "encrypted"]
    if ctype == "message/partial":
        number, total = _digits(part.get_param("number")), _digits(part.get_param("total"))
        if number and number != "1":
            pattern = NOTE_PARTIAL if total else NOTE_PARTIAL_NO_TOTAL
            return pattern.format(number=number, total=total)
    return None


def _digits(value: object) -> str:
    text = str(value).strip() if isinstance(value, str) else ""
    return text.lstrip("0") if text.isdigit() and len(text) <= 6 else ""


def _looks_like_markup(text: str) -> bool:
    sample = text[:MAX_BODY_CHARS]
    if _MARKUP_DOCUMENT.search(sample):
        return True
    tags = _HTML_TAG_IN_TEXT.finditer(sample)
    return next(tags, None) is not None and next(tags, None) is not None


def _markup_to_text(text: str, keep_quote: Callable[[str], bool]) -> str:
    """Plain text with HTML in it: its line breaks count too, unless the markup has its own."""
    if not _HTML_LINE_BREAKS.search(text):
        text = text.replace("\n", "<br>\n")
    return htmltext.html_to_text(text, keep_quote=keep_quote, limit=HTML_TEXT_LIMIT)


def _armour_note(block: re.Match[str]) -> str:
    label = block.group("label")
    if label == "PGP MESSAGE":
        return NOTES["encrypted"]
    if label.endswith("SIGNATURE"):
        return ""  # the signed text above it is what the reader wants
    return f"[{label.lower()}]"


def scrub_encoded(text: str) -> str:
    """``text`` with what is not for reading replaced by a note: ASCII armour (an inline
    OpenPGP message is "[encrypted message]", a signature is dropped and a clear-signed
    text kept), a uuencoded file, runs of base64."""
    if "-----BEGIN " in text:
        text = _CLEARSIGN_START.sub("", text)
        if "-----BEGIN PGP SIGNATURE-----" in text:
            text = _DASH_ESCAPE.sub("", text)
        text = _ARMOUR.sub(lambda block: _armour_note(block) + "\n", text)
    if "begin " in text:
        text = _UUENCODED.sub(_uuencoded_note, text)
    return _BASE64_LINES.sub(_base64_note, text)


def _uuencoded_note(block: re.Match[str]) -> str:
    name = (block.group("name") or "").strip()
    return (NOTE_UUENCODED.format(name=name) if name else NOTE_UUENCODED_NO_NAME) + "\n"


def _base64_note(run: re.Match[str]) -> str:
    found = run.group()
    mixed = re.search("[A-Z]", found) and re.search("[a-z]", found) and re.search("[0-9]", found)
    return NOTES["encoded"] + "\n" if mixed else found


def part_to_text(part: Message, keep_quote: Callable[[str], bool]) -> str:
    """The plain text of one body part: decoded, HTML converted, line ends normalised,
    and what is not for reading replaced by a note (:func:`note_for`, :func:`scrub_encoded`)."""
    note = note_for(part)
    if note is not None:
        return note
    text = mime.part_text(part).replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        reason = mime.unreadable(part)
        return NOTES[reason] if reason else text
    subtype = part.get_content_subtype()
    if subtype == "html" or (subtype == "plain" and _LOOKS_LIKE_HTML.match(text[:512])):
        text = htmltext.html_to_text(text, keep_quote=keep_quote, limit=HTML_TEXT_LIMIT)
    elif subtype in ("enriched", "richtext"):
        text = _enriched_to_text(text)
    elif _looks_like_markup(text):
        text = _markup_to_text(text, keep_quote)
    else:
        if "flowed" in str(part.get("Content-Type", "")).lower() and (
            str(part.get_param("format", "")).lower() == "flowed"
        ):
            text = unflow(text, delsp=str(part.get_param("delsp", "")).lower() == "yes")
        text = _LINK_TARGET.sub(" ", text)
    return scrub_encoded(text)


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


class MailFacts(Protocol):
    """What :func:`render` reads of a mail; ``forwarder.mail.Mail`` has it all.

    A protocol rather than an import: ``Mail`` computes its body with this module, so
    importing it here would make the two modules import each other.
    """

    folder: str
    internal_date: datetime | None

    @property
    def subject(self) -> str: ...
    @property
    def sender(self) -> tuple[str, str]: ...
    @property
    def date(self) -> datetime | None: ...
    @property
    def body(self) -> str: ...
    def addresses(self, name: str) -> list[tuple[str, str]]: ...
    def describe(self) -> str: ...


def render(mail: MailFacts, options: SmsOptions, *, now: datetime, rule: str = "") -> SmsText:
    """Fill the template with fields from the mail and fit it to the limits.

    ``now`` is the reader's clock (required: the core reads no clock), and its time zone is
    used for ``{date}``.  A mail without a Date header shows the server's arrival time.  If
    the body cannot be decoded at all (a bug, not bad mail), the SMS goes out without it.
    """
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
        mail.describe(),
        rule,
        sms.length,
        sms.encoding,
        sms.segments,
    )
    return sms
