"""Mail shapes that once read differently, or not at all, when fetched part by part.

Against a real Dovecot: its BODYSTRUCTURE, the sections forwarder asks for, and the
message rebuilt from them must read as the whole mail does.
"""

from __future__ import annotations

import base64

import pytest

from forwarder.config import ImapConfig
from forwarder.configfile.schema import Secret
from forwarder.imap.connection import Mailbox
from forwarder.mail import Mail

INNER = (
    b"From: Alice <alice@example.org>\r\nSubject: inner\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n\r\nThe server room is on fire.\r\n"
)
SHAPES = {
    "a whole message/rfc822": (
        b"From: tickets@example.org\r\nSubject: ticket 7\r\nContent-Type: message/rfc822\r\n\r\n"
        + INNER
    ),
    "message/rfc822 sent base64": (
        b"From: tickets@example.org\r\nSubject: ticket 8\r\nContent-Type: message/rfc822\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(INNER)
    ),
    "Content-Type without a subtype": (
        b"From: a@example.org\r\nSubject: untyped\r\nContent-Type: text; charset=iso-8859-1\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\nLiebe Gr=FC=DFe\r\n"
    ),
    "the first fragment of a split message": (
        b"From: a@example.org\r\nSubject: split\r\n"
        b'Content-Type: message/partial; id="s@example.org"; number=1; total=2\r\n\r\n' + INNER
    ),
}


@pytest.mark.parametrize("raw", SHAPES.values(), ids=SHAPES.keys())
def test_fetched_part_by_part_it_reads_as_the_whole_mail(imap_user, raw: bytes) -> None:
    uid = imap_user.server.append(imap_user.user, "INBOX", raw)
    config = ImapConfig(
        host=imap_user.host,
        port=imap_user.port,
        security="plain",
        username=imap_user.user,
        password=Secret(imap_user.password),
        timeout=5,
    )
    with Mailbox(config) as mailbox:
        state = mailbox.select("INBOX")
        (mail,) = mailbox.fetch([uid], "INBOX", state.uidvalidity)
    whole = Mail(raw)
    assert whole.body  # the shape has text to read, so the comparison can fail
    assert (mail.body, mail.subject) == (whole.body, whole.subject)
