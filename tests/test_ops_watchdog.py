"""The watchdog pings only while forwarder makes progress: the decision, then the thread."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest

from forwarder.ops.systemd import Notifier
from forwarder.ops.watchdog import Progress, WatchdogPinger, round_bound
from tests.support.notifysocket import NotifySocket


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_healthy_while_every_watched_loop_beats_within_its_bound() -> None:
    clock = Clock()
    progress = Progress(clock)
    assert progress.verdict().healthy  # nothing watched yet: starting up
    progress.watch("round loop", bound=60)
    progress.watch("IDLE INBOX", bound=40)
    clock.advance(35)
    progress.beat("IDLE INBOX")
    clock.advance(25)
    assert progress.verdict().healthy  # round at 60 s: exactly its bound
    clock.advance(1)
    verdict = progress.verdict()
    assert not verdict.healthy
    assert verdict.reason == "round loop has shown no progress for 61 s (expected within 60 s)"
    progress.beat("round loop")
    assert progress.verdict().healthy


def test_a_backoff_wait_announced_with_the_beat_is_not_a_hang() -> None:
    clock = Clock()
    progress = Progress(clock)
    progress.watch("IDLE INBOX", bound=40)
    progress.beat("IDLE INBOX", within=1800 + 45)  # server refuses the login: 30 min wait
    clock.advance(1800)
    assert progress.verdict().healthy
    clock.advance(46)
    assert not progress.verdict().healthy
    # ``within`` never shortens the bound
    progress.beat("IDLE INBOX", within=1)
    clock.advance(39)
    assert progress.verdict().healthy


def test_a_dead_thread_is_unhealthy_at_once_and_a_forgotten_one_no_longer_counts() -> None:
    clock = Clock()
    progress = Progress(clock)
    alive = threading.Event()
    alive.set()
    progress.watch("IDLE Alerts", bound=40, alive=alive.is_set)
    assert progress.verdict().healthy
    alive.clear()
    assert progress.verdict().reason == "IDLE Alerts has died"
    progress.forget("IDLE Alerts")  # e.g. the server turned out to have no IDLE
    assert progress.verdict().healthy
    assert progress.watching() == []


def test_a_liveness_check_that_raises_counts_as_dead(caplog) -> None:
    progress = Progress(Clock())

    def broken() -> bool:
        raise RuntimeError("bug")

    progress.watch("IDLE INBOX", bound=40, alive=broken)
    with caplog.at_level(logging.ERROR):
        assert not progress.verdict().healthy


def test_a_beat_for_a_name_not_watched_is_ignored() -> None:
    clock = Clock()
    progress = Progress(clock)
    progress.beat("IDLE gone")
    assert progress.watching() == []


def test_a_handle_of_an_earlier_generation_cannot_beat_for_or_forget_the_new_one() -> None:
    clock = Clock()
    progress = Progress(clock)
    old = progress.watch("IDLE INBOX", bound=40)
    new = progress.watch("IDLE INBOX", bound=40)  # reload: a new thread, the same name
    clock.advance(30)
    old.beat()  # the old thread, ending late
    old.forget()
    assert progress.watching() == ["IDLE INBOX"]
    clock.advance(11)
    assert not progress.verdict().healthy  # the old beat did not count for the new thread
    new.beat()
    assert progress.verdict().healthy
    new.forget()
    assert progress.watching() == []


def test_ping_due_needs_health_and_the_cadence() -> None:
    clock = Clock()
    progress = Progress(clock)
    progress.watch("round loop", bound=100)
    assert progress.ping_due(clock(), every=30)
    progress.pinged(clock())
    clock.advance(29)
    assert not progress.ping_due(clock(), every=30)
    clock.advance(1)
    assert progress.ping_due(clock(), every=30)
    clock.advance(71)
    assert not progress.ping_due(clock(), every=30)  # due, but the round loop is stuck


def test_round_bound_leaves_slow_rounds_alone() -> None:
    assert round_bound(60, 30) == 900  # the defaults: 15 min
    assert round_bound(600, 30) == 1800
    assert round_bound(1, 5) == 900


@pytest.fixture
def notify_socket() -> Iterator[NotifySocket]:
    sock = NotifySocket()
    yield sock
    sock.close()


@pytest.fixture
def pingers() -> Iterator[list[WatchdogPinger]]:
    started: list[WatchdogPinger] = []
    yield started
    for pinger in started:
        pinger.stop()
        pinger.notifier.close()


def test_the_pinger_pings_at_half_the_interval_while_progress_is_made(
    notify_socket: NotifySocket, pingers: list[WatchdogPinger]
) -> None:
    clock = Clock()
    progress = Progress(clock)
    progress.watch("round loop", bound=60)
    notifier = Notifier(notify_socket.env)
    pinger = WatchdogPinger(notifier, progress, interval=0.2)
    assert pinger.every == 0.1
    pingers.append(pinger)
    pinger.start()
    for _ in range(3):
        assert notify_socket.receive(timeout=5) == {"WATCHDOG": "1"}
    assert pinger.wait_checks(3, timeout=5)  # the count follows the send
    assert pinger.pings >= 3


def test_the_pinger_stops_pinging_when_a_round_hangs_and_resumes_after(
    notify_socket: NotifySocket, pingers: list[WatchdogPinger], caplog
) -> None:
    clock = Clock()
    progress = Progress(clock)
    progress.watch("round loop", bound=60)
    pinger = WatchdogPinger(Notifier(notify_socket.env), progress, interval=0.2)
    pingers.append(pinger)
    with caplog.at_level(logging.ERROR, logger="forwarder.ops.watchdog"):
        pinger.start()
        assert notify_socket.receive() == {"WATCHDOG": "1"}
        clock.advance(61)  # the round has not finished for longer than its bound
        checks = pinger.checks
        assert pinger.wait_checks(checks + 1, timeout=5)
        notify_socket.pending()  # a ping that left before the check saw the hang
        pings = pinger.pings
        assert pinger.wait_checks(pinger.checks + 3, timeout=5)
        assert pinger.pings == pings
        assert notify_socket.pending() == []
        assert pinger.withholding is not None and "round loop" in pinger.withholding
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1  # said once, not at every check
    progress.beat("round loop")
    assert notify_socket.receive() == {"WATCHDOG": "1"}
    assert pinger.withholding is None


def test_without_a_watchdog_interval_the_pinger_does_not_start() -> None:
    pinger = WatchdogPinger(Notifier({}), Progress(), interval=None)
    pinger.start()
    assert pinger._thread is None
    pinger.stop()
