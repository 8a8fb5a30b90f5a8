"""Receipts (issue 11): a request in doubt is settled by evidence found over IMAP, not by luck.

In-process daemons on a clock the test moves, a real Dovecot with an RFC 6154 Sent folder,
and the gateway simulator playing the user's SMTP server too: it delivers the owner's copy
to the Dovecot INBOX (``copy`` receipts) and files what it accepted in Sent, like Gmail
(``sent_folder`` receipts). Also: the state-file migration from v1, a hang-up mid-DATA, and
a state file that cannot be written.
"""

from __future__ import annotations

import email
import itertools
import sqlite3
from pathlib import Path
from types import SimpleNamespace

import pytest

from forwarder.cli import status_data
from forwarder.delivery.receipts import DoubtAction, doubt_ruling, own_ids, resolve
from forwarder.delivery.states import State
from forwarder.store import SCHEMA_VERSION, Store
from tests.support.delivery import (
    MODES,
    SECRETS,
    T0,
    make_daemon,
    our_log,
    queue,
    row,
    state_file_bytes,
)
from tests.support.delivery import load_config as make_config
from tests.support.servers.dovecot import SENT_FOLDER, DovecotServer
from tests.support.servers.mails import make_mail

pytestmark = pytest.mark.server
OWN = "me@example.com"  # smtp.from in tests/configs.py: where copies go by default
WAIT = 120  # delivery.receipt_wait's default
_users = itertools.count(1)


@pytest.fixture
def dovecot(dovecot_with_sent: DovecotServer) -> DovecotServer:
    return dovecot_with_sent


@pytest.fixture
def account(dovecot: DovecotServer) -> SimpleNamespace:
    user = f"receipts{next(_users)}"
    return SimpleNamespace(
        host=dovecot.host, port=dovecot.port, user=user, password=dovecot.password, server=dovecot
    )


def start(daemons, tmp_path, simulator, clock, account, **delivery):
    config = make_config(tmp_path, simulator, imap=account, delivery=delivery)
    daemon = make_daemon(config, clock)
    daemons.append(daemon)
    daemon.intake.poll()  # the first look baselines INBOX
    return daemon


def to_inbox(account):
    return lambda _rcpt, raw: account.server.append(account.user, "INBOX", raw)


def to_sent(account, rewrite=None):
    def file(raw: bytes) -> None:
        account.server.append(account.user, SENT_FOLDER, rewrite(raw) if rewrite else raw)

    return file


def outlook_rewrite(raw: bytes) -> bytes:
    """What Outlook.com / Microsoft 365 do: a Message-ID of their own, ours moved aside."""
    message = email.message_from_bytes(raw)
    ours = message["Message-ID"]
    del message["Message-ID"]
    message["Message-ID"] = "<AM0PR01MB1234.eurprd01.prod.outlook.com>"
    message["X-Microsoft-Original-Message-ID"] = ours
    return message.as_bytes()


def doubts(daemon) -> dict[str, int]:
    return status_data(daemon.config, daemon.store)["doubts"]


# -- copy receipts -------------------------------------------------------------------------------
def test_the_copy_settles_a_doubt_and_the_gateway_sees_only_its_request(
    tmp_path: Path, account, gateway_factory, clock, daemons
) -> None:
    simulator = gateway_factory(local=to_inbox(account))
    daemon = start(daemons, tmp_path, simulator, clock, account, receipts="copy")
    simulator.drop_next("data", accept=True)  # accepted; the 250 never reaches forwarder
    (queued,) = queue(daemon)
    daemon.delivery.flush(daemon.clock())
    assert row(daemon, queued.id).state == State.IN_DOUBT
    (sms,) = simulator.received
    assert sms.problems == ()  # one envelope recipient: the owner's copy is not its business
    assert [rcpt for rcpt, _raw in simulator.copies] == [OWN]

    daemon.intake.poll()  # the copy arrives in INBOX: recorded as the receipt
    clock.advance(1)
    daemon.delivery.flush(daemon.clock())
    confirmed = row(daemon, queued.id)
    assert confirmed.state == State.SENT
    assert confirmed.reason == "in doubt, then confirmed by its receipt (copy)"
    assert len(simulator.received) == 1
    assert doubts(daemon) == {"receipt": 1}
    # Out of the user's way: read, still there (the user's record of what was sent).
    (uid,) = account.server.list_uids(account.user, "INBOX")
    assert "\\Seen" in account.server.fetch_flags(account.user, "INBOX", [uid])[uid]


def test_a_copy_in_a_backlog_is_found_by_its_moved_message_id(
    tmp_path: Path, account, gateway_factory, clock, daemons
) -> None:
    """A backlog is fetched with only the header fields the rules read; the copy's
    Message-ID headers are always among them, also the one Outlook moves ours to."""
    simulator = gateway_factory()
    daemon = start(daemons, tmp_path, simulator, clock, account, receipts="copy")
    simulator.drop_next("data", accept=True)
    (queued,) = queue(daemon)
    daemon.delivery.flush(daemon.clock())
    assert row(daemon, queued.id).state == State.IN_DOUBT
    ((_rcpt, copy),) = simulator.copies
    for n in range(15):  # more than a push fetch: the backlog's header-fields fetch
        account.server.append(account.user, "INBOX", make_mail(f"hello {n}", "nothing urgent"))
    account.server.append(account.user, "INBOX", outlook_rewrite(copy))
    daemon.intake.poll()
    clock.advance(1)
    daemon.delivery.flush(daemon.clock())
    assert row(daemon, queued.id).state == State.SENT
    assert doubts(daemon) == {"receipt": 1}
    assert len(simulator.received) == 1


def test_a_copy_is_never_forwarded_whatever_the_rules_and_guards_say(
    tmp_path: Path, account, gateway_factory, clock, daemons
) -> None:
    simulator = gateway_factory(local=to_inbox(account))
    config = make_config(
        tmp_path,
        simulator,
        imap=account,
        default="forward",
        guards={"own_mail": False},
        rules=[],
        delivery={"receipts": "copy", "receipt_folder": "Receipts"},
    )
    daemon = make_daemon(config, clock)
    daemons.append(daemon)
    daemon.intake.poll()
    account.server.append(account.user, "INBOX", make_mail("anything at all", "body"))
    daemon.intake.poll()
    daemon.delivery.flush(daemon.clock())
    assert len(simulator.wait_for(1)) == 1
    daemon.intake.poll()  # the copy of that SMS arrives: a receipt, not mail to forward
    daemon.delivery.flush(daemon.clock())
    assert len(simulator.received) == 1
    handled = daemon.store._query("SELECT action, reason FROM handled ORDER BY uid")
    assert [r["action"] for r in handled] == ["forward", "skip"]
    assert handled[1]["reason"].startswith("the receipt of SMS request <fwd.")
    # receipt_folder: moved out of INBOX, marked read there
    assert len(account.server.list_uids(account.user, "INBOX")) == 1
    (moved,) = account.server.list_uids(account.user, "Receipts")
    assert "\\Seen" in account.server.fetch_flags(account.user, "Receipts", [moved])[moved]


@pytest.mark.parametrize("letter", ["a", "d"])
def test_a_copy_in_a_secret_mode_leaves_its_secret_in_no_log_and_no_state(
    tmp_path: Path, account, gateway_factory, clock, daemons, caplog, letter: str
) -> None:
    """The copy's Subject carries the gateway password or key (one DATA for both
    recipients): it reaches the user's own mailbox, and nothing of forwarder's."""
    simulator = gateway_factory(tls="starttls", local=to_inbox(account))
    config = make_config(
        tmp_path,
        simulator,
        imap=account,
        gateway=MODES[letter],
        log_level="DEBUG",
        delivery={"receipts": "copy"},
    )
    daemon = make_daemon(config, clock)
    daemons.append(daemon)
    daemon.intake.poll()
    simulator.drop_next("data", accept=True)
    (queued,) = queue(daemon)
    daemon.delivery.flush(daemon.clock())
    daemon.intake.poll()  # the copy, with the secret in its Subject, is read as the receipt
    daemon.delivery.flush(daemon.clock())
    assert row(daemon, queued.id).state == State.SENT
    assert len(simulator.received) == 1 and simulator.received[0].problems == ()
    ((_rcpt, copy),) = simulator.copies
    assert any(secret.encode() in copy for secret in SECRETS)  # the copy does carry one
    log, state = our_log(caplog), state_file_bytes(config)
    for secret in SECRETS:
        assert secret not in log
        assert secret.encode() not in state


def test_no_copy_within_the_wait_means_it_did_not_get_through_and_it_is_resent(
    tmp_path: Path, account, gateway_factory, clock, daemons, caplog
) -> None:
    simulator = gateway_factory(local=to_inbox(account))
    daemon = start(daemons, tmp_path, simulator, clock, account, receipts="copy")
    simulator.drop_next("data")  # dropped after the dot, not accepted: nothing was delivered
    (queued,) = queue(daemon)
    daemon.delivery.flush(daemon.clock())
    assert simulator.received == [] and simulator.copies == []
    clock.advance(WAIT - 1)
    daemon.intake.poll()
    daemon.delivery.flush(daemon.clock())
    assert row(daemon, queued.id).state == State.IN_DOUBT  # a receipt may still come
    clock.advance(1)
    daemon.delivery.flush(daemon.clock())
    # The wait is over, but the last look began before it ended: it proves nothing yet.
    assert row(daemon, queued.id).state == State.IN_DOUBT
    daemon.intake.poll()
    daemon.delivery.flush(daemon.clock())
    assert row(daemon, queued.id).state == State.PENDING
    clock.advance(600)  # the resend waits out the SMTP backoff (the server just failed)
    daemon.delivery.flush(daemon.clock())
    (sms,) = simulator.wait_for(1)
    assert sms.message_id == queued.message_id
    assert row(daemon, queued.id).state == State.SENT
    assert doubts(daemon) == {"resent": 1}
    assert "no receipt (copy) within delivery.receipt_wait (120s); sent again" in our_log(caplog)


def test_a_refused_copy_recipient_costs_the_receipt_never_the_sms(
    tmp_path: Path, account, gateway_factory, clock, daemons, caplog
) -> None:
    simulator = gateway_factory(refuse_owners=True)
    daemon = start(daemons, tmp_path, simulator, clock, account, receipts="copy")
    simulator.drop_next("data", accept=True)
    (queued,) = queue(daemon)
    daemon.delivery.flush(daemon.clock())
    assert "SMTP refused the receipt copy to me@example.com (550" in our_log(caplog)
    doubtful = row(daemon, queued.id)
    assert doubtful.state == State.PENDING  # nothing could tell: resent, after the backoff
    assert doubtful.proof == ""
    assert doubts(daemon) == {"resent": 1}
    clock.now = doubtful.not_before
    daemon.delivery.flush(daemon.clock())
    assert len(simulator.wait_for(2)) == 2  # the one case that costs a second SMS: counted


def test_on_doubt_alert_waits_for_the_receipt_then_alerts_and_a_late_copy_still_counts(
    tmp_path: Path, account, gateway_factory, clock, daemons, caplog
) -> None:
    simulator = gateway_factory()  # the copy is accepted but goes nowhere (for now)
    daemon = start(daemons, tmp_path, simulator, clock, account, on_doubt="alert")
    simulator.drop_next("data", accept=True)
    (queued,) = queue(daemon)
    daemon.delivery.flush(daemon.clock())
    clock.advance(WAIT)
    daemon.intake.poll()  # a look begun after the wait: the copy is not there
    daemon.delivery.flush(daemon.clock())
    assert row(daemon, queued.id).state == State.IN_DOUBT  # never sent again
    assert doubts(daemon) == {"alerted": 1}
    assert "is in doubt and will not be sent again (delivery.on_doubt: alert)" in our_log(caplog)
    ((_rcpt, copy),) = simulator.copies
    account.server.append(account.user, "INBOX", copy)  # the copy turns up after all
    daemon.intake.poll()
    daemon.delivery.flush(daemon.clock())
    assert row(daemon, queued.id).state == State.SENT
    assert len(simulator.received) == 1


# -- Sent-folder receipts ------------------------------------------------------------------------
@pytest.mark.parametrize("rewrite", [None, outlook_rewrite], ids=["gmail", "outlook"])
def test_the_sent_folder_settles_a_doubt_at_once(
    tmp_path: Path, account, gateway_factory, clock, daemons, rewrite
) -> None:
    simulator = gateway_factory(sent=to_sent(account, rewrite))
    daemon = start(daemons, tmp_path, simulator, clock, account, receipts="sent_folder")
    simulator.drop_next("data", accept=True)
    (queued,) = queue(daemon)
    daemon.delivery.flush(daemon.clock())  # the doubt begins, Sent is searched: found
    confirmed = row(daemon, queued.id)
    assert confirmed.state == State.SENT
    assert confirmed.reason == "in doubt, then confirmed by its receipt (sent_folder)"
    assert len(simulator.received) == 1
    assert doubts(daemon) == {"receipt": 1}
    receipt = daemon.store._query("SELECT how, folder FROM receipts")[0]
    assert (receipt["how"], receipt["folder"]) == ("sent_folder", SENT_FOLDER)


def test_not_in_sent_within_the_wait_is_resent_once(
    tmp_path: Path, account, gateway_factory, clock, daemons
) -> None:
    simulator = gateway_factory(sent=to_sent(account))
    daemon = start(daemons, tmp_path, simulator, clock, account, receipts="sent_folder")
    simulator.drop_next("data")  # not accepted: nothing filed
    (queued,) = queue(daemon)
    daemon.delivery.flush(daemon.clock())
    assert row(daemon, queued.id).state == State.IN_DOUBT
    clock.advance(WAIT)
    daemon.delivery.flush(daemon.clock())
    clock.advance(600)
    daemon.delivery.flush(daemon.clock())
    assert len(simulator.wait_for(1)) == 1
    assert len(simulator.filed) == 1
    assert row(daemon, queued.id).state == State.SENT
    assert doubts(daemon) == {"resent": 1}


def crash_after_the_dot(daemons, tmp_path, simulator, clock, account, proof, filed_in=None):
    """A request cut off by a crash between the final dot and the 250, then a restart
    (its outbox recovered). ``filed_in``: the folder where the server put what it accepted
    (Sent, or INBOX for the copy); None: it did not accept it. Returns (daemon, request)."""
    daemon = start(daemons, tmp_path, simulator, clock, account, receipts=proof)
    (queued,) = queue(daemon)
    daemon.store.start_attempt(queued.id)
    daemon.store.before_dot(queued.id, proof=proof)
    if filed_in is not None:
        account.server.append(account.user, filed_in, _request_bytes(queued.message_id))
    daemon.store.close()
    fresh = make_daemon(daemon.config, clock)
    daemons.append(fresh)
    fresh.delivery.recover()
    return fresh, queued


def test_a_crash_in_the_window_is_settled_by_the_sent_folder_after_the_restart(
    tmp_path: Path, account, gateway_factory, clock, daemons
) -> None:
    simulator = gateway_factory(sent=to_sent(account))
    # The server accepted it (filed in Sent), forwarder never saw the 250.
    fresh, queued = crash_after_the_dot(
        daemons, tmp_path, simulator, clock, account, "sent_folder", filed_in=SENT_FOLDER
    )
    fresh.delivery.flush(fresh.clock())
    assert row(fresh, queued.id).state == State.SENT
    assert simulator.received == []  # never sent again
    assert doubts(fresh) == {"receipt": 1}


def test_after_a_restart_no_receipt_is_ruled_before_intake_has_read_the_copy(
    tmp_path: Path, account, gateway_factory, clock, daemons, monkeypatch
) -> None:
    """The race the 1 000-kill soak found: a crash between the dot and the 250, the copy
    already in INBOX, and the restart's catch-up still reading when receipt_wait ends.
    Ruling on the receipts of before the crash would send a second SMS."""
    simulator = gateway_factory(local=to_inbox(account))
    # The server accepted it and delivered the copy; forwarder never saw the 250.
    fresh, queued = crash_after_the_dot(
        daemons, tmp_path, simulator, clock, account, "copy", filed_in="INBOX"
    )
    asked: list[bool] = []
    monkeypatch.setattr(fresh.delivery, "ask_look", lambda: asked.append(True))
    clock.advance(WAIT + 1)  # intake has not looked yet (a long catch-up, or IMAP slow)
    fresh.delivery.flush(fresh.clock())
    assert row(fresh, queued.id).state == State.IN_DOUBT  # not resent on no evidence
    assert asked == [True]  # delivery asked intake for a look
    fresh.delivery.flush(fresh.clock())
    assert asked == [True]  # once per doubt: a round that cannot look must not spin
    fresh.intake.poll()  # the look: the copy is read and recorded as the receipt
    fresh.delivery.flush(fresh.clock())
    assert row(fresh, queued.id).state == State.SENT
    assert simulator.received == []  # never sent again
    assert doubts(fresh) == {"receipt": 1}


def test_a_doubt_is_resent_when_imap_cannot_look_for_as_long_again(
    tmp_path: Path, account, gateway_factory, clock, daemons
) -> None:
    simulator = gateway_factory(local=to_inbox(account))
    # Not accepted: no copy will ever come.
    fresh, queued = crash_after_the_dot(daemons, tmp_path, simulator, clock, account, "copy")
    clock.advance(2 * WAIT - 1)  # no look in this run (IMAP down)
    fresh.delivery.flush(fresh.clock())
    assert row(fresh, queued.id).state == State.IN_DOUBT
    clock.advance(1)
    fresh.delivery.flush(fresh.clock())
    (sms,) = simulator.wait_for(1)  # never missed comes before never twice
    assert sms.message_id == queued.message_id
    assert doubts(fresh) == {"resent": 1}


def _request_bytes(message_id: str) -> bytes:
    return make_mail("TestAlpha", "the SMS text", headers={"Message-ID": message_id})


# -- the wire, the state file ---------------------------------------------------------------------
def test_a_hang_up_mid_data_is_no_doubt_and_the_sms_goes_once(
    tmp_path: Path, account, gateway_factory, clock, daemons
) -> None:
    simulator = gateway_factory(local=to_inbox(account))
    daemon = start(daemons, tmp_path, simulator, clock, account)
    simulator.hang_up_in_data()
    (queued,) = queue(daemon)
    daemon.delivery.flush(daemon.clock())
    # Noticed before the dot: a plain transient failure, tried again within the send.
    (sms,) = simulator.wait_for(1)
    assert sms.problems == ()
    sent = row(daemon, queued.id)
    assert (sent.state, sent.attempts) == (State.SENT, 2)
    assert daemon.store.send_counts().day == 1  # only the attempt that reached the dot
    assert doubts(daemon) == {}


class _FullDisk:
    """The state file's connection, with COMMIT failing while ``full`` (what SQLite says)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db, self.full = db, False

    def execute(self, sql: str, *args):
        if self.full and sql == "COMMIT":
            raise sqlite3.OperationalError("database or disk is full")
        return self.db.execute(sql, *args)

    def __getattr__(self, name: str):
        return getattr(self.db, name)


def test_a_full_state_disk_stops_the_checkpoint_loses_nothing_and_resumes(
    tmp_path: Path, account, gateway_factory, clock, daemons, caplog
) -> None:
    simulator = gateway_factory()
    daemon = start(daemons, tmp_path, simulator, clock, account, receipts="off")
    before = daemon.store.checkpoint("INBOX")
    disk = _FullDisk(daemon.store._db)
    daemon.store._db = disk
    disk.full = True
    account.server.append(account.user, "INBOX", make_mail("urgent: disk full", "body"))
    daemon.intake.poll()
    daemon.delivery.flush(daemon.clock())
    daemon.intake.poll()  # said once, not every round
    assert daemon.store.checkpoint("INBOX") == before
    assert simulator.received == []
    log = our_log(caplog)
    assert log.count("cannot record what it handles, so it stops here") == 1
    assert "database or disk is full" in log
    assert daemon.intake.unwritable is not None

    disk.full = False
    daemon.intake.poll()
    daemon.delivery.flush(daemon.clock())
    (sms,) = simulator.wait_for(1)
    assert sms.text.startswith("Alice Sender: urgent: disk full")
    assert daemon.store.checkpoint("INBOX").last_uid == before.last_uid + 1
    assert "the state file can be written again: forwarder goes on" in our_log(caplog)
    assert daemon.intake.unwritable is None


FIXTURES = Path(__file__).parent / "fixtures"


def _v1_with_a_doubt(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.executescript((FIXTURES / "state-v1.sql").read_text())
        db.execute(
            "INSERT INTO outbox (folder, uidvalidity, uid, source_message_id, rule, recipient, "
            "to_addr, sender, subject_masked, text, message_id, state, created_at, updated_at, "
            "due_at, not_before, attempts) VALUES ('INBOX', 7, 43, '<m43@x>', 'urgent', "
            "'380501234567', '380501234567@mail.alphasms.com.ua', 'TestAlpha', 'TestAlpha', "
            "'left in doubt by 0.1', '<fwd.v1@forwarder.invalid>', 'in_doubt', ?, ?, ?, ?, 1)",
            (T0, T0, T0, T0),
        )
    db.close()


def _v2_with_a_doubt(path: Path) -> None:
    db = sqlite3.connect(path)
    db.executescript((FIXTURES / "state-v2.sql").read_text())
    db.close()


@pytest.mark.parametrize(
    ("make", "version", "message_id"),
    [
        (_v1_with_a_doubt, "1", "<fwd.v1@forwarder.invalid>"),
        (_v2_with_a_doubt, "2", "<fwd.2@forwarder.invalid>"),
    ],
    ids=["schema-1", "schema-2"],
)
def test_an_older_state_file_is_migrated_and_its_doubt_settled(
    tmp_path: Path, gateway, clock, daemons, make, version: str, message_id: str
) -> None:
    config = make_config(tmp_path, gateway)
    make(config.state)
    daemon = make_daemon(config, clock)
    daemons.append(daemon)
    store = daemon.store
    assert store.get_meta("schema_version") == str(SCHEMA_VERSION) == "3"
    assert store.get_meta("migrated_from") == version
    (old,) = store.outbox_in(State.IN_DOUBT)
    assert old.proof == ""  # no copy was made, no Sent folder known: nothing can prove it
    assert store.doubt_counts() == {}
    queued = len(store.outbox_in(State.PENDING))  # schema 1's file has a pending one too
    daemon.delivery.recover()
    daemon.delivery.flush(daemon.clock())
    sent = gateway.wait_for(1 + queued)  # the doubt: on_doubt: resend (the default), at once
    assert [s.message_id for s in sent].count(message_id) == 1
    assert row(daemon, old.id).state == State.SENT
    assert doubts(daemon) == {"resent": 1}
    again = Store(config.state)  # opening a migrated file again changes nothing
    try:
        assert again.get_meta("schema_version") == "3"
        assert again.get_meta("migrated_from") == version
    finally:
        again.close()


# -- the pure policy ------------------------------------------------------------------------------
def test_doubt_rulings() -> None:
    def ruling(**kw):
        args = {
            "proof": "copy",
            "receipt": False,
            "began_at": 0.0,
            "now": 10.0,
            "wait": 120.0,
            "on_doubt": "resend",
            "looked_at": 120.0,  # a look begun as the wait ended
            "imap_wait": 120.0,
        } | kw
        return doubt_ruling(**args).action

    assert ruling(receipt=True) is DoubtAction.CONFIRMED
    assert ruling(receipt=True, now=1e9, on_doubt="alert") is DoubtAction.CONFIRMED
    assert ruling() is DoubtAction.WAIT
    assert ruling(now=120.0) is DoubtAction.RESEND
    assert ruling(now=120.0, on_doubt="alert") is DoubtAction.ALERT
    assert ruling(proof="") is DoubtAction.RESEND  # nothing can prove it: no point waiting
    assert ruling(proof="", on_doubt="alert") is DoubtAction.ALERT
    # "No receipt" needs a look begun after the wait ended; an older one proves nothing
    # (after a restart, intake may still be reading the backlog that holds the copy).
    looked = {"now": 130.0}
    assert ruling(**looked, looked_at=None) is DoubtAction.LOOK  # no look at all yet
    assert ruling(**looked, looked_at=119.0) is DoubtAction.LOOK
    assert ruling(**looked, looked_at=120.0) is DoubtAction.RESEND
    assert ruling(**looked, looked_at=120.0, on_doubt="alert") is DoubtAction.ALERT
    assert ruling(**looked, looked_at=5.0, receipt=True) is DoubtAction.CONFIRMED
    # IMAP that cannot look is not waited for for ever: never missed comes first.
    assert ruling(now=240.0, looked_at=5.0) is DoubtAction.RESEND
    assert ruling(now=240.0, looked_at=None, on_doubt="alert") is DoubtAction.ALERT
    assert ruling(proof="", now=130.0, looked_at=None) is DoubtAction.RESEND


def test_own_ids_and_resolve() -> None:
    values = ["<a@forwarder.invalid>", " <B@Forwarder.Invalid> ", "<c@elsewhere>", "junk"]
    found = own_ids(values, "forwarder.invalid")
    assert found == ("<a@forwarder.invalid>", "<B@Forwarder.Invalid>")
    assert resolve("auto", "SMTP.Gmail.com", "imap.gmail.com").value == "sent_folder"
    assert resolve("off", "smtp.gmail.com", "imap.gmail.com").value == "off"
