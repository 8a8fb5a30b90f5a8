"""The state file: checkpoints and outbox rows commit together, and nothing is written twice."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from forwarder.records import LedgerEntry, OutboxItem
from forwarder.store import Store


def item(uid: int, message_id: str = "", recipient: str = "380501234567") -> OutboxItem:
    return OutboxItem(
        uid=uid,
        source_message_id=f"<m{uid}@x>",
        rule="r",
        recipient=recipient,
        to_addr=f"{recipient}@mail.alphasms.com.ua",
        sender="Alpha",
        subject_masked="Alpha",
        text=f"sms {uid}",
        message_id=message_id or f"<fwd.{uid}@f>",
        not_before=0.0,
    )


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "state.db", clock=lambda: 1000.0)
    yield s
    s.close()


def test_state_file_uses_wal_and_full_sync(store: Store) -> None:
    assert store._query("PRAGMA journal_mode")[0][0] == "wal"
    assert store._query("PRAGMA synchronous")[0][0] == 2  # FULL


def test_batch_commits_decisions_outbox_and_checkpoint_together(store: Store) -> None:
    store.baseline("INBOX", 7, 10)
    store.record_batch(
        "INBOX",
        7,
        [
            LedgerEntry(11, "<m11@x>", "forward", "r", "why"),
            LedgerEntry(12, "<m12@x>", "skip", None, "no"),
        ],
        [item(11)],
        advance_to=12,
    )
    assert store.checkpoint("INBOX").last_uid == 12
    assert [r.uid for r in store.due(now=1.0)] == [11]
    assert store.handled_uids("INBOX", 7, [10, 11, 12, 13]) == {11, 12}


def test_a_failed_batch_leaves_no_trace(store: Store) -> None:
    store.baseline("INBOX", 7, 10)
    unstorable = OutboxItem(**{**item(12).__dict__, "text": object()})
    with pytest.raises(sqlite3.Error):
        # the second row cannot be written: the decisions before it must roll back too
        store.record_batch(
            "INBOX",
            7,
            [LedgerEntry(11, "<m>", "forward", "r", "")],
            [item(11), unstorable],
            advance_to=12,
        )
    assert store.checkpoint("INBOX").last_uid == 10
    assert store.due(now=1.0) == []
    assert store.handled_uids("INBOX", 7, [11]) == set()


def test_the_same_mail_is_never_queued_twice(store: Store) -> None:
    for _ in range(2):
        store.record_batch(
            "INBOX",
            7,
            [LedgerEntry(11, "<m>", "forward", "r", "")],
            [item(11, f"<fwd.{_}@f>")],
            advance_to=11,
        )
    assert len(store.due(now=1.0)) == 1


def test_checkpoint_never_moves_backwards_but_follows_a_new_uidvalidity(store: Store) -> None:
    store.baseline("INBOX", 7, 50)
    store.record_batch("INBOX", 7, [], [], advance_to=20)
    assert store.checkpoint("INBOX").last_uid == 50
    store.record_batch("INBOX", 8, [], [], advance_to=3)
    assert (store.checkpoint("INBOX").uidvalidity, store.checkpoint("INBOX").last_uid) == (8, 3)


def test_states_and_attempts_are_recorded(store: Store) -> None:
    store.record_batch("INBOX", 7, [], [item(1)], advance_to=1)
    (row,) = store.due(now=1.0)
    store.start_attempt(row.id)
    store.before_dot(row.id)
    store.mark_sent(row.id)
    (row,) = store.recent()
    assert (row.state, row.attempts, row.sent_at) == ("sent", 1, 1000.0)
    assert store.sent_since(999.0) == 1


def test_delayed_rows_are_not_due_before_their_time(store: Store) -> None:
    delayed = OutboxItem(**{**item(1).__dict__, "not_before": 2000.0})
    store.record_batch("INBOX", 7, [], [delayed], advance_to=1)
    assert store.due(now=1999.0) == []
    assert len(store.due(now=2000.0)) == 1


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    Store(tmp_path / "s.db").set_meta("schema_version", "999")
    with pytest.raises(RuntimeError, match="newer forwarder"):
        Store(tmp_path / "s.db")


def test_a_failed_commit_does_not_leave_the_state_file_in_a_transaction(store: Store) -> None:
    # A COMMIT can fail (disk full, I/O error); the next write must still work afterwards.
    # A deferred foreign key is a portable way to make exactly the COMMIT fail.
    store._db.execute("CREATE TABLE p (id INTEGER PRIMARY KEY)")
    store._db.execute("CREATE TABLE c (p INTEGER REFERENCES p (id) DEFERRABLE INITIALLY DEFERRED)")
    with pytest.raises(sqlite3.IntegrityError), store.transaction() as db:
        db.execute("INSERT INTO c VALUES (1)")
    store.set_meta("after", "works")
    assert store.get_meta("after") == "works"
