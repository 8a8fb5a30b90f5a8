"""The outbox state machine: every legal transition works through the store's named
transitions, every illegal one raises and leaves the row as it was."""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable
from pathlib import Path

import pytest

from forwarder.delivery.states import FINAL, TRANSITIONS, IllegalTransition, State, check
from forwarder.records import LedgerEntry
from forwarder.store import Store
from tests.support.delivery import T0, FakeClock, outbox_item

#: The store's named transition that moves a row into each state.
MOVE: dict[State, Callable[[Store, int], None]] = {
    State.PENDING: lambda s, i: s.wait(i),
    State.SENDING: lambda s, i: s.start_attempt(i),
    State.IN_DOUBT: lambda s, i: s.before_dot(i),
    State.SENT: lambda s, i: s.mark_sent(i),
    State.FAILED: lambda s, i: s.fail(i, error="permanent"),
    State.HELD: lambda s, i: s.settle(i, State.HELD, "limit"),
    State.DUPLICATE: lambda s, i: s.settle(i, State.DUPLICATE, "same", duplicate_of=None),
    State.CANCELLED: lambda s, i: s.settle(i, State.CANCELLED, "read"),
}


def _path_to(target: State) -> list[State]:
    """The shortest run of legal moves from a new (pending) row to ``target``."""
    paths = {State.PENDING: [State.PENDING]}
    todo = deque([State.PENDING])
    while todo:
        here = todo.popleft()
        for nxt in sorted(TRANSITIONS[here]):
            if nxt not in paths:
                paths[nxt] = [*paths[here], nxt]
                todo.append(nxt)
    return paths[target]


_uids = itertools.count(1)


def _row_in(store: Store, state: State) -> int:
    uid = next(_uids)
    new = outbox_item(uid)
    store.record_batch(
        "INBOX",
        7,
        [LedgerEntry(uid, new.source_message_id, "forward", "r", "")],
        [new],
        advance_to=None,
    )
    row_id = next(r.id for r in store.recent(1000) if r.message_id == new.message_id)
    for step in _path_to(state)[1:]:
        MOVE[step](store, row_id)
    assert store.outbox_row(row_id).state is state
    return row_id


@pytest.fixture
def store(tmp_path: Path):
    s = Store(tmp_path / "state.db", clock=FakeClock(T0))
    yield s
    s.close()


def test_every_state_is_reachable_from_pending() -> None:
    assert {s for s in State if _path_to(s)} == set(State)


@pytest.mark.parametrize(
    ("src", "dst"), [(s, d) for s in State for d in sorted(TRANSITIONS[s])], ids=str
)
def test_each_legal_transition_is_made_by_the_store(store: Store, src: State, dst: State) -> None:
    row_id = _row_in(store, src)
    MOVE[dst](store, row_id)
    assert store.outbox_row(row_id).state is dst


@pytest.mark.parametrize(
    ("src", "dst"), [(s, d) for s in State for d in State if d not in TRANSITIONS[s]], ids=str
)
def test_each_illegal_transition_raises_and_changes_nothing(
    store: Store, src: State, dst: State
) -> None:
    row_id = _row_in(store, src)
    before = store.outbox_row(row_id)
    with pytest.raises(IllegalTransition, match=f"from {src} to {dst}"):
        MOVE[dst](store, row_id)
    assert store.outbox_row(row_id) == before


def test_final_states_have_no_way_out() -> None:
    assert {State.FAILED, State.HELD, State.DUPLICATE, State.CANCELLED} == FINAL
    for state in FINAL:
        for other in State:
            with pytest.raises(IllegalTransition):
                check(state, other)


def test_a_resend_moves_a_sent_row_back_to_pending_but_never_a_failed_one(store: Store) -> None:
    sent = _row_in(store, State.SENT)
    old = store.outbox_row(sent).message_id
    store.resend_as(sent, "<new@f>", not_before=T0)
    row = store.outbox_row(sent)
    assert (row.state, row.message_id, row.previous_ids) == (State.PENDING, "<new@f>", old)
    failed = _row_in(store, State.FAILED)
    with pytest.raises(IllegalTransition):
        store.resend_as(failed, "<other@f>", not_before=T0)
