"""Which mail is new, against a real Dovecot and a real state file: checkpoints, baselines,
UIDVALIDITY, expunges, late arrivals, bursts in batches, the keyword."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from imapclient.exceptions import IMAPClientError

from forwarder.imap.checkpoints import BATCH, poll_folder
from forwarder.imap.connection import Mailbox, MailboxError
from forwarder.records import LedgerEntry
from forwarder.store import Store
from tests.support.configs import imap_config
from tests.support.deciders import Decider
from tests.support.servers.mails import make_mail


@pytest.fixture
def store(tmp_path: Path) -> Store:
    state = Store(tmp_path / "state.db")
    yield state
    state.close()


@pytest.fixture
def mailbox(imap_user) -> Mailbox:
    with Mailbox(imap_config(imap_user)) as connected:
        yield connected


def poll(mailbox: Mailbox, store: Store, folder: str = "INBOX", **options) -> Decider:
    decider = Decider(store)
    poll_folder(mailbox, store, folder, decider, **options)
    return decider


def test_first_start_baselines_any_folder_size_with_one_command(imap_user, store) -> None:
    server, user = imap_user.server, imap_user.user
    server.fill(user, "Small", 10)
    server.fill(user, "Big", 20_000)
    costs = {}
    for folder, size in (("Small", 10), ("Big", 20_000)):
        with Mailbox(imap_config(imap_user)) as mailbox:
            decider = poll(mailbox, store, folder)
            costs[folder] = mailbox.commands
        assert decider.batches == []
        assert store.checkpoint(folder).last_uid == size
    assert costs == {"Small": 1, "Big": 1}  # SELECT, whose UIDNEXT is the baseline

    uid = server.append(user, "Big", make_mail("urgent: after the baseline"))
    with Mailbox(imap_config(imap_user)) as mailbox:
        assert poll(mailbox, store, "Big").uids == [uid] == [20_001]


def test_new_mail_is_handled_once_and_a_quiet_poll_is_one_select(imap_user, mailbox, store):
    server, user = imap_user.server, imap_user.user
    poll(mailbox, store)
    uids = [server.append(user, "INBOX", make_mail(s)) for s in ("hello", "URGENT: disk")]
    decider = poll(mailbox, store)
    assert decider.uids == uids
    assert [m.subject for m in decider.texts] == ["URGENT: disk"]
    assert decider.texts[0].body.startswith("Hello from the test harness")
    before = mailbox.commands
    assert poll(mailbox, store).batches == []
    assert mailbox.commands - before == 1


def test_uidvalidity_change_rebaselines_with_a_warning(imap_user, mailbox, store, caplog) -> None:
    server, user = imap_user.server, imap_user.user
    server.create_folder(user, "Alerts")
    server.append(user, "Alerts", make_mail("urgent 1"))
    poll(mailbox, store, "Alerts")
    old = store.checkpoint("Alerts")
    new_validity = server.recreate_folder(user, "Alerts")
    server.append(user, "Alerts", make_mail("urgent: restored from backup"))
    with caplog.at_level(logging.WARNING, logger="forwarder.imap.checkpoints"):
        assert poll(mailbox, store, "Alerts").batches == []
    assert f"UIDVALIDITY changed from {old.uidvalidity} to {new_validity}" in caplog.text
    assert store.checkpoint("Alerts").uidvalidity == new_validity
    uid = server.append(user, "Alerts", make_mail("urgent: really new"))
    assert poll(mailbox, store, "Alerts").uids == [uid]


def test_expunging_handled_mail_makes_nothing_look_new(imap_user, mailbox, store) -> None:
    server, user = imap_user.server, imap_user.user
    poll(mailbox, store)
    first = [server.append(user, "INBOX", make_mail(f"urgent {n}")) for n in range(3)]
    assert poll(mailbox, store).uids == first
    server.expunge(user, "INBOX", first[:1] + first[2:])  # the oldest and the newest
    assert poll(mailbox, store, check_late=True).batches == []
    uid = server.append(user, "INBOX", make_mail("urgent: new"))
    assert poll(mailbox, store, check_late=True).uids == [uid]
    assert store.checkpoint("INBOX").last_uid == uid


def test_mail_gone_before_it_was_seen_moves_the_checkpoint_past_it(imap_user, mailbox, store):
    server, user = imap_user.server, imap_user.user
    poll(mailbox, store)
    uid = server.append(user, "INBOX", make_mail("moved away by another client at once"))
    server.expunge(user, "INBOX", [uid])
    assert poll(mailbox, store).batches == []
    assert store.checkpoint("INBOX").last_uid == uid
    before = mailbox.commands
    poll(mailbox, store)
    assert mailbox.commands - before == 1  # back to one SELECT per quiet poll


def test_mail_that_appears_below_the_checkpoint_is_handled_late_once(imap_user, mailbox, store):
    """Simulates a UID that became visible after a higher one: the ledger lacks it."""
    server, user = imap_user.server, imap_user.user
    poll(mailbox, store)
    uids = [server.append(user, "INBOX", make_mail(f"urgent {n}")) for n in range(3)]
    validity = store.checkpoint("INBOX").uidvalidity
    seen = [LedgerEntry(uid, "", "skip", None, "test") for uid in (uids[0], uids[2])]
    store.record_batch("INBOX", validity, seen, [], advance_to=uids[2])

    assert poll(mailbox, store).batches == []  # nothing new: late ones wait for the safety net
    decider = poll(mailbox, store, check_late=True)
    assert decider.uids == [uids[1]]
    assert decider.batches[0].advance_to is None  # the checkpoint is not moved by it
    assert store.checkpoint("INBOX").last_uid == uids[2]
    assert poll(mailbox, store, check_late=True).batches == []


def test_a_late_arrival_deep_inside_a_burst_is_still_caught(imap_user, mailbox, store) -> None:
    """The checkpoint jumps a whole burst (more than LATE_WINDOW) in one poll; a UID in it
    that was not visible then must still be found by the next safety-net poll."""
    server, user = imap_user.server, imap_user.user
    poll(mailbox, store)
    server.fill(user, "INBOX", 300)
    assert len(poll(mailbox, store).uids) == 300
    validity = store.checkpoint("INBOX").uidvalidity
    with store.transaction() as db:  # as if UID 50 had not been visible to that poll
        db.execute("DELETE FROM handled WHERE folder = 'INBOX' AND uid = 50")
    decider = poll(mailbox, store, check_late=True)
    assert decider.uids == [50]
    assert store.handled_uids("INBOX", validity, [50]) == {50}
    assert store.checkpoint("INBOX").last_uid == 300


def test_mail_there_before_the_baseline_is_never_late(imap_user, mailbox, store) -> None:
    server, user = imap_user.server, imap_user.user
    for n in range(5):
        server.append(user, "INBOX", make_mail(f"urgent old {n}"))
    poll(mailbox, store)
    assert poll(mailbox, store, check_late=True).batches == []
    uid = server.append(user, "INBOX", make_mail("urgent new"))
    assert poll(mailbox, store, check_late=True).uids == [uid]


def test_a_burst_is_handled_in_batches_with_a_few_commands(imap_user, mailbox, store) -> None:
    server, user = imap_user.server, imap_user.user
    poll(mailbox, store)
    server.fill(user, "INBOX", 1000)  # "Filler 1" … "Filler 1000": skipped
    for n in range(5):
        server.append(user, "INBOX", make_mail(f"urgent {n}"))  # land in the last batch
    before = mailbox.commands
    decider = poll(mailbox, store)
    assert decider.uids == list(range(1, 1006))
    assert [len(b.mails) for b in decider.batches] == [BATCH] * 5 + [5]
    assert [b.advance_to for b in decider.batches] == [200, 400, 600, 800, 1000, 1005]
    # SELECT, SEARCH, one summary FETCH per batch, one text FETCH for the 5 urgent ones.
    assert mailbox.commands - before == 2 + 6 + 1
    assert len(decider.texts) == 5
    assert store.checkpoint("INBOX").last_uid == 1005


def test_forwarded_mail_is_flagged_with_the_keyword_and_seen_is_untouched(imap_user, store):
    server, user = imap_user.server, imap_user.user
    with Mailbox(imap_config(imap_user, keyword="$Forwarded")) as mailbox:
        poll(mailbox, store)
        skipped = server.append(user, "INBOX", make_mail("hello"))
        urgent = server.append(user, "INBOX", make_mail("urgent"))
        poll(mailbox, store)
    assert server.fetch_flags(user, "INBOX") == {skipped: set(), urgent: {"$Forwarded"}}


def refuse_fetch(mailbox: Mailbox, uids: set[int], *, text_only: bool = False) -> None:
    """The server answers NO to every FETCH that names one of ``uids`` (emptied: it recovers),
    as Gmail, Yahoo and Exchange do, for good, for a message they cannot read."""
    real = mailbox.client.fetch

    def fetch(messages, data, *args, **kwargs):
        asks_text = not any("HEADER]" in str(item) for item in data)
        if uids & set(messages) and (asks_text or not text_only):
            raise IMAPClientError("fetch failed: Some messages could not be FETCHed (Failure)")
        return real(messages, data, *args, **kwargs)

    mailbox.client.fetch = fetch


@pytest.mark.parametrize("text_only", [False, True], ids=["header", "text"])
def test_a_mail_the_server_will_not_fetch_does_not_block_the_mail_behind_it(
    imap_user, mailbox, store, caplog, text_only: bool
) -> None:
    server, user = imap_user.server, imap_user.user
    poll(mailbox, store)
    first, broken, last = [server.append(user, "INBOX", make_mail(f"urgent {n}")) for n in range(3)]
    refused = {broken}
    refuse_fetch(mailbox, refused, text_only=text_only)
    with caplog.at_level(logging.WARNING, logger="forwarder.imap.checkpoints"):
        decider = poll(mailbox, store)
    assert [m.uid for m in decider.texts] == [first, last]
    assert store.checkpoint("INBOX").last_uid == last
    assert f"INBOX/{broken}: the server would not let it be read" in caplog.text
    assert "Some messages could not be FETCHed" in caplog.text
    # Not in the ledger: the late window tries it again, and it goes once the server lets it.
    assert poll(mailbox, store, check_late=True).texts == []
    refused.clear()
    assert [m.uid for m in poll(mailbox, store, check_late=True).texts] == [broken]
    assert poll(mailbox, store, check_late=True).batches == []


def test_a_server_that_refuses_every_fetch_moves_no_checkpoint(imap_user, mailbox, store) -> None:
    server, user = imap_user.server, imap_user.user
    poll(mailbox, store)
    before = store.checkpoint("INBOX").last_uid
    uids = [server.append(user, "INBOX", make_mail(f"urgent {n}")) for n in range(3)]
    refuse_fetch(mailbox, set(uids))
    with pytest.raises(MailboxError, match="could not be FETCHed"):
        poll(mailbox, store)
    assert store.checkpoint("INBOX").last_uid == before  # the next round reads them all


def test_a_folder_whose_search_is_refused_does_not_hold_up_the_folders_after_it(
    tmp_path, imap_user, gateway, clock, daemons, monkeypatch
) -> None:
    """The daemon's round goes on to the next folder when one folder's command is refused
    (NO/BAD: the connection is fine); the refused folder keeps its checkpoint."""
    from forwarder import config as config_module
    from forwarder.imap.connection import CommandRefused, Mailbox
    from tests.support.configs import write_config
    from tests.support.delivery import make_daemon

    server, user = imap_user.server, imap_user.user
    server.create_folder(user, "Broken")
    path = write_config(
        tmp_path / "f.yaml",
        imap_user,
        gateway,
        imap={"folders": ["Broken", "INBOX"], "idle": False},
    )
    daemon = make_daemon(config_module.load(path), clock)
    daemons.append(daemon)
    daemon.intake.poll()  # baselines both
    search = Mailbox.uids_from

    def refuse_in_broken(self, first):
        if self.selected == "Broken":
            raise CommandRefused("IMAP SEARCH refused: NO [SERVERBUG] simulated")
        return search(self, first)

    monkeypatch.setattr(Mailbox, "uids_from", refuse_in_broken)
    server.append(user, "Broken", make_mail("urgent: in the broken folder"))
    uid = server.append(user, "INBOX", make_mail("urgent: in INBOX"))
    daemon.intake.poll()
    assert daemon.store.checkpoint("INBOX").last_uid == uid
    assert daemon.store.checkpoint("Broken").last_uid == 0
    monkeypatch.setattr(Mailbox, "uids_from", search)
    daemon.intake.poll()
    assert daemon.store.checkpoint("Broken").last_uid == 1
