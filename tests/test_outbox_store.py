"""The outbox table's methods: each state change one commit, the sends log the limits count,
summaries linked to what they report, expiry counted from the due time."""

from __future__ import annotations

from pathlib import Path

import pytest

from forwarder.delivery.policy import Candidate, SendCounts
from forwarder.delivery.states import State
from forwarder.records import LedgerEntry, OutboxItem
from forwarder.store import Store
from tests.support.delivery import T0, FakeClock
from tests.support.delivery import outbox_item as item


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock):
    s = Store(tmp_path / "state.db", clock=clock)
    yield s
    s.close()


def add(store: Store, *items: OutboxItem) -> list[int]:
    handled = [LedgerEntry(i.uid, i.source_message_id, "forward", "r", "") for i in items]
    store.record_batch("INBOX", 7, handled, list(items), advance_to=None)
    by_mid = {r.message_id: r.id for r in store.recent(1000)}
    return [by_mid[i.message_id] for i in items]


def test_a_new_row_is_due_at_its_not_before_and_remembers_it(store: Store, clock) -> None:
    (row_id,) = add(store, item(1, not_before=T0 + 180, unless_read=True))
    assert store.due() == []
    clock.advance(180)
    (row,) = store.due()
    assert (row.id, row.due_at, row.not_before, row.kind) == (row_id, T0 + 180, T0 + 180, "mail")
    assert (row.mail_from, row.mail_subject, row.unless_read) == ("Alice", "subject 1", True)
    assert store.waiting_for_read() == 1


def test_every_final_dot_is_logged_for_the_limits(store: Store, clock) -> None:
    (row_id,) = add(store, item(1))
    store.start_attempt(row_id)
    store.before_dot(row_id)
    assert store.outbox_row(row_id).state == "in_doubt"
    store.retry_later(row_id, error="doubt", not_before=T0 + 30)  # on_doubt: resend
    clock.advance(30)
    store.start_attempt(row_id)
    store.before_dot(row_id)
    store.mark_sent(row_id)
    assert store.send_counts() == SendCounts(minute=2, hour=2, day=2)
    clock.advance(31)
    assert store.send_counts() == SendCounts(minute=1, hour=2, day=2)
    clock.advance(86400)
    assert store.send_counts() == SendCounts()
    assert store.prune_sends(clock.now - 3600) == 2


def test_retry_later_counts_rounds_and_a_restart_makes_the_row_due_again(
    store: Store, clock
) -> None:
    (row_id,) = add(store, item(1))
    store.retry_later(row_id, error="down", not_before=T0 + 60)
    store.retry_later(row_id, error="still down", not_before=T0 + 120)
    row = store.outbox_row(row_id)
    assert (row.state, row.retries, row.last_error, row.not_before) == (
        "pending",
        2,
        "still down",
        T0 + 120,
    )
    assert store.due() == []
    assert store.reset_backoff() == 1
    assert [r.id for r in store.due()] == [row_id]


def test_a_delayed_row_keeps_its_delay_through_a_restart(store: Store) -> None:
    add(store, item(1, not_before=T0 + 180))
    assert store.reset_backoff() == 0
    assert store.due() == []


def test_expire_fails_rows_due_before_the_cutoff_only(store: Store, clock) -> None:
    old, fresh, later = add(
        store, item(1), item(2, not_before=T0 + 100), item(3, not_before=T0 + 10**5)
    )
    store.retry_later(old, error="down", not_before=T0 + 60)
    expired = store.expire(T0 + 50, "too old")
    assert [r.id for r in expired] == [old]
    assert expired[0].last_error == "down"
    row = store.outbox_row(old)
    assert (row.state, row.reason) == ("failed", "too old")
    assert store.outbox_row(fresh).state == store.outbox_row(later).state == "pending"


def test_settle_records_the_reason_and_the_original(store: Store) -> None:
    first, second = add(store, item(1, key="k"), item(2, key="k"))
    store.start_attempt(first)
    store.before_dot(first)
    store.mark_sent(first)
    store.settle(second, State.DUPLICATE, "same as #1", duplicate_of=first)
    row = store.outbox_row(second)
    assert (row.state, row.reason, row.duplicate_of) == ("duplicate", "same as #1", first)
    assert store.dedup_candidates("k", "380501234567", exclude=second) == [
        Candidate(first, "sent", T0)
    ]
    assert store.dedup_candidates("k", "380501234567", exclude=first) == []  # not an original
    assert store.dedup_candidates("k", "380671112233", exclude=second) == []  # other recipient


def test_a_summary_is_queued_first_and_linked_to_the_rows_it_reports(store: Store) -> None:
    ids = add(store, item(1), item(2), item(3))
    for row_id in ids[:2]:
        store.settle(row_id, State.HELD, "limit")
    assert [r.id for r in store.held_unsummarised()] == ids[:2]
    assert not store.summary_pending()
    summary = store.add_summary(item(0, not_before=T0 + 1), ids[:2])
    other = OutboxItem(**{**item(0, not_before=T0 + 1).__dict__, "message_id": "<s2@f>"})
    second = store.add_summary(other, [])
    rows = {r.id: r for r in store.recent(10)}
    assert (rows[summary].kind, rows[summary].folder, rows[summary].uid) == ("summary", "", -1)
    assert rows[second].uid == -2  # each summary its own negative uid: no clash
    assert store.summary_pending()
    assert store.held_unsummarised() == []
    assert {rows[i].summary_id for i in ids[:2]} == {summary}
    assert [r.id for r in store.due(T0 + 1)][:2] == [summary, second]  # summaries first
