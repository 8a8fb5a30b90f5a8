"""HTML mail to text: layout kept, invisible things dropped, quotes and cut input handled."""

from __future__ import annotations

import pytest

from forwarder.text.htmltext import html_to_text
from forwarder.text.quotes import is_forward_block

CASES = {
    "paragraphs and breaks": ("<p>One<br>Two</p><p>Three</p>", "One\nTwo\n\nThree"),
    "divs are lines": ("<div>a</div><div>b</div>", "a\nb"),
    "entities": (
        "<p>Tom &amp; Jerry &lt;3 &eacute;t&eacute; &#x44f; &#1103;&nbsp;!</p>",
        "Tom & Jerry <3 été я я !",
    ),
    "link text, not the address": (
        '<a href="https://x.example/track?id=1">Open invoice</a>',
        "Open invoice",
    ),
    "images and tracking pixels": (
        'Hi<img src="https://t.example/p.gif" width="1" height="1" alt="">',
        "Hi",
    ),
    "head, title, style, script": (
        "<html><head><title>T</title><style>p{color:red}</style></head>"
        "<body><script>var x = '<p>no</p>';</script><p>Body</p></body></html>",
        "Body",
    ),
    "display none preheader": (
        '<span style="display: none !important">Preview text</span><p>Hi</p>',
        "Hi",
    ),
    "max-height 0 and opacity 0": (
        '<div style="max-height:0;overflow:hidden;opacity:0">hidden</div><p>Shown</p>',
        "Shown",
    ),
    "visibility hidden, mso-hide, font-size 0": (
        '<i style="visibility:hidden">a</i><i style="mso-hide:all">b</i>'
        '<i style="font-size:0px">c</i>ok',
        "ok",
    ),
    "class preheader": ('<div class="preheader">Pre</div><p>Main</p>', "Main"),
    "hidden attribute": ("<div hidden>gone</div>kept", "kept"),
    "opacity that shows": ('<div style="opacity:0.8">seen</div>', "seen"),
    "lists": ("<ul><li>one</li><li>two</ul>", "- one\n- two"),
    "table rows": (
        "<table><tr><td>Item</td><td>Qty</td></tr><tr><td>Book</td><td>2</td></tr></table>",
        "Item Qty\nBook 2",
    ),
    "pre keeps lines": ("<pre>a  b\n c</pre>", "a b\nc"),
    "whitespace collapses": ("<p>  lots\n\n of   space  </p>", "lots of space"),
    "unclosed tags": ("<p>one<p>two<div>three", "one\n\ntwo\nthree"),
    "stray end tags": ("</div></span>text</b>", "text"),
    "office conditional sections": (
        "<![if !supportLists]>1.<![endif]> item<![bogus]> end",
        "1. item end",
    ),
    "comments": ("a<!-- hidden <b>x</b> -->b", "ab"),
    "gmail signature": ('Hi<div class="gmail_signature">-- <br>Ann</div>', "Hi"),
    "gmail quote": (
        '<div>Yes.</div><div class="gmail_quote"><div class="gmail_attr">On Mon, Ann wrote:</div>'
        "<blockquote>Old</blockquote></div>",
        "Yes.",
    ),
    "apple cite": ('Sure<blockquote type="cite">earlier</blockquote>', "Sure"),
    "outlook reply marker": (
        '<div>Fine</div><div id="appendonsend"></div><hr>'
        '<div id="divRplyFwdMsg">From: X</div><div>old</div>',
        "Fine",
    ),
    "thunderbird cite prefix": (
        'Ok<div class="moz-cite-prefix">On 25.11 Ann wrote:</div>'
        '<blockquote type="cite">x</blockquote>',
        "Ok",
    ),
    "xhtml br": ("a<br/>b<br />c", "a\nb\nc"),
}


@pytest.mark.parametrize(("html", "expected"), CASES.values(), ids=CASES.keys())
def test_html_to_text(html: str, expected: str) -> None:
    assert html_to_text(html) == expected


def test_forwarded_gmail_quote_is_kept() -> None:
    html = (
        "FYI<br><div class='gmail_quote'>---------- Forwarded message ---------<br>"
        "From: Bob<br><br>The server is down.</div>"
    )
    assert html_to_text(html, keep_quote=is_forward_block) == (
        "FYI\n\n---------- Forwarded message ---------\nFrom: Bob\n\nThe server is down."
    )


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        ("<p>Hello <b>wor", "Hello wor"),
        ("<p>Hello <a href='https://exa", "Hello"),
        ("<p>Hello &am", "Hello"),
        ("<p>Hello &#10", "Hello"),
        ("<p>Hello <!-- a comment <b>x", "Hello"),
        ("<p>Hello</p><style>p { color:", "Hello"),
        ('<p>Hello</p><span style="display:none">preview', "Hello"),
    ],
)
def test_cut_html_leaves_no_debris(html: str, expected: str) -> None:
    assert html_to_text(html) == expected


def test_conversion_stops_after_the_limit() -> None:
    html = "<p>word</p>" * 10_000
    text = html_to_text(html, limit=100)
    assert 100 <= len(text) < 10_000


def test_an_early_stop_does_not_show_a_tag_cut_at_a_chunk_boundary() -> None:
    html = "<p>" + "x" * 2040 + "<a href='https://example.com/'>link</a>" + "<p>more</p>" * 100
    text = html_to_text(html, limit=100)
    assert "<" not in text and "href" not in text


def test_every_blockquote_can_be_quoted_history() -> None:
    """Readers of replies treat a bare ``<blockquote>`` as the quoted original."""
    html = "<p>Sent.</p><blockquote>Server <b>db1</b> is down</blockquote><p>Bye</p>"
    assert html_to_text(html) == "Sent.\n\nServer db1 is down\n\nBye"
    offered: list[str] = []

    def collect(quote: str) -> bool:
        offered.append(quote)
        return False

    kept = html_to_text(html, keep_quote=collect, blockquote_is_quote=True)
    assert (kept, offered) == ("Sent.\n\nBye", ["Server db1 is down"])
