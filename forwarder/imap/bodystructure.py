"""Partial mail: read BODYSTRUCTURE, choose the text sections to fetch, rebuild a MIME message.

Pure: no socket here. ``mailbox`` fetches ``BODYSTRUCTURE`` and the header of each new
mail, asks :func:`text_sections` which sections hold its readable text, fetches only
those (``BODY.PEEK[1.MIME]`` and the first N bytes of ``BODY.PEEK[1]``), and hands the
answers to :func:`rebuild`. The result is a message the transformer and the reply
tracker read like the original: the same tree of parts, every text part cut to N
bytes, every other part (attachments, pictures) present with its headers but empty.
A 25 MB mail with a PDF costs a few KiB.

Part numbers follow RFC 3501 §6.4.5: the children of the top multipart are 1, 2, …;
the children of part 2 are 2.1, 2.2, …; a message/rfc822 part 3 has its header at
3.HEADER and its own parts numbered 3.1, … (or 3.TEXT when it is not multipart).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import compat32

from forwarder.text import mime

#: Text parts fetched per mail at most: the SMS shows one, the reply tracker reads a few.
MAX_TEXT_PARTS = 8

#: Attached messages opened this deep for their text (as the transformer opens them).
MAX_DEPTH = mime.MAX_NESTING

#: message/* leaves that are text a reader (or the reply tracker) may want.
#: message/partial too: the first fragment carries the header and the start of the
#: message (RFC 2046 §5.2.2), and servers show no structure inside it.
_MESSAGE_TEXT = frozenset(
    {"delivery-status", "disposition-notification", "feedback-report", "partial"}
)

_UNSAFE_IN_HEADER = re.compile(r"[\x00-\x1f\x7f]")
_CRLF = b"\r\n"


class StructureError(ValueError):
    """The server's BODYSTRUCTURE has a shape this module does not understand."""


@dataclass(frozen=True)
class Part:
    """One node of a BODYSTRUCTURE, with where to fetch what belongs to it.

    ``section`` is where the content is (``"1"``, ``"2.1"``; ``"TEXT"`` or ``"3.TEXT"`` for
    the body of a non-multipart message); ``mime_section`` where the part's own MIME header
    is (``"1.MIME"``), None when its header is the enclosing message's header. A
    message/rfc822 part has ``header_section`` (``"3.HEADER"``) and ``body``, the root of
    the attached message.
    """

    maintype: str
    subtype: str
    section: str
    mime_section: str | None = None
    params: tuple[tuple[str, str], ...] = ()
    content_id: str | None = None
    encoding: str | None = None
    size: int = 0
    disposition: str | None = None
    disposition_params: tuple[tuple[str, str], ...] = ()
    children: tuple[Part, ...] = ()
    header_section: str | None = None
    body: Part | None = None

    @property
    def multipart(self) -> bool:
        return self.maintype == "multipart"

    @property
    def content_type(self) -> str:
        return f"{self.maintype}/{self.subtype}"

    def param(self, name: str) -> str | None:
        for key, value in self.params:
            if key == name:
                return value
        return None

    @property
    def filename(self) -> str | None:
        """Content-Disposition's filename, else Content-Type's name (as Message.get_filename)."""
        for params, name in ((self.disposition_params, "filename"), (self.params, "name")):
            for key, value in params:
                if key == name or key.startswith(name + "*"):  # RFC 2231: name*, name*0*, …
                    return value
        return None

    def walk(self) -> Iterator[Part]:
        """This part and every part below it, attached messages included (like Message.walk)."""
        yield self
        for child in self.children:
            yield from child.walk()
        if self.body is not None:
            yield from self.body.walk()


# -- reading BODYSTRUCTURE ------------------------------------------------------------------
def parse_bodystructure(structure: Sequence[object]) -> Part:
    """The tree of a BODYSTRUCTURE as imapclient returns it (``BodyData`` or plain tuples)."""
    return _parse_root(structure, prefix="", depth=0)


def _parse_root(node: object, *, prefix: str, depth: int) -> Part:
    """The body of a message (the whole mail, or one attached at part ``prefix``).

    A body that is not multipart is part 1 of its message (RFC 3501 §6.4.5): when it is
    itself a message/rfc822, that message's header is ``1.HEADER`` (``3.1.HEADER``), not
    ``TEXT.HEADER``, which servers refuse, failing the whole FETCH.
    """
    if _is_multipart(node):
        return _parse_multipart(
            node, section=_join(prefix, "TEXT"), child_prefix=prefix, depth=depth
        )
    return _parse_leaf(
        node,
        section=_join(prefix, "TEXT"),
        number=_join(prefix, "1"),
        mime_section=None,
        depth=depth,
    )


def _parse_child(node: object, section: str, depth: int) -> Part:
    if _is_multipart(node):
        return _parse_multipart(node, section=section, child_prefix=section, depth=depth)
    return _parse_leaf(
        node, section=section, number=section, mime_section=f"{section}.MIME", depth=depth
    )


def _is_multipart(node: object) -> bool:
    if not isinstance(node, tuple | list) or not node:
        raise StructureError(f"a body structure must be a non-empty list, not {node!r:.80}")
    return isinstance(node[0], tuple | list)


def _parse_multipart(node: object, *, section: str, child_prefix: str, depth: int) -> Part:
    assert isinstance(node, tuple | list)
    if isinstance(node[0], list):  # imapclient nests the children of the top one in a list
        children_nodes: Sequence[object] = node[0]
        rest = node[1:]
    else:  # raw tuples, e.g. inside message/rfc822
        count = next((i for i, item in enumerate(node) if not isinstance(item, tuple | list)), 0)
        children_nodes, rest = node[:count], node[count:]
    if not children_nodes:
        raise StructureError("a multipart body structure without parts")
    children = tuple(
        _parse_child(child, _join(child_prefix, str(number)), depth)
        for number, child in enumerate(children_nodes, start=1)
    )
    disposition, disposition_params = _disposition(_item(rest, 2))
    return Part(
        maintype="multipart",
        subtype=_text(_item(rest, 0)).lower() or "mixed",
        section=section,
        params=_params(_item(rest, 1)),
        disposition=disposition,
        disposition_params=disposition_params,
        children=children,
    )


def _parse_leaf(
    node: object, *, section: str, number: str, mime_section: str | None, depth: int
) -> Part:
    assert isinstance(node, tuple | list)
    if len(node) < 7:
        raise StructureError(f"a body structure part needs 7 fields, got {len(node)}")
    maintype, subtype = _text(node[0]).lower(), _text(node[1]).lower()
    header_section = body = None
    if maintype == "text":
        extension = 8  # after the line count
    elif (maintype, subtype) == ("message", "rfc822") and len(node) >= 10:
        extension = 10  # after envelope, body structure and line count
        header_section = f"{number}.HEADER"
        if depth + 1 < MAX_DEPTH and isinstance(node[8], tuple | list) and node[8]:
            body = _parse_root(node[8], prefix=number, depth=depth + 1)
    else:
        extension = 7
    if not maintype:
        # The server could not read Content-Type ("text" without a subtype): RFC 2045 §5.2
        # makes that plain text, as the transformer reads the message.  (The fields above
        # follow the layout the server used for it.)
        maintype, subtype = "text", "plain"
    subtype = subtype or ("plain" if maintype == "text" else "octet-stream")
    disposition, disposition_params = _disposition(_item(node, extension + 1))
    size = node[6]
    return Part(
        maintype=maintype,
        subtype=subtype,
        section=section,
        mime_section=mime_section,
        params=_params(node[2]),
        content_id=_text(node[3]) or None,
        encoding=_text(node[5]).lower() or None,
        size=size if isinstance(size, int) else 0,
        disposition=disposition,
        disposition_params=disposition_params,
        header_section=header_section,
        body=body,
    )


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _item(node: Sequence[object], index: int) -> object:
    return node[index] if index < len(node) else None


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    return ""


def _params(value: object) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, tuple | list):
        return ()
    items = list(value)
    return tuple(
        (_text(items[i]).lower(), _text(items[i + 1])) for i in range(0, len(items) - 1, 2)
    )


def _disposition(value: object) -> tuple[str | None, tuple[tuple[str, str], ...]]:
    if not isinstance(value, tuple | list) or not value:
        return None, ()
    kind = _text(value[0]).lower() or None
    return kind, _params(value[1] if len(value) > 1 else None)


# -- what to fetch --------------------------------------------------------------------------
def is_attachment(part: Part) -> bool:
    """``mime.is_attachment`` of a BODYSTRUCTURE part: the same answer as for the message."""
    return mime.is_attachment(part.content_type, part.disposition, bool(part.filename))


def has_attachment(root: Part) -> bool:
    """As ``Mail.has_attachment``: any part is an attachment."""
    return any(is_attachment(part) for part in root.walk())


def _readable(part: Part) -> bool:
    """A leaf the transformer may read (as ``mime.part_is_saved`` decides for a message)."""
    saved = is_attachment(part) and not mime.shown_inline(part.disposition)
    if part.multipart or part.body is not None or saved:
        return False
    return part.maintype == "text" or (part.maintype == "message" and part.subtype in _MESSAGE_TEXT)


@dataclass(frozen=True)
class Section:
    """One ``BODY.PEEK[name]`` item; ``partial`` ones are fetched as ``<0.N>``."""

    name: str
    partial: bool = False


def text_sections(root: Part | None, *, max_parts: int = MAX_TEXT_PARTS) -> tuple[Section, ...]:
    """The sections that hold the readable text of a mail, in reading order.

    For each readable leaf its MIME header (when it has one of its own) and its content;
    for each attached message its header. Attachments and pictures are never fetched.
    ``root`` None (a BODYSTRUCTURE that could not be read) falls back to the start of
    the whole body, ``TEXT``.
    """
    if root is None:
        return (Section("TEXT", partial=True),)
    found: list[Section] = []
    parts = 0

    def visit(part: Part) -> None:
        nonlocal parts
        if part.multipart:
            for child in part.children:
                visit(child)
        elif part.body is not None:
            if part.header_section:
                found.append(Section(part.header_section))
            visit(part.body)
        elif _readable(part) and parts < max_parts:
            parts += 1
            if part.mime_section:
                found.append(Section(part.mime_section))
            found.append(Section(part.section, partial=True))

    visit(root)
    return tuple(found)


# -- rebuilding the message -----------------------------------------------------------------
def rebuild(header: bytes, root: Part | None, fetched: Mapping[str, bytes]) -> bytes:
    """A MIME message of ``header`` and the parts in ``fetched`` (section name → bytes).

    Parts not in ``fetched`` are written with headers made from the structure and no
    content, so the message keeps its shape (is it multipart/report? where is the
    HTML alternative? is there an attachment?) at no cost. With ``fetched`` empty the
    result is the skeleton rules and guards can decide on.
    """
    head = _header_block(header)
    if root is None:
        return head + fetched.get("TEXT", b"")
    return head + _body(root, fetched, _boundary_in(header))


def _body(root: Part, fetched: Mapping[str, bytes], boundary: str | None) -> bytes:
    """The body of a message whose header is already written (declaring ``boundary``)."""
    if root.multipart:
        boundary = boundary or root.param("boundary") or _new_boundary()
        return _multipart_body(root, fetched, boundary)
    if _is_message(root):  # the whole mail is a message/rfc822
        return _message_content(root, fetched)
    return fetched.get(root.section, b"")


def _is_message(part: Part) -> bool:
    return part.body is not None or part.header_section is not None


def _message_content(part: Part, fetched: Mapping[str, bytes]) -> bytes:
    """The attached message of a message/rfc822 part: its header, then its body."""
    inner = fetched.get(part.header_section or "")
    if inner is None:
        return b""
    content = _header_block(inner)
    if part.body is not None:
        content += _body(part.body, fetched, _boundary_in(inner))
    return content


def _multipart_body(part: Part, fetched: Mapping[str, bytes], boundary: str) -> bytes:
    delimiter = b"--" + boundary.encode("ascii", "replace")
    out = []
    for child in part.children:
        out += [delimiter, _CRLF, _entity(child, fetched), _CRLF]
    out += [delimiter, b"--", _CRLF]
    return b"".join(out)


def _entity(part: Part, fetched: Mapping[str, bytes]) -> bytes:
    """A child of a multipart: its header block, then its content."""
    if part.multipart:
        boundary = part.param("boundary") or _new_boundary()
        params = ((k, v) for k, v in part.params if k != "boundary")
        header = _make_header(part, extra_params=(*params, ("boundary", boundary)))
        return header + _multipart_body(part, fetched, boundary)
    if _is_message(part):  # message/rfc822
        return _make_header(part) + _message_content(part, fetched)
    own = fetched.get(part.mime_section or "")
    header = _header_block(own) if own else _make_header(part, with_encoding=True)
    return header + fetched.get(part.section, b"")


def _header_block(header: bytes) -> bytes:
    """``header`` ending in exactly one blank line (a header cut short loses its last line)."""
    header = header.rstrip(b"\r\n")
    if not header:
        return _CRLF
    return header.replace(b"\r\n", b"\n").replace(b"\n", _CRLF) + _CRLF + _CRLF


def _boundary_in(header: bytes) -> str | None:
    try:
        parsed = BytesHeaderParser(policy=compat32).parsebytes(header)
        boundary = parsed.get_boundary() if parsed.get_content_maintype() == "multipart" else None
    except Exception:  # a header the stdlib cannot read: let the structure's boundary do
        return None
    return boundary or None


def _new_boundary() -> str:
    return f"=_forwarder_{secrets.token_hex(12)}"


def _make_header(
    part: Part,
    *,
    extra_params: Sequence[tuple[str, str]] | None = None,
    with_encoding: bool = False,
) -> bytes:
    params = part.params if extra_params is None else tuple(extra_params)
    lines = [f"Content-Type: {part.content_type}{_format_params(params)}"]
    if part.disposition:
        lines.append(
            f"Content-Disposition: {_safe(part.disposition)}"
            f"{_format_params(part.disposition_params)}"
        )
    if part.content_id:
        lines.append(f"Content-ID: {_safe(part.content_id)}")
    if with_encoding and part.encoding:
        lines.append(f"Content-Transfer-Encoding: {_safe(part.encoding)}")
    text = "\r\n".join(lines) + "\r\n\r\n"
    return text.encode("utf-8", "replace")


def _format_params(params: Sequence[tuple[str, str]]) -> str:
    out = []
    for key, value in params:
        if not key or not re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+", key):
            continue
        quoted = _safe(value).replace("\\", "\\\\").replace('"', '\\"')
        out.append(f'; {key}="{quoted}"')
    return "".join(out)


def _safe(text: str) -> str:
    """No line breaks or control characters may reach a header line we write."""
    return _UNSAFE_IN_HEADER.sub(" ", text)
