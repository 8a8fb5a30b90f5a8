"""What cannot be read as it stands is decoded, or said in a note: never shown as its bytes.

Each case is a mail shape met in the extcorpus (``../shared/extcorpus``) or by the fuzzer,
written out here so that the project's own tests hold it.
"""

from __future__ import annotations

import base64
import binascii
import quopri
from datetime import UTC, datetime

import pytest

from forwarder.imap import bodystructure
from forwarder.mail import Mail
from forwarder.text import mime
from forwarder.text.smstext import SmsOptions
from forwarder.text.transform import render
from tests.support.residue import residue

NOW = datetime(2024, 11, 25, 12, 0, tzinfo=UTC)
INNER = (
    b"From: Alice <alice@example.org>\r\n"
    b"Subject: inner\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n\r\n"
    b"The server room is on fire.\r\n"
)


def mail(headers: str, body: bytes | str) -> Mail:
    raw = headers.strip().replace("\n", "\r\n").encode() + b"\r\n\r\n"
    return Mail(raw + (body.encode() if isinstance(body, str) else body))


def body(m: Mail) -> str:
    return m.body


def sms(m: Mail) -> str:
    return render(m, SmsOptions(), now=NOW).text


def b64_lines(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", b"\r\n")


# -- attached messages sent with a transfer encoding -------------------------------------------


@pytest.mark.parametrize(
    "encode",
    [b64_lines, quopri.encodestring],
    ids=["base64", "quoted-printable"],
)
def test_an_encoded_message_rfc822_is_decoded_and_read(encode) -> None:
    m = mail(
        "Subject: fwd\nContent-Type: message/rfc822\nContent-Transfer-Encoding: "
        + ("base64" if encode is b64_lines else "quoted-printable"),
        encode(INNER),
    )
    assert body(m) == "The server room is on fire."
    (inner,) = m.message.get_payload()
    assert inner["Subject"] == "inner"


def test_an_encoded_message_inside_an_encoded_message_is_opened_too() -> None:
    middle = (
        b"Subject: middle\r\nContent-Type: message/rfc822\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n"
    )
    m = mail(
        "Subject: outer\nContent-Type: message/rfc822\nContent-Transfer-Encoding: base64",
        b64_lines(middle + b64_lines(INNER)),
    )
    assert body(m) == "The server room is on fire."


def test_an_encoded_attached_message_counts_its_attachments() -> None:
    inner = (
        b'Content-Type: multipart/mixed; boundary="b"\r\n'
        b"\r\n--b\r\nContent-Type: text/plain\r\n\r\n"
        b"see the file\r\n--b\r\nContent-Type: image/gif; name=a.gif\r\n\r\nGIF89a\r\n--b--\r\n"
    )
    m = mail(
        "Subject: fwd\nContent-Type: message/rfc822\nContent-Transfer-Encoding: base64",
        b64_lines(inner),
    )
    assert body(m) == "see the file"
    assert m.has_attachment


# -- what has no text: notes -------------------------------------------------------------------


def test_a_later_fragment_of_a_split_message_is_a_note() -> None:
    m = mail(
        'Subject: photo\nContent-Type: message/partial; id="abc@mit.edu"; number=2; total=3',
        "nlzNO8mVGVkbzXm8W55Zaellt0KqRv0ysF6H9+olv3MeCXGGNcLkE/umQQSd3uEaafJgrL1T\r\n" * 5,
    )
    assert body(m) == "[part 2 of 3 of a split message]"


def test_a_fragment_without_a_total_is_a_note_without_it() -> None:
    m = mail('Subject: x\nContent-Type: message/partial; id="a"; number=4', "AAAA\r\n")
    assert body(m) == "[part 4 of a split message]"


def test_the_first_fragment_of_a_split_message_is_read() -> None:
    """RFC 2046 §5.2.2: the first fragment carries the message's header and its start."""
    m = mail('Subject: x\nContent-Type: message/partial; id="a"; number=1; total=2', INNER)
    assert body(m) == "The server room is on fire."


def test_a_compressed_body_is_a_note() -> None:
    m = mail(
        "Subject: sig\nContent-Type: text/plain\nContent-Transfer-Encoding: x-gzip64",
        "H4sIAJ+A5jIAA0VPTWvDMAy9+1e8nbpCsS877bRS1vayXdJDDwURbJEEEqez\r\n",
    )
    assert body(m) == "[compressed message]"


def test_pgp_mime_is_a_note() -> None:
    m = mail(
        'Subject: secret\nContent-Type: multipart/encrypted; protocol="application/pgp-encrypted";'
        ' boundary="b"',
        "--b\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n"
        "--b\r\nContent-Type: application/octet-stream\r\n\r\n-----BEGIN PGP MESSAGE-----\r\n"
        "hF4DR2b2udXyHrYSAQdAaeIg60NLGEEqeARW\r\n-----END PGP MESSAGE-----\r\n--b--\r\n",
    )
    assert body(m) == "[encrypted message]"


@pytest.mark.parametrize(
    ("smime_type", "note"),
    [("enveloped-data", "[encrypted message]"), ("signed-data", "[signed message]")],
)
def test_s_mime_is_a_note(smime_type: str, note: str) -> None:
    m = mail(
        f"Subject: x\nContent-Type: application/pkcs7-mime; smime-type={smime_type};"
        ' name="smime.p7m"\nContent-Transfer-Encoding: base64',
        b64_lines(bytes(range(256))),
    )
    assert body(m) == note


def test_inline_openpgp_is_a_note_and_the_text_around_it_stays() -> None:
    m = mail(
        "Subject: x",
        "Hi Bob,\r\n-----BEGIN PGP MESSAGE-----\r\n\r\nhF4DR2b2udXyHrYSAQdAaeIg60NLGEEqeARW/qHm\r\n"
        "OjHOx+RjP0c2g3w0RLHdc4HQuUYH25mrPo+bNkSF\r\n"
        "=Xo3L\r\n-----END PGP MESSAGE-----\r\nAlice\r\n",
    )
    assert body(m) == "Hi Bob,\n[encrypted message]\nAlice"


def test_inline_openpgp_cut_by_a_partial_fetch_is_a_note() -> None:
    m = mail("Subject: x", "-----BEGIN PGP MESSAGE-----\r\n\r\nhF4DR2b2udXyHrYSAQdAaeIg60NLGE")
    assert body(m) == "[encrypted message]"


def test_a_clear_signed_text_is_read_without_its_armour() -> None:
    m = mail(
        "Subject: x",
        "-----BEGIN PGP SIGNED MESSAGE-----\r\nHash: SHA256\r\n\r\nThe backup failed.\r\n"
        "- -- not a signature separator\r\n-----BEGIN PGP SIGNATURE-----\r\n\r\n"
        "iQEzBAEBCAAdFiEEfLnSLI+TKOHcEuuYKkZVUO3l4LcFAl4wq5UACgkQKkZVUO3l\r\n"
        "-----END PGP SIGNATURE-----\r\n",
    )
    assert body(m) == "The backup failed.\n-- not a signature separator"


def test_a_pem_block_is_named_not_shown() -> None:
    m = mail(
        "Subject: your certificate",
        "Here it is:\r\n-----BEGIN CERTIFICATE-----\r\n"
        "MIIDdzCCAl+gAwIBAgIEAgAAuTANBgkqhkiG9w0BAQUFADBaMQswCQYDVQQGEwJJ\r\n"
        "-----END CERTIFICATE-----\r\n",
    )
    assert body(m) == "Here it is:\n[certificate]"


def test_a_uuencoded_file_in_the_text_is_a_note() -> None:
    encoded = binascii.b2a_uu(b"GIF89a" + bytes(range(39))).decode()
    m = mail("Subject: logo", f"The logo:\r\nbegin 644 up.gif\r\n{encoded}`\r\nend\r\nBye\r\n")
    assert body(m) == "The logo:\n[attachment up.gif]\nBye"


def test_a_text_part_sent_x_uuencode_is_decoded() -> None:
    encoded = binascii.b2a_uu(b"Disk full on db1").decode()
    m = mail(
        "Subject: alert\nContent-Type: text/plain\nContent-Transfer-Encoding: x-uuencode",
        f"begin 644 alert.txt\r\n{encoded}`\r\nend\r\n",
    )
    assert body(m) == "Disk full on db1"


def test_lines_of_base64_left_in_a_text_are_a_note() -> None:
    run = base64.b64encode(bytes(range(200))).decode()
    lines = "\r\n".join(run[i : i + 76] for i in range(0, len(run), 76))
    m = mail("Subject: x", f"Key below.\r\n{lines}\r\nCall me.\r\n")
    assert body(m) == "Key below.\n[encoded data]\nCall me."


# -- transfer encodings the part does not declare ----------------------------------------------


def test_undeclared_quoted_printable_is_decoded() -> None:
    m = mail(
        "Subject: x\nContent-Type: text/plain; charset=UTF-8\nContent-Transfer-Encoding:",
        "Move =E2=99=9A to =E2=99=9B's =E2=99=9D\r\n",
    )
    assert body(m) == "Move ♚ to ♛'s ♝"


def test_undeclared_quoted_printable_in_a_link_is_decoded() -> None:
    m = mail("Subject: x", "http://example.com/?aid=3D13&stat=3D4327\r\n")
    assert body(m) == "http://example.com/?aid=13&stat=4327"


@pytest.mark.parametrize(
    "text",
    [
        "x=3D is how = is written\r\n",  # a "=" quoted-printable would have encoded
        "==========\r\nTotal=E2=99=9A\r\n",  # a ruler: "==" is never quoted-printable
        "a=b, c=d\r\n",
        "2+2=4\r\n",
    ],
)
def test_text_that_only_looks_like_quoted_printable_is_left_alone(text: str) -> None:
    assert body(mail("Subject: x", text)) == text.strip().replace("\r\n", "\n")


def test_undeclared_base64_text_is_decoded() -> None:
    text = "we have a lot of binary stuff in here, and then some more text"
    m = mail(
        "Subject: x\nContent-Type: text/plain\nContent-Transfer-Encoding: binary",
        b64_lines(text.encode()),
    )
    assert body(m) == text


def test_text_that_is_base64_but_for_one_character_is_left_alone() -> None:
    """Found by the fuzzer: the base64 test once backtracked exponentially on such a text
    (a run of its alphabet, then a character outside it): this case would not finish."""
    text = "A" * 40 + "b1" * 25 + "!"
    assert mime.sniff_transfer_encoding(text.encode()) == "identity"
    assert body(mail("Subject: x", text)) == text


def test_base64_of_bytes_that_are_not_text_is_a_note() -> None:
    m = mail(
        "Subject: x\nContent-Type: text/plain\nContent-Transfer-Encoding: base64",
        b64_lines(bytes(range(256)) * 4),
    )
    assert body(m) == "[binary data]"


def test_utf16_under_a_wrong_label_is_text_not_binary() -> None:
    m = mail(
        "Subject: x\nContent-Type: text/plain; charset=BadCharset\n"
        "Content-Transfer-Encoding: base64",
        b64_lines("abcdefghijklm\r\nnopqrstuvwxyz".encode("utf-16-be")),
    )
    assert body(m) == "abcdefghijklm\nnopqrstuvwxyz"


def test_iso_2022_jp_escapes_are_text_not_binary() -> None:
    m = mail(
        "Subject: x\nContent-Type: text/plain; charset=iso-2022-jp\n"
        "Content-Transfer-Encoding: base64",
        b64_lines("会議は明日の十時です。".encode("iso-2022-jp")),
    )
    assert body(m) == "会議は明日の十時です。"


# -- markup sent as plain text -----------------------------------------------------------------


def test_html_later_in_a_plain_text_is_converted() -> None:
    m = mail(
        "Subject: x\nContent-Type: text/plain",
        "Use the View Invoices function.<br>\r\n"
        "<br>\r\nPlease do not reply.<br>\r\n</font></p>\r\n",
    )
    assert body(m) == "Use the View Invoices function.\nPlease do not reply."


def test_a_style_element_in_a_plain_text_is_dropped() -> None:
    m = mail(
        "Subject: x\nContent-Type: text/plain",
        "<style>\r\nbody { font-size: 11pt; }\r\n</style>\r\nType text here\r\nSecond line\r\n",
    )
    assert body(m) == "Type text here\nSecond line"


def test_an_xml_document_after_a_plain_text_is_dropped() -> None:
    m = mail(
        "Subject: x",
        'Best\r\nSee you at ten<?xml version="1.0" encoding="UTF-8"?>\r\n'
        '<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/x.dtd">\r\n'
        '<plist version="1.0">\r\n<dict>\r\n</dict>\r\n</plist>',
    )
    assert body(m) == "Best\nSee you at ten"


def test_one_angle_bracketed_word_is_not_taken_for_html() -> None:
    text = "Wrap it in <b> and you are done, x<y."
    assert body(mail("Subject: x", text)) == text


# -- broken headers ----------------------------------------------------------------------------


def test_a_continuation_line_without_indent_stays_in_the_header() -> None:
    """A news archive or a hand-wrapped Exchange header: the stdlib would end the header at
    the unindented line and read the rest, Content-Type included, as the body."""
    m = mail(
        "From: Ferenc <f@example.org>\nReceived: from unknown (HELO lists.php.net)\n"
        "by localhost with SMTP; 19 Nov 2014 08:46:08 -0000\nSubject: Re: constructors\n"
        "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable",
        "caf=C3=A9\r\n",
    )
    assert (m.sender[0], m.subject, body(m)) == ("Ferenc", "Re: constructors", "café")
    # The header read alone (Mail.head) and the parsed message agree on every field.
    assert [m.head.get_all(name) for name in m.message] == [
        m.message.get_all(name) for name in m.message
    ]


def test_a_body_without_a_blank_line_before_it_stays_the_body() -> None:
    m = Mail(b"Subject: hi\r\nHello there,\r\nsee you\r\n")
    assert m.subject == "hi" and "see you" in body(m)


def test_a_boundary_right_after_the_header_starts_the_body() -> None:
    m = Mail(
        b'Content-Type: multipart/mixed; boundary="b"\r\nSubject: hi\r\n--b\r\n'
        b"Content-Type: text/plain\r\n\r\nhello\r\n--b--\r\n"
    )
    assert (m.subject, body(m)) == ("hi", "hello")


# -- one attachment predicate -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "disposition", "named", "attachment"),
    [
        ("application/pdf", "attachment", True, True),
        ("text/plain", "attachment", False, True),
        ("image/png", "inline", True, True),  # a picture shown inline is still a file
        ("text/plain", "inline", True, True),  # Thunderbird attaches a .txt this way
        ("text/plain", None, True, True),
        ("text/plain", "inline", False, False),
        ("text/plain", None, False, False),
        ("multipart/mixed", None, True, False),
        ("multipart/mixed", "attachment", False, True),
    ],
)
def test_one_attachment_predicate_for_the_message_and_for_bodystructure(
    content_type: str, disposition: str | None, named: bool, attachment: bool
) -> None:
    assert mime.is_attachment(content_type, disposition, named) is attachment
    maintype, subtype = content_type.split("/")
    part = bodystructure.Part(
        maintype=maintype,
        subtype=subtype,
        section="1",
        params=(("name", "f.txt"),) if named else (),
        disposition=disposition,
    )
    assert bodystructure.is_attachment(part) is attachment
    headers = f"Content-Type: {content_type}" + ('; name="f.txt"' if named else "")
    if disposition:
        headers += f"\nContent-Disposition: {disposition}"
    message = mail(headers, "x").message
    assert mime.part_is_attachment(message) is attachment


def test_a_named_inline_text_is_an_attachment_and_read_as_body() -> None:
    m = mail(
        'Subject: x\nContent-Type: multipart/mixed; boundary="b"',
        "--b\r\nContent-Type: text/plain\r\n\r\nSee the notes.\r\n--b\r\n"
        'Content-Type: text/plain; name="notes.txt"\r\n'
        'Content-Disposition: inline; filename="notes.txt"'
        "\r\n\r\nDisk 3 is failing.\r\n--b--\r\n",
    )
    assert m.has_attachment
    assert body(m) == "See the notes.\nDisk 3 is failing."


# -- the result reads as text --------------------------------------------------------------------


def test_the_residue_detector_finds_each_kind() -> None:
    run = base64.b64encode(bytes(range(60))).decode()
    found = {
        kind
        for kind, _ in residue(
            f"{run}\nMove =E2=99=9A\n"
            "M1TE&.#=A$P'3'*$''/___P'''(\"'@,#'P\"P'''''$P'3'''\"1X2/F<'MSTQ0\n"
            "a<br>b &amp; p { margin: 0; }"
        )
    }
    assert found == {"base64", "quoted-printable", "uuencode", "html tag", "html entity", "css"}


@pytest.mark.parametrize(
    "text",
    [
        "Changeset c11fe7c58837ebf4266357d1f31896c7cc4a49b9 in netwerk/base/nsIOService.cpp",
        "Send to 1EHbEvWFkR3oY93EKym1bweaWUW2PKe6v9 by Friday",
        "--0123456789abcdefghijklmnopqrstuvwxyzABCDEFLMNOPRSTUVWXYZ'()+_,-./:=?",
        "Tim <tim@example.com> wrote: a < b and x=2",
        "=========================\n2+2=4",
    ],
)
def test_the_residue_detector_passes_ordinary_text(text: str) -> None:
    assert residue(text) == []


def test_notes_survive_into_the_sms() -> None:
    m = mail(
        "From: Bob <bob@example.org>\nSubject: secret\n"
        "Content-Type: multipart/encrypted; boundary=b",
        "--b--",
    )
    assert sms(m) == "Bob: secret\n[encrypted message]"


# -- found by the fuzzer (tests/test_fuzz_mail.py) -------------------------------------------------


@pytest.mark.parametrize(
    "word", ["=?UTF7?B?KzI0QQ0?=", "=?utf-7?Q?+2D0-?=", "=?utf-7?Q?a+2AA-b?="], ids=str
)
def test_a_lone_surrogate_spelt_in_utf7_never_reaches_a_header(word: str) -> None:
    """UTF-7 can spell half a surrogate pair; SQLite refuses such a Subject or sender name
    in the outbox row (UnicodeEncodeError), and the mail could never be queued."""
    m = mail(f"From: {word} <a@example.org>\nSubject: {word}\nTo: {word} <b@example.org>", "hi")
    for text in (m.subject, *m.sender, *m.addresses("To")[0]):
        text.encode("utf-8")


def test_a_lone_surrogate_spelt_in_a_utf7_body_is_dropped() -> None:
    m = mail("Subject: x\nContent-Type: text/plain; charset=utf-7", "left +2AA- right")
    assert body(m) == "left right"
    assert mime.decode_bytes(b"+2AA-", "utf-7") == ""
