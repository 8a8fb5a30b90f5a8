"""HTML mail to the plain text a person would read, on the stdlib's HTML tokenizer.

Why ``html.parser.HTMLParser`` and not a library: it is a real tokenizer (it handles
unquoted attributes, unclosed tags, character references and ``<script>``/``<style>``
raw text the way browsers do), it ships with Python, and what mail needs on top of it
is not generic HTML-to-text but mail knowledge: which elements a mail client hides
(preheaders styled ``display:none``, ``max-height:0``, ``opacity:0``), which hold quoted
history (Gmail's ``gmail_quote``, ``<blockquote type="cite">``, Outlook's
``divRplyFwdMsg``) or signatures.  Libraries were weighed: html2text is GPL-3 (not
compatible with an MIT/Apache project) and renders Markdown we would have to undo;
inscriptis (Apache-2.0) and html-text (MIT) need lxml, a compiled dependency, and
would still need the mail rules above; BeautifulSoup's ``get_text`` is no layout
engine.  None beats ~200 lines that we can read and test.

Partial input is normal (the daemon fetches the first few KiB of a part), so a tag,
comment or character reference cut at the end is dropped rather than shown.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser

logger = logging.getLogger(__name__)

#: Stop converting once this much visible text is collected: an SMS holds 500 characters,
#: and the rest of a long newsletter only costs time.
DEFAULT_TEXT_LIMIT = 8000

#: Feed the tokenizer in chunks of this size so the limit above can stop it early.
FEED_CHUNK = 2048

#: Elements whose content is never shown (HTML Living Standard §15.3.1 ``display: none``
#: defaults, plus embedded objects that carry no text for a reader).
INVISIBLE_ELEMENTS = frozenset(
    {
        "head",
        "title",
        "style",
        "script",
        "template",
        "svg",
        "math",
        "object",
        "iframe",
        "audio",
        "video",
        "canvas",
        "map",
        "datalist",
        "select",
        "option",
    }
)

#: Elements without an end tag (HTML Living Standard §13.1.2 void elements).
VOID_ELEMENTS = frozenset(
    {
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "link",
        "meta",
        "param",
        "source",
        "track",
        "wbr",
    }
)

#: Block elements: a line break before and after.
BLOCK_ELEMENTS = frozenset(
    {
        "div",
        "section",
        "article",
        "header",
        "footer",
        "nav",
        "aside",
        "main",
        "address",
        "center",
        "dl",
        "dt",
        "dd",
        "form",
        "fieldset",
        "figure",
        "figcaption",
        "tr",
        "li",
        "caption",
        "tbody",
        "thead",
        "tfoot",
        "hr",
        "legend",
        "details",
        "summary",
    }
)

#: Paragraph-like elements: a blank line before and after.
PARAGRAPH_ELEMENTS = frozenset(
    {"p", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "table", "blockquote", "pre"}
)

#: Table cells are separated by a space on their row.
CELL_ELEMENTS = frozenset({"td", "th"})

#: CSS declarations (lower-cased, spaces removed) that hide an element: the tricks
#: newsletters use for preheaders, the preview line a mail list shows but the body hides.
_HIDING_STYLE = re.compile(
    r"display:none|visibility:hidden|mso-hide:all|max-height:0(?![.\d])|max-width:0(?![.\d])"
    r"|opacity:0(?![.\d])|font-size:[01](?:px|pt)?(?![.\d])|(?<![-\w])height:0(?![.\d])"
)
_HIDING_CLASS = re.compile(r"(?:^|\s)(?:preheader\S*|preview-?text|hidden)(?:\s|$)", re.IGNORECASE)

#: Quoted history: Gmail, Yahoo, Thunderbird's "On … wrote:" line, Apple/Thunderbird
#: ``<blockquote type="cite">``.
_QUOTE_CLASS = re.compile(r"gmail_quote|yahoo_quoted|moz-cite-prefix", re.IGNORECASE)

#: Markers after which everything is quoted history (Outlook on the web and desktop).
_QUOTE_REST_ID = re.compile(
    r"^(?:appendonsend|divRplyFwdMsg|mail-editor-reference-message-container)$"
)

#: Signatures the composing client marked as such.
_SIGNATURE_MARK = re.compile(r"gmail_signature|moz-signature|AppleMailSignature", re.IGNORECASE)

_SPACES = re.compile(r"[ \t\r\n\f\v\xa0]+")
_CUT_TAG = re.compile(r"<[a-zA-Z/!?][^>]*\Z")
_CUT_REFERENCE = re.compile(r"&#?[a-zA-Z0-9]{0,32}\Z")


@dataclass
class _Open:
    """An element on the open-element stack."""

    tag: str
    hidden: bool  # this element or an ancestor is invisible
    quote: bool  # this element starts a quoted-history region


class _TextExtractor(HTMLParser):
    """Collects visible text with line breaks where the layout has them."""

    def __init__(self, keep_quote: Callable[[str], bool], *, blockquote_is_quote: bool) -> None:
        super().__init__(convert_charrefs=True)
        self.keep_quote = keep_quote
        self.blockquote_is_quote = blockquote_is_quote
        self.stack: list[_Open] = []
        self.out: list[str] = []
        self.visible_chars = 0
        self.quote: list[str] | None = None  # collecting a quote region, when not None
        self.quote_to_end = False  # an Outlook marker quoted everything after it
        self.pre = 0
        self.pending_break = 0

    # -- output -------------------------------------------------------------

    def _emit(self, text: str) -> None:
        target = self.out if self.quote is None else self.quote
        if self.pending_break and target:
            target.append("\n" * self.pending_break)
        self.pending_break = 0
        target.append(text)
        if self.quote is None:
            self.visible_chars += len(text)

    def _break(self, lines: int) -> None:
        """Ask for a line break (1) or a blank line (2) before the next text.

        Nested blocks ask several times at one boundary; the largest request wins.
        """
        self.pending_break = max(self.pending_break, lines)

    def _hidden(self) -> bool:
        return bool(self.stack) and self.stack[-1].hidden

    def _end_quote(self) -> None:
        if self.quote is None:
            return
        text = finish_text("".join(self.quote))
        self.quote = None
        if text and self.keep_quote(text):
            self._break(2)
            self._emit(text)
            self._break(2)

    def close_quote_to_end(self) -> None:
        """At the end of the input: decide on a quote region still open (cut, or Outlook's)."""
        self._end_quote()

    # -- tokenizer callbacks ---------------------------------------------------

    def parse_marked_section(self, i: int, report: int = 1) -> int:
        """Skip ``<![…]>`` sections the base class rejects with AssertionError.

        Word and Outlook write ``<![if !supportLists]>`` and friends; the base class
        knows ``if``/``endif`` but raises on other keywords.
        """
        try:
            return super().parse_marked_section(i, report)
        except AssertionError:
            end = self.rawdata.find(">", i)
            return -1 if end < 0 else end + 1

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        hidden = self._hidden() or tag in INVISIBLE_ELEMENTS or _is_hidden(attributes)
        marker = " ".join((attributes.get("class", ""), attributes.get("id", "")))
        if _SIGNATURE_MARK.search(marker) or attributes.get("data-smartmail") == "gmail_signature":
            hidden = True
        if self.quote is None and _QUOTE_REST_ID.match(attributes.get("id", "")):
            self.quote = []
            self.quote_to_end = True
        quoting_blockquote = tag == "blockquote" and (
            self.blockquote_is_quote or attributes.get("type", "").lower() == "cite"
        )
        starts_quote = self.quote is None and (
            quoting_blockquote or _QUOTE_CLASS.search(attributes.get("class", "")) is not None
        )
        if not hidden:
            self._layout(tag, opening=True)
        if tag in VOID_ELEMENTS:
            return
        if starts_quote:
            self.quote = []
        if tag == "pre":
            self.pre += 1
        self.stack.append(_Open(tag, hidden, starts_quote))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        # XHTML-style <br/> and <div/>: open and close at once.
        self.handle_starttag(tag, attrs)
        if tag not in VOID_ELEMENTS:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        # HTMLParser does no tree construction: close the nearest open element of this
        # name and everything opened inside it; an end tag with no open element is junk.
        for depth in range(len(self.stack) - 1, -1, -1):
            if self.stack[depth].tag == tag:
                break
        else:
            if tag in ("br", "p") and not self._hidden():  # browsers treat </br> and </p> as breaks
                self._layout(tag, opening=False)
            return
        while len(self.stack) > depth:
            element = self.stack.pop()
            if element.tag == "pre":
                self.pre -= 1
            if not element.hidden:
                self._layout(element.tag, opening=False)
            if element.quote and not self.quote_to_end and self.quote is not None:
                self._end_quote()

    def handle_data(self, data: str) -> None:
        if self._hidden() or not data:
            return
        if self.pre:
            self._emit(data.replace("\xa0", " "))
        else:
            self._emit(_SPACES.sub(" ", data))

    def _layout(self, tag: str, *, opening: bool) -> None:
        if tag == "br" and opening:
            self._emit("\n")
        elif tag in PARAGRAPH_ELEMENTS:
            self._break(2)
        elif tag in BLOCK_ELEMENTS:
            self._break(1)
            if tag == "li" and opening:
                self._emit("- ")
        elif tag in CELL_ELEMENTS and opening:
            self._emit(" ")


def _is_hidden(attributes: dict[str, str]) -> bool:
    if "hidden" in attributes or attributes.get("aria-hidden", "").lower() == "true":
        return True
    style = attributes.get("style", "")
    if style and _HIDING_STYLE.search(style.lower().replace(" ", "")):
        return True
    return bool(_HIDING_CLASS.search(attributes.get("class", "")))


def _drop_cut_tail(html: str) -> str:
    """Remove a tag, comment or character reference cut off by a partial fetch."""
    comment = html.rfind("<!--")
    if comment >= 0 and html.find("-->", comment) < 0:
        html = html[:comment]
    html = _CUT_TAG.sub("", html)
    return _CUT_REFERENCE.sub("", html)


def finish_text(text: str) -> str:
    """Tidy collected text: trim every line, keep at most one blank line in a row."""
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _never(_: str) -> bool:
    return False


def html_to_text(
    html: str,
    *,
    keep_quote: Callable[[str], bool] = _never,
    limit: int = DEFAULT_TEXT_LIMIT,
    blockquote_is_quote: bool = False,
) -> str:
    """The visible text of ``html``: paragraphs and line breaks kept, link text kept
    (not the URLs), images, styles, scripts, hidden preheaders and signatures dropped.

    Quoted history (see module docstring) is dropped unless ``keep_quote(text)`` says
    otherwise: the caller keeps forwarded messages that way.  Conversion stops after
    about ``limit`` characters of visible text.

    ``blockquote_is_quote`` makes every ``<blockquote>`` quoted history, not only
    ``type="cite"``: for readers of replies, where a bare one is the quoted original;
    in other mail it may be a quotation or an indent the author means to send.
    """
    parser = _TextExtractor(keep_quote, blockquote_is_quote=blockquote_is_quote)
    html = _drop_cut_tail(html)
    fed = 0
    while fed < len(html) and parser.visible_chars < limit:
        try:
            parser.feed(html[fed : fed + FEED_CHUNK])
        except Exception:  # defensive: the tokenizer is meant to accept anything
            logger.warning("HTML tokenizer failed, keeping the text so far", exc_info=True)
            break
        fed += FEED_CHUNK
    if fed >= len(html):
        # close() flushes what the tokenizer holds back; after an early stop that may be
        # a tag cut at a chunk boundary, which must not be shown as text.
        try:
            parser.close()
        except Exception:
            logger.debug("HTML tokenizer error at end of input", exc_info=True)
    parser.close_quote_to_end()
    return finish_text("".join(parser.out))
