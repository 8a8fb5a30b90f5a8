"""A backlog's likely mail first (issue 12): the rules' words, a SEARCH that only orders.

After an outage, the mail a server-side SEARCH finds for the forward rules' words is decided
(and its SMS sent) before the rest of the backlog is read; then every other new mail is
decided in UID order. The SEARCH never narrows: what it misses is decided in the second
pass. Pure tests of ``RuleSet.likely``; the rest against a real Dovecot, through
``poll_folder`` and through ``forwarder run``.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError

from forwarder import config as config_module
from forwarder.daemon import Daemon
from forwarder.imap.checkpoints import BATCH, FIRST_FEW, LikelySearchFailed, poll_folder
from forwarder.imap.connection import Mailbox, MailboxError
from forwarder.mail import Likely
from forwarder.rules.ruleset import LIKELY_TERMS
from forwarder.store import Store
from tests.support.configs import imap_config, write_config
from tests.support.daemonproc import DaemonProcess, read_checkpoint
from tests.support.deciders import Decider
from tests.support.rules import compiled
from tests.support.servers import free_port
from tests.support.servers.mails import make_mail

NO_LIMITS = {"per_minute": 100_000, "per_hour": 100_000, "per_day": 100_000, "dedup_window": 0}


def likely_of(text: str) -> Likely | None:
    return compiled(text).likely


def rules(*entries: dict, default: str = "skip") -> str:
    return yaml.safe_dump({"rules": list(entries), "default": default})


def forward(name: str, match: dict, **extra) -> dict:
    return {"name": name, "match": match, "action": "forward", **extra}


# -- the terms, from the compiled rules -------------------------------------------------------
def test_text_patterns_on_headers_give_their_longest_literal_piece() -> None:
    likely = likely_of(
        rules(
            forward("urgent", {"subject": {"contains": "URGENT"}}),
            forward("bank", {"from": "*@bank.com.ua"}),
            forward("ops", {"header": {"X-Alert": "*disk*full*"}}),
        )
    )
    assert likely == Likely((("Subject", "urgent"), ("From", "@bank.com.ua"), ("X-Alert", "disk")))


def test_any_needs_each_part_all_needs_its_most_selective_part() -> None:
    either = forward("either", {"any": [{"subject": {"contains": "alarm"}}, {"to": "ops@x.org"}]})
    both = forward(
        "both", {"from": ["a@x.org", "b@x.org", "c@x.org"], "subject": {"contains": "invoice"}}
    )
    assert likely_of(rules(either, both)) == Likely(
        (("Subject", "alarm"), ("To", "ops@x.org"), ("Subject", "invoice"))
    )


@pytest.mark.parametrize(
    "match",
    [
        {"subject": {"regex": "urgent|critical"}},  # no literal piece is known
        {"not": {"subject": {"contains": "newsletter"}}},
        {"body": {"contains": "urgent"}},  # the body is no header
        {"subject": {"contains": "ab"}},  # too short to be worth a SEARCH
        {"any": [{"subject": {"contains": "urgent"}}, {"size": "> 1MB"}]},
        {"time": "09:00-18:00"},
    ],
    ids=["regex", "not", "body", "short", "any-with-size", "time"],
)
def test_a_forward_rule_without_known_words_is_left_out_of_the_hint(match: dict) -> None:
    assert likely_of(rules(forward("vague", match))) is None
    assert likely_of(
        rules(forward("vague", match), forward("urgent", {"subject": {"contains": "urgent"}}))
    ) == Likely((("Subject", "urgent"),))


def test_skip_rules_give_no_terms_and_a_forward_catch_all_gives_no_hint() -> None:
    skip = {"name": "news", "match": {"subject": {"contains": "newsletter"}}, "action": "skip"}
    assert likely_of(rules(skip, default="forward")) is None
    catch_all = {"name": "rest", "action": "forward"}
    urgent = forward("urgent", {"subject": {"contains": "urgent"}})
    assert likely_of(rules(urgent, catch_all)) is None


def test_the_terms_are_bounded_and_the_first_rules_come_first() -> None:
    many = [forward(f"r{n}", {"subject": {"contains": f"word{n:02d}"}}) for n in range(30)]
    likely = likely_of(rules(*many))
    assert likely is not None
    assert len(likely.terms) == LIKELY_TERMS
    assert likely.terms[0] == ("Subject", "word00")


# -- poll_folder against Dovecot -------------------------------------------------------------
URGENT = Likely((("Subject", "urgent"),))


@pytest.fixture
def store(tmp_path: Path) -> Store:
    state = Store(tmp_path / "state.db")
    yield state
    state.close()


@pytest.fixture
def mailbox(imap_user) -> Mailbox:
    with Mailbox(imap_config(imap_user)) as connected:
        yield connected


def backlog(imap_user, mailbox: Mailbox, store: Store, subjects: list[str]) -> None:
    """The folder baselined empty, then ``subjects`` arrive (UIDs 1..n)."""
    poll_folder(mailbox, store, "INBOX", Decider(store))
    raws = [make_mail(subject, f"mail {n}") for n, subject in enumerate(subjects, 1)]
    imap_user.server.append_many(imap_user.user, "INBOX", raws)


def spread(count: int, urgent: set[int]) -> list[str]:
    return [f"urgent: disk {n} full" if n in urgent else f"report {n}" for n in range(1, count + 1)]


def test_a_backlogs_likely_mail_is_decided_first_then_every_other_mail_once(
    imap_user, mailbox, store
) -> None:
    urgent = {3, 50, 120, 199, 230, 260, 270, 301, 333, 350, 390, 410, 444}
    backlog(imap_user, mailbox, store, spread(450, urgent))
    called = []
    decider = Decider(store)
    poll_folder(
        mailbox, store, "INBOX", decider, likely=URGENT, after_likely=lambda: called.append(1)
    )
    ordered = sorted(urgent)
    first, second = decider.batches[0], decider.batches[1]
    assert [m.uid for m in first.mails] == ordered[:FIRST_FEW]
    assert [m.uid for m in second.mails] == ordered[FIRST_FEW:]
    assert first.advance_to is None and second.advance_to is None  # the checkpoint waits
    assert called == [1, 1]  # delivery's turn after each
    rest = [uid for b in decider.batches[2:] for m in b.mails for uid in [m.uid]]
    assert rest == [uid for uid in range(1, 451) if uid not in urgent]
    assert sorted(decider.uids) == list(range(1, 451))  # each mail exactly once
    assert sorted(m.uid for m in decider.texts) == ordered
    assert store.checkpoint("INBOX").last_uid == 450


def test_mail_the_search_misses_is_still_decided_in_the_second_pass(
    imap_user, mailbox, store
) -> None:
    # "STRASSE" casefolds to "strasse", as "Straße" does: the rules find it. Dovecot compares
    # by simple case mapping, where ß stays ß: its SEARCH does not. A prefilter would drop it.
    subjects = [*spread(BATCH + 20, {7, 150}), "Straße gesperrt"]
    backlog(imap_user, mailbox, store, subjects)
    missed = len(subjects)
    likely = Likely((("Subject", "strasse"), ("Subject", "urgent")))  # as from two rules
    mailbox.select("INBOX")
    assert missed not in mailbox.search_likely(1, likely)  # the case this test is about

    decider = Decider(store, forwards=lambda mail: "strasse" in mail.subject.casefold())
    poll_folder(mailbox, store, "INBOX", decider, likely=likely)
    assert [m.uid for m in decider.batches[0].mails] == [7, 150]
    assert missed in [m.uid for b in decider.batches[1:] for m in b.mails]
    assert sorted(m.uid for m in decider.texts) == [missed]
    assert sorted(decider.uids) == list(range(1, missed + 1))


def test_a_server_that_refuses_the_search_is_read_in_order(
    imap_user, mailbox, store, caplog
) -> None:
    backlog(imap_user, mailbox, store, spread(BATCH + 5, {4, 190}))
    real = mailbox.client.search

    def search(criteria, *args, **kwargs):
        if "HEADER" in criteria:
            raise IMAPClientError("search failed: [BADCHARSET] unsupported search")
        return real(criteria, *args, **kwargs)

    mailbox.client.search = search
    decider = Decider(store)
    caplog.set_level(logging.INFO, logger="forwarder.imap.checkpoints")
    poll_folder(mailbox, store, "INBOX", decider, likely=URGENT)
    assert decider.uids == list(range(1, BATCH + 6))  # in UID order, each once
    assert all(b.advance_to is not None for b in decider.batches)
    assert "the backlog is read in UID order" in caplog.text


def test_a_search_that_breaks_the_connection_moves_nothing(imap_user, mailbox, store) -> None:
    backlog(imap_user, mailbox, store, spread(BATCH + 5, {4}))
    real = mailbox.client.search

    def search(criteria, *args, **kwargs):
        if "HEADER" in criteria:
            raise IMAPClientAbortError("socket error: timed out")
        return real(criteria, *args, **kwargs)

    mailbox.client.search = search
    with pytest.raises(LikelySearchFailed, match="likely mail first"):
        poll_folder(mailbox, store, "INBOX", Decider(store), likely=URGENT)
    assert store.checkpoint("INBOX").last_uid == 0
    assert (
        store.handled_uids("INBOX", store.checkpoint("INBOX").uidvalidity, range(1, 300)) == set()
    )


def test_a_crash_between_the_passes_resumes_without_deciding_anything_twice(
    imap_user, mailbox, store
) -> None:
    urgent = {10, 90, 210}
    backlog(imap_user, mailbox, store, spread(BATCH + 30, urgent))

    class CrashAfterLikely(Decider):
        def __call__(self, batch):
            if batch.advance_to is not None:
                raise RuntimeError("killed")  # the second pass never commits
            return super().__call__(batch)

    crashed = CrashAfterLikely(store)
    with pytest.raises(RuntimeError):
        poll_folder(mailbox, store, "INBOX", crashed, likely=URGENT)
    assert store.checkpoint("INBOX").last_uid == 0  # only the ledger holds the likely mail

    again = Decider(store)
    poll_folder(mailbox, store, "INBOX", again, likely=URGENT)
    assert sorted(crashed.uids + again.uids) == list(range(1, BATCH + 31))  # each once
    assert not set(again.uids) & urgent
    assert store.checkpoint("INBOX").last_uid == BATCH + 30


def watch_searches(mailbox: Mailbox) -> list[list]:
    searched: list[list] = []
    real = mailbox.client.search

    def search(criteria, *args, **kwargs):
        searched.append(list(criteria))
        return real(criteria, *args, **kwargs)

    mailbox.client.search = search
    return searched


def test_a_small_backlog_costs_no_search(imap_user, mailbox, store) -> None:
    backlog(imap_user, mailbox, store, spread(BATCH, {5}))
    searched = watch_searches(mailbox)
    decider = Decider(store)
    poll_folder(mailbox, store, "INBOX", decider, likely=URGENT)
    assert decider.uids == list(range(1, BATCH + 1))
    assert searched and not [c for c in searched if "HEADER" in c]  # one batch: in order


# -- through forwarder run ------------------------------------------------------------------
def test_the_sms_of_a_backlogs_likely_mail_leave_before_the_rest_is_read(
    tmp_path: Path, imap_user, gateway
) -> None:
    config = write_config(tmp_path / "forwarder.yaml", imap_user, gateway, limits=NO_LIMITS)
    state = tmp_path / "state.db"
    with DaemonProcess(config) as daemon:  # the baseline: the folder is empty
        daemon.wait_for_checkpoint()
        daemon.stop()
    urgent = {2, 77, 150, 151, 220, 300, 301, 302, 303, 304, 305, 380}
    subjects = spread(2 * BATCH, urgent)
    imap_user.server.append_many(
        imap_user.user, "INBOX", [make_mail(s, f"mail {n}") for n, s in enumerate(subjects, 1)]
    )
    with DaemonProcess(config) as daemon:
        sms = gateway.wait_for(len(urgent), timeout=60)
        daemon.wait_for_checkpoint(above=2 * BATCH - 1)
        assert daemon.stop() == 0
    assert sorted(int(re.search(r"disk (\d+) full", s.text)[1]) for s in sms) == sorted(urgent)
    assert read_checkpoint(state) == 2 * BATCH
    with sqlite3.connect(state) as db:
        sent = [t for (t,) in db.execute("SELECT sent_at FROM outbox WHERE state = 'sent'")]
        rest = [
            t
            for (uid, t) in db.execute("SELECT uid, at FROM handled WHERE folder = 'INBOX'")
            if uid not in urgent
        ]
        assert db.execute("SELECT count(*) FROM handled").fetchone()[0] == 2 * BATCH
    assert len(sent) == len(urgent)
    assert max(sent) < min(rest)  # every SMS had left before the first other mail was decided


def test_after_a_search_that_broke_the_connection_the_account_reads_in_order(
    tmp_path: Path, imap_user, gateway, monkeypatch
) -> None:
    path = write_config(tmp_path / "forwarder.yaml", imap_user, gateway, limits=NO_LIMITS)
    daemon = Daemon(config_module.load(path))
    try:
        daemon.run_round()  # the baseline
        urgent = {3, BATCH + 2}
        imap_user.server.append_many(
            imap_user.user, "INBOX", [make_mail(s) for s in spread(BATCH + 5, urgent)]
        )
        searches = []

        def breaks(self, first, likely):
            searches.append(first)
            raise MailboxError("IMAP search failed: socket error: timed out")

        monkeypatch.setattr(Mailbox, "search_likely", breaks)
        daemon.run_round()  # fails once, reconnects at once and reads in order
        assert searches == [1]
        assert daemon.intake.last_error is None
        assert read_checkpoint(tmp_path / "state.db") == BATCH + 5
        queued = daemon.store.count_states()
        assert sum(queued.values()) == len(urgent)
        imap_user.server.append_many(
            imap_user.user, "INBOX", [make_mail(s) for s in spread(BATCH + 5, set())]
        )
        daemon.run_round()
        assert searches == [1]  # never again in this run
        assert read_checkpoint(tmp_path / "state.db") == 2 * (BATCH + 5)
    finally:
        daemon.shutdown()
        daemon.store.close()


@pytest.fixture
def started(tmp_path: Path, gateway, monkeypatch):
    """A started daemon (IMAP unreachable: no round does anything) whose delivery passes
    block until ``release`` is set; yields (daemon, release)."""
    imap = SimpleNamespace(host="127.0.0.1", port=free_port(), user="u", password="p")
    daemon = Daemon(config_module.load(write_config(tmp_path / "f.yaml", imap, gateway)))
    release, in_pass = threading.Event(), threading.Event()

    def flush() -> None:
        in_pass.set()
        release.wait(30)

    monkeypatch.setattr(daemon, "flush", flush)
    daemon.start()
    daemon._deliver_now.set()
    assert in_pass.wait(5)  # delivery is in a pass, and stays there
    try:
        yield daemon, release
    finally:
        release.set()
        daemon.shutdown()
        daemon.store.close()


def drain_in_thread(daemon: Daemon) -> threading.Thread:
    """``daemon._drain()`` in a thread, returned once it waits (it set the wake-up under the
    condition's lock, and waiting releases that lock)."""
    waiting = threading.Thread(target=daemon._drain)
    waiting.start()
    assert daemon._deliver_now.wait(5)
    with daemon._passes:  # held by _drain from the wake-up until it waits
        pass
    return waiting


def test_intake_waits_for_a_delivery_pass_begun_after_its_commit(started) -> None:
    daemon, release = started
    waiting = drain_in_thread(daemon)
    assert waiting.is_alive()
    release.set()  # the pass under way ends, the one asked for runs and ends
    waiting.join(5)
    assert not waiting.is_alive()
    assert daemon._passes_ended >= 2


def test_intake_stops_waiting_when_delivery_needs_its_lock(started) -> None:
    daemon, _ = started
    waiting = drain_in_thread(daemon)
    with daemon._waiting_for_intake():  # as delivery does before asking IMAP
        waiting.join(5)  # well before DRAIN_WAIT
        assert not waiting.is_alive()
