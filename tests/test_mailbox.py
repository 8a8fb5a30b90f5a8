"""The IMAP edge against a real Dovecot: partial fetch, flags, TLS, errors, timeouts, IDLE."""

from __future__ import annotations

import contextlib
import dataclasses
import email.policy
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from forwarder.configfile.schema import Secret
from forwarder.imap.connection import (
    AuthError,
    CertificateError,
    ConnectionLost,
    FolderMissing,
    Mailbox,
    MailboxError,
)
from forwarder.mail import Mail
from forwarder.text.transform import body_text
from tests.support.configs import imap_config, write_config
from tests.support.daemonproc import DaemonProcess
from tests.support.servers import LOOPBACK
from tests.support.servers.dovecot import find_binary
from tests.support.servers.mails import make_mail
from tests.support.shared import shared_dir

BIG_ATTACHMENT = 19 * 1024 * 1024  # bytes of PDF: about 25 MB once base64-encoded


class CountingProxy:
    """A TCP relay in front of an IMAP server that counts the bytes sent to the client:
    what a fetch really costs on the wire, whatever the client believes it asked for."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.received = 0
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener = socket.create_server((LOOPBACK, 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection((LOOPBACK, self.target))
            with self._lock:
                self._sockets += [client, upstream]
            for args in ((client, upstream, False), (upstream, client, True)):
                threading.Thread(target=self._pump, args=args, daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, count: bool) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if count:
                    with self._lock:
                        self.received += len(data)
                sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)


@pytest.fixture
def proxy(imap_user) -> Iterator[CountingProxy]:
    relay = CountingProxy(imap_user.port)
    yield relay
    relay.close()


def big_mail(text: str = "The quarterly report is attached.") -> bytes:
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = "Finance <finance@example.org>"
    msg["To"] = "bob@example.net"
    msg["Subject"] = "URGENT: report"
    msg["Message-ID"] = "<big@test.forwarder.invalid>"
    msg.set_content(text)
    msg.add_alternative(f"<html><body><p>{text}</p></body></html>", subtype="html")
    msg.add_attachment(
        os.urandom(BIG_ATTACHMENT), maintype="application", subtype="pdf", filename="report.pdf"
    )
    return msg.as_bytes()


# -- partial fetch ----------------------------------------------------------------------------
def test_every_corpus_mail_reads_the_same_fetched_partially(imap_user) -> None:
    """The rebuilt message has the body and attachment verdict of the whole mail."""
    files = sorted((shared_dir() / "corpus").rglob("*.eml"))
    assert files
    server, user = imap_user.server, imap_user.user
    source = {server.append(user, "INBOX", path.read_bytes()): path for path in files}
    # Large enough that no text part is cut: the comparison is then exact.
    with Mailbox(imap_config(imap_user, fetch_bytes=1 << 20)) as mailbox:
        state = mailbox.select("INBOX")
        mails = mailbox.fetch(sorted(source), "INBOX", state.uidvalidity)
    assert len(mails) == len(files)
    different = []
    for mail in mails:
        whole = Mail(source[mail.uid].read_bytes())
        if (body_text(mail.message), mail.has_attachment) != (
            body_text(whole.message),
            whole.has_attachment,
        ):
            different.append(source[mail.uid].name)
    assert different == []


def test_a_25_mb_mail_with_a_pdf_costs_kilobytes(imap_user, proxy) -> None:
    raw = big_mail()
    uid = imap_user.server.append(imap_user.user, "INBOX", raw)
    with Mailbox(imap_config(imap_user, port=proxy.port)) as mailbox:
        state = mailbox.select("INBOX")
        (summary,) = mailbox.fetch_summaries([uid], "INBOX", state.uidvalidity)
        (mail,) = mailbox.fetch_text([summary])
    assert len(raw) > 25_000_000
    assert mail.size == len(raw) and mail.has_attachment
    assert body_text(mail.message) == "The quarterly report is attached."
    assert summary.mail.raw.startswith(b"From: Finance")
    assert mailbox.fetched_bytes < 4 * 1024  # header + 2 MIME headers + 2 short texts
    assert proxy.received < 16 * 1024, f"{proxy.received} bytes came over the wire"


def test_html_after_a_long_blank_text_part_is_not_missed(imap_user) -> None:
    """BODY[TEXT]<0.N> would end inside the blank text/plain; each part is fetched on its own."""
    raw = make_mail("Alert", " \r\n" * 3000, html="<p>The disk is <b>full</b>.</p>")
    uid = imap_user.server.append(imap_user.user, "INBOX", raw)
    with Mailbox(imap_config(imap_user, fetch_bytes=4096)) as mailbox:
        state = mailbox.select("INBOX")
        (mail,) = mailbox.fetch([uid], "INBOX", state.uidvalidity)
    assert body_text(mail.message) == "The disk is full."


def test_mail_without_text_parts_costs_one_fetch(imap_user) -> None:
    msg = EmailMessage()
    msg["Subject"] = "scan"
    msg.set_content(b"\x00" * 1000, maintype="application", subtype="octet-stream")
    uid = imap_user.server.append(imap_user.user, "INBOX", msg.as_bytes())
    with Mailbox(imap_config(imap_user)) as mailbox:
        state = mailbox.select("INBOX")
        before = mailbox.commands
        (mail,) = mailbox.fetch([uid], "INBOX", state.uidvalidity)
    assert mailbox.commands - before == 1
    assert mail.subject == "scan" and body_text(mail.message) == ""


# -- flags ------------------------------------------------------------------------------------
def test_nothing_forwarder_does_sets_seen(imap_user) -> None:
    server, user = imap_user.server, imap_user.user
    uids = [server.append(user, "INBOX", make_mail(f"m{n}", html="<p>x</p>")) for n in range(3)]
    server.set_flags(user, "INBOX", [uids[2]], ["\\Seen"])
    before = server.fetch_flags(user, "INBOX")
    with Mailbox(imap_config(imap_user, keyword="$Forwarded")) as mailbox:
        state = mailbox.select("INBOX")  # read-write: a keyword is to be set
        assert not state.readonly and state.can_store("$Forwarded")
        mailbox.fetch(uids, "INBOX", state.uidvalidity)
        mailbox.add_keyword(uids[:2], "$Forwarded")
        assert {u: f - {"\\Recent"} for u, f in mailbox.flags(uids).items()} == {
            uids[0]: {"$Forwarded"},
            uids[1]: {"$Forwarded"},
            uids[2]: {"\\Seen"},
        }
    after = server.fetch_flags(user, "INBOX")
    assert {u: f - {"$Forwarded"} for u, f in after.items()} == before


def test_without_a_keyword_the_folder_is_only_examined(imap_user) -> None:
    imap_user.server.append(imap_user.user, "INBOX", make_mail())
    with Mailbox(imap_config(imap_user)) as mailbox:
        state = mailbox.select("INBOX")
    assert state.readonly and not state.can_store("$Forwarded")


def test_search_for_new_mail_filters_the_star_trap(imap_user) -> None:
    """RFC 3501 §6.4.8: UID SEARCH UID 5:* matches the highest UID even when it is 3."""
    for n in range(3):
        imap_user.server.append(imap_user.user, "INBOX", make_mail(f"m{n}"))
    with Mailbox(imap_config(imap_user)) as mailbox:
        mailbox.select("INBOX")
        assert mailbox.uids_from(4) == []
        assert mailbox.uids_from(2) == [2, 3]
        assert mailbox.highest_uid() == 3


def test_a_missing_folder_is_a_configuration_error(imap_user) -> None:
    with Mailbox(imap_config(imap_user)) as mailbox, pytest.raises(FolderMissing, match="Nope"):
        mailbox.select("Nope")


# -- connecting -------------------------------------------------------------------------------
@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_tls_with_the_test_ca(imap_user, security: str) -> None:
    port = imap_user.tls_port if security == "tls" else imap_user.port
    config = imap_config(imap_user, security=security, port=port, ca_file=str(imap_user.ca_file))
    with Mailbox(config) as mailbox:
        assert mailbox.select("INBOX").uidvalidity > 0


def test_a_certificate_from_another_ca_is_refused_clearly(imap_user) -> None:
    config = imap_config(
        imap_user,
        security="tls",
        port=imap_user.tls_port,
        ca_file=str(imap_user.server.wrong_ca_file),
    )
    with pytest.raises(CertificateError, match=r"certificate was refused .*imap\.ca_file"):
        Mailbox(config).connect()


def test_a_wrong_password_is_an_auth_error_without_the_password(imap_user) -> None:
    config = imap_config(imap_user, password=Secret("not-the-password"))
    with pytest.raises(AuthError) as raised:
        Mailbox(config).connect()
    assert "imap.password" in str(raised.value) and "not-the-password" not in str(raised.value)


def test_dns_failure_and_refusal_are_temporary(imap_user) -> None:
    with pytest.raises(MailboxError, match="cannot resolve") as raised:
        Mailbox(imap_config(imap_user, host="imap.nowhere.invalid")).connect()
    assert not isinstance(raised.value, AuthError | CertificateError)
    with socket.create_server((LOOPBACK, 0)) as closed:
        port = closed.getsockname()[1]
    with pytest.raises(MailboxError, match="cannot connect"):
        Mailbox(imap_config(imap_user, port=port)).connect()


def test_a_frozen_server_times_out_instead_of_hanging(dovecot_factory, imap_user) -> None:
    server = dovecot_factory(tls=False)
    account = dataclasses.replace(imap_user, port=server.port, server=server)
    config = imap_config(account, timeout=1)
    connected = Mailbox(config)
    connected.connect()
    server.freeze()
    try:
        for action in (lambda: connected.select("INBOX"), lambda: Mailbox(config).connect()):
            started = time.monotonic()
            with pytest.raises(MailboxError, match="timed out"):
                action()
            assert time.monotonic() - started < 3
    finally:
        connected.abort()
        server.thaw()


# -- IDLE -------------------------------------------------------------------------------------
def test_idle_announces_new_mail_and_notices_a_closed_connection(dovecot_factory, imap_user):
    server = dovecot_factory(tls=False)
    account = dataclasses.replace(imap_user, port=server.port, server=server)
    mailbox = Mailbox(imap_config(account))
    mailbox.connect()
    try:
        assert mailbox.supports_idle()
        mailbox.select("INBOX", readonly=True)
        mailbox.idle_start()
        assert mailbox.idle_wait(0.05) is False
        server.append(account.user, "INBOX", make_mail("new"))
        deadline = time.monotonic() + 5
        while not mailbox.idle_wait(0.5):
            assert time.monotonic() < deadline, "no EXISTS within 5 s"
        server.stop()
        started, calls = time.monotonic(), 0
        with pytest.raises(ConnectionLost):
            while True:
                calls += 1
                mailbox.idle_wait(2.0)
        # Found out by its early empty answers, not by waiting out each 2 s.
        assert time.monotonic() - started < 2 and calls <= 4
    finally:
        mailbox.abort()


def test_the_daemon_forwards_a_25_mb_mail_for_a_few_kilobytes(
    tmp_path: Path, imap_user, proxy, gateway
) -> None:
    """Everything the daemon reads from IMAP, login and IDLE included, counted on the wire."""
    account = dataclasses.replace(imap_user, port=proxy.port)
    config = write_config(
        tmp_path / "forwarder.yaml", account, gateway, imap={"poll_interval": 300}
    )
    with DaemonProcess(config) as daemon:
        daemon.wait_for_checkpoint()
        daemon.wait_for_meta("idle:INBOX", "connected")
        imap_user.server.append(imap_user.user, "INBOX", big_mail())
        (sms,) = gateway.wait_for(1)
        assert daemon.stop() == 0
    assert sms.text == "Finance: URGENT: report\nThe quarterly report is attached."
    assert proxy.received < 32 * 1024, f"{proxy.received} bytes came over the wire"


def test_bye_in_idle_is_a_lost_connection_at_once(imap_user) -> None:
    doveadm = find_binary("doveadm")
    if doveadm is None:
        pytest.skip("doveadm is not installed")
    mailbox = Mailbox(imap_config(imap_user))
    mailbox.connect()
    try:
        mailbox.select("INBOX", readonly=True)
        mailbox.idle_start()
        kick = [doveadm, "-c", str(imap_user.server.config_file), "kick", imap_user.user]
        subprocess.run(kick, check=True, capture_output=True, timeout=10)  # "* BYE …"
        with pytest.raises(ConnectionLost, match="BYE"):
            mailbox.idle_wait(5)
    finally:
        mailbox.abort()
