"""IDLE watchers beat for the watchdog against a real Dovecot: in IDLE, backing off, and
once more, with None, when they are stopped on purpose."""

from __future__ import annotations

import dataclasses
import threading

import pytest

from forwarder.configfile.schema import Secret
from forwarder.imap import idle
from forwarder.imap.idle import CONNECTED, IdleWatcher, connect_budget, idle_budget
from forwarder.ops.watchdog import Progress
from tests.support.configs import imap_config
from tests.support.idle import Events


class Beats:
    def __init__(self) -> None:
        self.seen: list[float | None] = []
        self._cond = threading.Condition()

    def __call__(self, folder: str, within: float | None) -> None:
        assert folder == "INBOX"
        with self._cond:
            self.seen.append(within)
            self._cond.notify_all()

    def wait_for(self, condition, timeout: float = 10.0) -> list[float | None]:
        with self._cond:
            assert self._cond.wait_for(lambda: condition(self.seen), timeout), self.seen
            return list(self.seen)


@pytest.fixture
def short_slices(monkeypatch) -> None:
    monkeypatch.setattr(idle, "IDLE_SLICE", 0.1)


def test_a_watcher_in_idle_beats_after_every_wait_and_says_none_when_stopped(
    imap_user, short_slices
) -> None:
    config = imap_config(imap_user)
    beats, events = Beats(), Events()
    progress = Progress()
    watch = progress.watch("IDLE INBOX", bound=connect_budget(config))

    def heartbeat(folder: str, within: float | None) -> None:
        beats(folder, within)
        watch.forget() if within is None else watch.beat(within)

    watcher = IdleWatcher(config, "INBOX", events, heartbeat=heartbeat)
    watcher.start()
    try:
        events.wait_for(CONNECTED)
        seen = beats.wait_for(lambda s: s.count(idle_budget(config)) >= 3)
        assert seen[0] == connect_budget(config)  # before connecting
        assert progress.verdict().healthy
    finally:
        watcher.stop()
        watcher.join(5)
    assert not watcher.alive
    assert beats.wait_for(lambda s: s[-1] is None)[-1] is None
    assert progress.watching() == []  # stopped on purpose: no longer the watchdog's concern


def test_a_watcher_refused_by_the_server_beats_before_each_backoff_wait(imap_user) -> None:
    config = dataclasses.replace(imap_config(imap_user), password=Secret("wrong password"))
    beats = Beats()
    watcher = IdleWatcher(config, "INBOX", Events(), heartbeat=beats)
    watcher.start()
    try:
        seen = beats.wait_for(lambda s: len(s) >= 2)
    finally:
        watcher.stop()
        watcher.join(5)
    # The login refused: the slow policy waits 30 to 60 s, and the beat says so.
    assert seen[0] == connect_budget(config)
    within = seen[1]
    assert within is not None and 30 + connect_budget(config) <= within
    assert within <= 60 + connect_budget(config)
