"""`delay` + `unless_read` against a real Dovecot: a mail read meanwhile is not texted; when
IMAP cannot say, the SMS waits up to delivery.unless_read_wait and then goes (never miss)."""

from __future__ import annotations

from pathlib import Path

from forwarder.cli import status_data
from tests.support.delivery import our_log, queue, row
from tests.support.delivery import start as start_daemon
from tests.support.servers.mails import make_mail

RULES = [
    {
        "name": "urgent",
        "match": {"subject": {"contains": "urgent"}},
        "action": "forward",
        "delay": "3m",
        "unless_read": True,
    }
]
DELAY = 180


def start(daemons, tmp_path, simulator, clock, **extra):
    return start_daemon(daemons, tmp_path, simulator, clock, rules=RULES, **extra)


def append(imap, subject: str) -> int:
    return imap.server.append(imap.user, "INBOX", make_mail(subject, "body"))


def test_a_mail_read_during_the_delay_is_cancelled_and_an_unread_one_is_sent(
    tmp_path: Path, imap_user, gateway, clock, daemons
) -> None:
    server, user = imap_user.server, imap_user.user
    read_uid, unread_uid = append(imap_user, "urgent: read"), append(imap_user, "urgent: unread")
    uidvalidity = server.uidvalidity(user, "INBOX")
    daemon = start(daemons, tmp_path, gateway, clock, imap=imap_user)
    read, unread = queue(
        daemon,
        ["urgent: read", "urgent: unread"],
        uids=[read_uid, unread_uid],
        uidvalidity=uidvalidity,
    )
    assert read.unless_read and read.not_before == clock.now + DELAY

    daemon.delivery.flush(daemon.clock())  # the delay runs
    assert gateway.received == []
    assert status_data(daemon.config, daemon.store)["waiting_for_read"] == 2

    server.set_flags(user, "INBOX", [read_uid], ["\\Seen"])
    clock.advance(DELAY)
    daemon.delivery.flush(daemon.clock())
    cancelled = row(daemon, read.id)
    assert cancelled.state == "cancelled"
    assert cancelled.reason == "the mail was read (\\Seen) before the SMS was due"
    (sms,) = gateway.wait_for(1)
    assert sms.text.startswith("Monitoring: urgent: unread")
    assert row(daemon, unread.id).state == "sent"
    assert status_data(daemon.config, daemon.store)["waiting_for_read"] == 0
    # forwarder only looked: the unread mail is still unread
    assert "\\Seen" not in server.fetch_flags(user, "INBOX", [unread_uid])[unread_uid]


def test_imap_down_waits_up_to_the_bound_then_sends(
    tmp_path: Path, gateway, clock, daemons, caplog
) -> None:
    daemon = start(daemons, tmp_path, gateway, clock, delivery={"unless_read_wait": "10m"})
    (queued,) = queue(daemon, ["urgent: while IMAP is down"])  # IMAP: nobody listens
    clock.advance(DELAY)
    daemon.delivery.flush(daemon.clock())
    waiting = row(daemon, queued.id)
    assert waiting.state == "pending"
    assert waiting.reason.startswith("waiting to learn from IMAP whether the mail was read")
    assert "IMAP: cannot check whether 1 delayed mail(s) were read" in our_log(caplog)
    assert status_data(daemon.config, daemon.store)["waiting_for_read"] == 1

    clock.advance(599)
    daemon.delivery.flush(daemon.clock())
    assert gateway.received == []
    clock.advance(1)
    daemon.delivery.flush(daemon.clock())
    (sms,) = gateway.wait_for(1)
    assert sms.text.startswith("Monitoring: urgent: while IMAP is down")
    assert row(daemon, queued.id).state == "sent"
    assert "IMAP could not say whether the mail was read for 10 min; sent anyway" in caplog.text


def test_imap_back_within_the_bound_still_cancels_a_read_mail(
    tmp_path: Path, dovecot_factory, gateway, clock, daemons
) -> None:
    server = dovecot_factory(tls=False)
    user = "reader"
    uid = server.append(user, "INBOX", make_mail("urgent: flaky IMAP", "body"))
    imap = type(
        "Imap",
        (),
        {"host": server.host, "port": server.port, "user": user, "password": server.password},
    )
    daemon = start(daemons, tmp_path, gateway, clock, imap=imap)
    (queued,) = queue(
        daemon, ["urgent: flaky IMAP"], uids=[uid], uidvalidity=server.uidvalidity(user, "INBOX")
    )
    server.stop()
    clock.advance(DELAY)
    daemon.delivery.flush(daemon.clock())
    assert row(daemon, queued.id).state == "pending"
    server.start()
    server.set_flags(user, "INBOX", [uid], ["\\Seen"])
    clock.advance(60)
    daemon.delivery.flush(daemon.clock())
    assert row(daemon, queued.id).state == "cancelled"
    assert gateway.received == []


def test_a_mail_that_is_gone_is_sent_to_be_safe(
    tmp_path: Path, imap_user, gateway, clock, daemons
) -> None:
    server, user = imap_user.server, imap_user.user
    expunged = append(imap_user, "urgent: expunged")
    uidvalidity = server.uidvalidity(user, "INBOX")
    daemon = start(daemons, tmp_path, gateway, clock, imap=imap_user)
    (gone,) = queue(daemon, ["urgent: expunged"], uids=[expunged], uidvalidity=uidvalidity)
    # The folder was recreated since: the UID names no mail any more (RFC 3501 §2.3.1.1).
    (stale,) = queue(daemon, ["urgent: stale"], uids=[expunged], uidvalidity=uidvalidity - 1)
    server.expunge(user, "INBOX", [expunged])
    clock.advance(DELAY)
    daemon.delivery.flush(daemon.clock())
    assert len(gateway.wait_for(2)) == 2
    assert row(daemon, gone.id).state == row(daemon, stale.id).state == "sent"
