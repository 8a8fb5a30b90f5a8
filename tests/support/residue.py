"""What must never reach an SMS: encoded data or markup where the reader expects words.

:func:`residue` finds the marks a decoding step left undone — a run of base64, a
quoted-printable escape, an HTML tag, character reference or style sheet — and names them.
It is deliberately stricter than what a human would notice (one ``&amp;`` counts) and
loose only where real text looks the same: a long token of one letter case or without
digits is a word, an ID or a hash, not base64.
"""

from __future__ import annotations

import itertools
import re

#: Base64 (RFC 2045 §6.8): a long unbroken run of its alphabet.  Encoded bytes mix upper
#: and lower case, digits and letters past ``f`` at random, switching class every other
#: character or so; words, hex IDs, paths, wallet addresses and a test's "0123…xyzABC"
#: don't (see :func:`_looks_base64`).
BASE64_MIN_RUN = 40
#: Of random base64, about 64 % of neighbouring characters differ in class; a quarter is
#: far below that and far above camel-case names.
BASE64_MIN_SWITCHES = 0.25
_BASE64_RUN = re.compile(rf"(?<![A-Za-z0-9+/=%.@_-])[A-Za-z0-9+/]{{{BASE64_MIN_RUN},}}={{0,2}}")

#: Quoted-printable (RFC 2045 §6.7): ``=XX`` escapes; a lone ``=41`` could be a formula,
#: two in a row, ``=3D``/``=20`` or a soft line break after a word cannot.
_QP = re.compile(r"(?:=[0-9A-F]{2}){2,}|=[0-9A-F]{2}(?=[A-Za-z])|=(?:3D|20|09)|(?<=\w)=\n")
#: uuencode (POSIX ``uuencode``): "begin 644 name", then lines of 61 characters from "M".
_UUENCODE = re.compile(r"^begin [0-7]{3,4} \S|^M[!-`]{40,}$", re.MULTILINE)

#: HTML elements by name (a "<name>" in prose is rare, "<br>" is not prose).
_HTML_ELEMENTS = (
    "a|abbr|address|area|article|aside|b|base|bdi|bdo|blockquote|body|br|button|caption|"
    "center|cite|code|col|colgroup|dd|del|details|dfn|div|dl|dt|em|embed|fieldset|figure|font|"
    "footer|form|frame|h[1-6]|head|header|hr|html|i|iframe|img|input|ins|kbd|label|legend|li|"
    "link|main|map|mark|meta|nav|noscript|object|ol|optgroup|option|p|param|pre|q|s|samp|"
    "script|section|select|small|source|span|strike|strong|style|sub|summary|sup|table|tbody|"
    "td|template|textarea|tfoot|th|thead|title|tr|tt|u|ul|var|video|wbr|o:p|v:shape|xml"
)
_HTML_TAG = re.compile(rf"</?(?:{_HTML_ELEMENTS})(?:\s[^<>]*)?/?>|<!--|<!doctype", re.IGNORECASE)
_HTML_ENTITY = re.compile(r"&(?:[A-Za-z][A-Za-z0-9]{1,9}|#[0-9]{1,7}|#[xX][0-9A-Fa-f]{1,6});")
#: A CSS rule ("p { margin: 0; }", "body{font-family:Arial}"): a style sheet read as text.
_CSS_RULE = re.compile(r"[\w.#@:*-]+\s*\{\s*[\w-]+\s*:[^{}]*\}")

KINDS = ("base64", "quoted-printable", "uuencode", "html tag", "html entity", "css")


def _class(char: str) -> int:
    return 0 if char.isupper() else 1 if char.islower() else 2


def _looks_base64(run: str) -> bool:
    body = run.rstrip("=")
    if not (
        any(c.isupper() for c in body)
        and any(c.islower() for c in body)
        and any(c.isdigit() or c in "+/" for c in body)
        and any(c.lower() > "f" for c in body if c.isalpha())
    ):
        return False
    switches = sum(_class(a) != _class(b) for a, b in itertools.pairwise(body))
    return switches >= BASE64_MIN_SWITCHES * (len(body) - 1)


def residue(text: str) -> list[tuple[str, str]]:
    """(kind, snippet) for every mark of undecoded data or markup in ``text``."""
    found = [("base64", m.group()) for m in _BASE64_RUN.finditer(text) if _looks_base64(m.group())]
    found += [("quoted-printable", m.group()) for m in _QP.finditer(text)]
    found += [("uuencode", m.group()) for m in _UUENCODE.finditer(text)]
    found += [("html tag", m.group()) for m in _HTML_TAG.finditer(text)]
    found += [("html entity", m.group()) for m in _HTML_ENTITY.finditer(text)]
    found += [("css", m.group()) for m in _CSS_RULE.finditer(text)]
    return found
