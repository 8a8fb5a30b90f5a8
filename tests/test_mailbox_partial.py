"""BODYSTRUCTURE → the sections to fetch → a rebuilt MIME message (pure: byte literals only).

The structures are Dovecot 2.3's answers, copied from a session, for the shapes that
matter: alternative text/HTML, a PDF attachment, a forwarded message with an inline
picture. ``tests/test_mailbox.py`` checks the same against the live server and the corpus.
"""

from __future__ import annotations

import pytest
from imapclient.response_types import BodyData

from forwarder.gateway.replies import reply_text
from forwarder.imap import bodystructure as partial
from forwarder.imap.bodystructure import Section
from forwarder.mail import Mail
from forwarder.text.transform import body_text

HEADER = (
    b"From: Alice <alice@example.org>\r\nSubject: Hello\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="outer"\r\n\r\n'
)

ALTERNATIVE = BodyData.create(
    (
        (
            b"text",
            b"plain",
            (b"charset", b"utf-8"),
            None,
            None,
            b"7bit",
            17,
            1,
            None,
            None,
            None,
            None,
        ),
        (
            b"text",
            b"html",
            (b"charset", b"utf-8"),
            None,
            None,
            b"7bit",
            13,
            1,
            None,
            None,
            None,
            None,
        ),
        b"alternative",
        (b"boundary", b"===============7677337491031715795=="),
        None,
        None,
        None,
    )
)

PDF = BodyData.create(
    (
        (
            b"text",
            b"plain",
            (b"charset", b"utf-8"),
            None,
            None,
            b"7bit",
            7,
            1,
            None,
            None,
            None,
            None,
        ),
        (
            b"application",
            b"pdf",
            None,
            None,
            None,
            b"base64",
            25_000_000,
            None,
            (b"attachment", (b"filename", b"report.pdf")),
            None,
            None,
        ),
        b"mixed",
        (b"boundary", b"outer"),
        None,
        None,
        None,
    )
)

#: text/plain, a forwarded message/rfc822 (itself multipart/alternative), an inline PNG.
FORWARDED = BodyData.create(
    (
        (
            b"text",
            b"plain",
            (b"charset", b"utf-8"),
            None,
            None,
            b"7bit",
            11,
            1,
            None,
            None,
            None,
            None,
        ),
        (
            b"message",
            b"rfc822",
            None,
            None,
            None,
            b"8bit",
            464,
            (
                None,
                b"inner",
                ((None, None, b"x", b"y.z"),),
                None,
                None,
                None,
                None,
                None,
                None,
                None,
            ),
            (
                (
                    b"text",
                    b"plain",
                    (b"charset", b"utf-8"),
                    None,
                    None,
                    b"7bit",
                    12,
                    1,
                    None,
                    None,
                    None,
                    None,
                ),
                (
                    b"text",
                    b"html",
                    (b"charset", b"utf-8"),
                    None,
                    None,
                    b"7bit",
                    14,
                    1,
                    None,
                    None,
                    None,
                    None,
                ),
                b"alternative",
                (b"boundary", b"inner-b"),
                None,
                None,
                None,
            ),
            20,
            None,
            (b"attachment", None),
            None,
            None,
        ),
        (
            b"image",
            b"png",
            None,
            b"<img1@x>",
            None,
            b"base64",
            58,
            None,
            (b"inline", (b"filename", b"p.png")),
            None,
            None,
        ),
        b"mixed",
        (b"boundary", b"outer"),
        None,
        None,
        None,
    )
)

SINGLE = BodyData.create(
    (b"text", b"plain", (b"charset", b"utf-8"), None, None, b"7bit", 6, 1, None, None, None, None)
)


def test_alternative_fetches_both_text_and_html_with_their_mime_headers() -> None:
    root = partial.parse_bodystructure(ALTERNATIVE)
    assert root.multipart and root.subtype == "alternative"
    assert [c.content_type for c in root.children] == ["text/plain", "text/html"]
    assert partial.text_sections(root) == (
        Section("1.MIME"),
        Section("1", partial=True),
        Section("2.MIME"),
        Section("2", partial=True),
    )


def test_a_single_part_mail_fetches_the_start_of_its_text_only() -> None:
    root = partial.parse_bodystructure(SINGLE)
    assert partial.text_sections(root) == (Section("TEXT", partial=True),)
    raw = partial.rebuild(b"Subject: x\r\n\r\n", root, {"TEXT": b"body"})
    assert raw == b"Subject: x\r\n\r\nbody"


def test_an_attachment_is_never_fetched_but_is_known() -> None:
    root = partial.parse_bodystructure(PDF)
    assert partial.text_sections(root) == (Section("1.MIME"), Section("1", partial=True))
    assert partial.has_attachment(root)
    pdf = root.children[1]
    assert partial.is_attachment(pdf) and pdf.size == 25_000_000 and pdf.filename == "report.pdf"


def test_a_forwarded_message_is_opened_and_the_picture_left_alone() -> None:
    root = partial.parse_bodystructure(FORWARDED)
    forwarded = root.children[1]
    assert forwarded.header_section == "2.HEADER"
    assert forwarded.body is not None and forwarded.body.subtype == "alternative"
    assert [c.section for c in forwarded.body.children] == ["2.1", "2.2"]
    assert partial.text_sections(root) == (
        Section("1.MIME"),
        Section("1", partial=True),
        Section("2.HEADER"),
        Section("2.1.MIME"),
        Section("2.1", partial=True),
        Section("2.2.MIME"),
        Section("2.2", partial=True),
    )
    assert partial.has_attachment(root)  # the named PNG counts, as in Mail.has_attachment


def test_rebuilt_message_reads_like_the_original() -> None:
    root = partial.parse_bodystructure(FORWARDED)
    fetched = {
        "1.MIME": b'Content-Type: text/plain; charset="utf-8"\r\n\r\n',
        "1": b"see below",
        "2.HEADER": (
            b"From: x@y.z\r\nSubject: inner\r\nMIME-Version: 1.0\r\n"
            b'Content-Type: multipart/alternative; boundary="inner-b"\r\n\r\n'
        ),
        "2.1.MIME": b'Content-Type: text/plain; charset="utf-8"\r\n\r\n',
        "2.1": b"inner text",
        "2.2.MIME": b'Content-Type: text/html; charset="utf-8"\r\n\r\n',
        "2.2": b"<b>inner</b>",
    }
    mail = Mail(
        partial.rebuild(HEADER, root, fetched), attachment_hint=partial.has_attachment(root)
    )
    message = mail.message
    assert message.get_content_type() == "multipart/mixed"
    assert [p.get_content_type() for p in message.walk()] == [
        "multipart/mixed",
        "text/plain",
        "message/rfc822",
        "multipart/alternative",
        "text/plain",
        "text/html",
        "image/png",
    ]
    assert body_text(message) == "see below"
    picture = message.get_payload()[2]
    assert picture["Content-ID"] == "<img1@x>" and picture.get_filename() == "p.png"
    assert picture.get_payload() == ""
    assert "inner text" in reply_text(message).quoted


def test_the_skeleton_keeps_the_shape_without_any_text() -> None:
    """Rules and guards decide on it: multipart/report, attachments, no fetch of the body."""
    root = partial.parse_bodystructure(ALTERNATIVE)
    header = b'Content-Type: multipart/alternative; boundary="b"\r\nSubject: s\r\n\r\n'
    mail = Mail(partial.rebuild(header, root, {}))
    assert mail.message.is_multipart()
    assert [p.get_content_type() for p in mail.message.get_payload()] == ["text/plain", "text/html"]
    assert body_text(mail.message) == ""


def test_the_header_boundary_wins_over_the_structure() -> None:
    """The top header is the server's bytes: its boundary is the one the parser will use."""
    root = partial.parse_bodystructure(ALTERNATIVE)  # its structure says another boundary
    header = b'Content-Type: multipart/alternative; boundary="from-header"\r\n\r\n'
    raw = partial.rebuild(header, root, {"1": b"text"})
    assert b"--from-header\r\n" in raw and raw.endswith(b"--from-header--\r\n")
    assert body_text(Mail(raw).message) == "text"


def test_an_unreadable_structure_falls_back_to_the_start_of_the_body() -> None:
    assert partial.text_sections(None) == (Section("TEXT", partial=True),)
    assert partial.rebuild(b"Subject: x\r\n", None, {"TEXT": b"hi"}) == b"Subject: x\r\n\r\nhi"


@pytest.mark.parametrize("bad", [(), (b"text",), "text/plain"])
def test_strange_structures_raise_structure_error(bad: object) -> None:
    with pytest.raises(partial.StructureError):
        partial.parse_bodystructure(bad)  # type: ignore[arg-type]


def test_header_values_from_the_server_cannot_inject_lines() -> None:
    evil = BodyData.create(
        (
            (
                b"application",
                b"pdf",
                (b"name", b'a"\r\nBcc: x@evil'),
                None,
                None,
                b"base64",
                5,
                None,
                None,
                None,
            ),
            (b"text", b"plain", None, None, None, b"7bit", 1, 1, None, None, None, None),
            b"mixed",
            (b"boundary", b"o"),
            None,
            None,
            None,
        )
    )
    raw = partial.rebuild(HEADER, partial.parse_bodystructure(evil), {})
    assert b"\r\nBcc:" not in raw
    assert Mail(raw).message.get_payload()[0].get_param("name") == 'a"  Bcc: x@evil'


def test_at_most_max_text_parts_are_fetched() -> None:
    leaf = (b"text", b"plain", None, None, None, b"7bit", 1, 1, None, None, None, None)
    many = BodyData.create((*(leaf for _ in range(20)), b"mixed", None, None, None, None))
    sections = partial.text_sections(partial.parse_bodystructure(many))
    assert len([s for s in sections if s.partial]) == partial.MAX_TEXT_PARTS


# -- shapes the extcorpus met on a live Dovecot --------------------------------------------------

#: A mail that is a message/rfc822 as a whole (ticket systems, some "forward as attachment").
WHOLE_MESSAGE = BodyData.create(
    (
        b"message",
        b"rfc822",
        None,
        None,
        None,
        b"7bit",
        120,
        (None, b"inner", None, None, None, None, None, None, None, None),
        (
            b"text",
            b"plain",
            (b"charset", b"utf-8"),
            None,
            None,
            b"7bit",
            10,
            1,
            None,
            None,
            None,
            None,
        ),
        4,
        None,
        None,
        None,
        None,
    )
)


def test_a_mail_that_is_a_message_rfc822_is_fetched_by_part_1() -> None:
    """RFC 3501 §6.4.5: its body is part 1, the attached message's header 1.HEADER.  The
    sections were once TEXT.HEADER and TEXT.TEXT, which Dovecot answers with BAD for the
    whole FETCH: the mail was never read, and neither was any mail batched with it."""
    root = partial.parse_bodystructure(WHOLE_MESSAGE)
    assert partial.text_sections(root) == (Section("1.HEADER"), Section("1.TEXT", partial=True))
    fetched = {"1.HEADER": b"Subject: inner\r\nFrom: a@b.c\r\n\r\n", "1.TEXT": b"inner text"}
    header = b"Subject: outer\r\nContent-Type: message/rfc822\r\n\r\n"
    assert body_text(Mail(partial.rebuild(header, root, fetched)).message) == "inner text"


def test_a_part_whose_type_the_server_could_not_read_is_plain_text() -> None:
    """ "Content-Type: text" (no subtype): Dovecot answers an empty type; RFC 2045 §5.2 and
    the transformer read it as text/plain, so it is fetched."""
    untyped = BodyData.create(
        (b"", b"", None, None, None, b"quoted-printable", 34, None, None, None, None)
    )
    root = partial.parse_bodystructure(untyped)
    assert (root.content_type, root.encoding) == ("text/plain", "quoted-printable")
    assert partial.text_sections(root) == (Section("TEXT", partial=True),)


def test_the_first_fragment_of_a_split_message_is_fetched() -> None:
    fragment = BodyData.create(
        (
            b"message",
            b"partial",
            (b"id", b"x@y", b"number", b"1", b"total", b"2"),
            None,
            None,
            b"7bit",
            300,
            None,
            None,
            None,
            None,
        )
    )
    root = partial.parse_bodystructure(fragment)
    assert partial.text_sections(root) == (Section("TEXT", partial=True),)
