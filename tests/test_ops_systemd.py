"""sd_notify: the messages reach a real datagram socket, path or abstract; no-ops without one."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from forwarder.ops.systemd import Notifier, watchdog_interval
from tests.support.notifysocket import NotifySocket


@pytest.fixture(params=[False, True], ids=["path", "abstract"])
def notify_socket(request) -> Iterator[NotifySocket]:
    sock = NotifySocket(abstract=request.param)
    yield sock
    sock.close()


def test_every_message_arrives_as_systemd_reads_it(notify_socket: NotifySocket) -> None:
    notifier = Notifier(notify_socket.env)
    assert notifier.enabled
    assert notifier.ready("watching INBOX · 0 SMS today")
    assert notify_socket.receive() == {"READY": "1", "STATUS": "watching INBOX · 0 SMS today"}
    assert notifier.status("watching Вхідні")  # UTF-8: a Cyrillic folder name
    assert notify_socket.receive() == {"STATUS": "watching Вхідні"}
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert notifier.reloading()
    message = notify_socket.receive()
    assert message["RELOADING"] == "1"
    assert int(message["MONOTONIC_USEC"]) >= before
    assert notifier.ready()
    assert notify_socket.receive() == {"READY": "1"}
    assert notifier.watchdog()
    assert notify_socket.receive() == {"WATCHDOG": "1"}
    assert notifier.stopping("stopping after the current mail")
    assert notify_socket.receive() == {
        "STOPPING": "1",
        "STATUS": "stopping after the current mail",
    }
    assert notifier.sent == 6
    notifier.close()


def test_a_line_break_in_a_status_cannot_forge_another_message(
    notify_socket: NotifySocket,
) -> None:
    notifier = Notifier(notify_socket.env)
    notifier.status("IMAP: refused\nREADY=1")
    notifier.close()
    assert notify_socket.receive() == {"STATUS": "IMAP: refused READY=1"}


def test_without_notify_socket_nothing_is_sent_and_nothing_fails() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    assert notifier.ready() is False
    assert notifier.watchdog() is False
    assert notifier.sent == 0


def test_a_socket_that_went_away_does_not_raise_and_a_new_one_is_reached() -> None:
    sock = NotifySocket(abstract=True)
    name = sock.address[1:]
    notifier = Notifier(sock.env)
    assert notifier.watchdog() is True
    sock.close()  # systemd re-executing itself: for a moment nobody listens
    assert notifier.watchdog() is False
    assert notifier.watchdog() is False
    again = NotifySocket(abstract=True, name=name)
    try:
        assert notifier.watchdog() is True
        assert again.receive() == {"WATCHDOG": "1"}
        assert notifier.sent == 2
    finally:
        notifier.close()
        again.close()


def test_an_unusable_notify_socket_value_disables_notifying() -> None:
    assert not Notifier({"NOTIFY_SOCKET": "vsock:2:1234"}).enabled


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "60000000"}, 60.0),
        ({"WATCHDOG_USEC": "500000", "WATCHDOG_PID": str(os.getpid())}, 0.5),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "1"}, None),  # another process's
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "x"}, None),
    ],
)
def test_watchdog_interval_follows_sd_watchdog_enabled(
    env: dict[str, str], expected: float | None
) -> None:
    assert watchdog_interval(env) == expected
