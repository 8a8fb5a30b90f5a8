"""The health ping against a real local HTTP server: when it pings, what it sends, and that
a slow or dead ping service never holds up a round."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from forwarder.ops.health import HealthPinger, fail_url, where
from tests.support.health import UUID, PingService
from tests.support.servers import free_port


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def service() -> Iterator[PingService]:
    svc = PingService()
    yield svc
    svc.close()


@pytest.fixture
def pingers() -> Iterator[list[HealthPinger]]:
    made: list[HealthPinger] = []
    yield made
    for pinger in made:
        pinger.stop(timeout=5)


def make(url: str, pingers: list[HealthPinger], **kwargs) -> tuple[HealthPinger, Clock]:
    clock = Clock()
    pinger = HealthPinger(url, clock=clock, timeout=5, **kwargs)
    pingers.append(pinger)
    pinger.start()
    return pinger, clock


def test_a_good_round_pings_at_most_once_a_minute(service, pingers) -> None:
    pinger, clock = make(service.url, pingers)
    pinger.round_ok()
    assert pinger.wait_sent(1, timeout=5)
    for _ in range(5):
        clock.now += 10
        pinger.round_ok()  # within the minute: no request
    clock.now += 10  # 60 s after the first
    pinger.round_ok()
    assert pinger.wait_sent(2, timeout=5)
    hits = service.wait_for(2)
    assert [(h.method, h.path) for h in hits] == [("GET", f"/{UUID}"), ("GET", f"/{UUID}")]
    assert pinger.sent == 2 and pinger.failed == 0


def test_a_failed_round_posts_the_reason_to_fail_at_once(service, pingers) -> None:
    pinger, clock = make(service.url, pingers)
    pinger.round_ok()
    pinger.wait_sent(1, 5)
    clock.now += 5
    pinger.round_failed("SMTP: 535 authentication failed;\n sending is halted")
    pinger.wait_sent(2, 5)
    clock.now += 5
    pinger.round_failed("SMTP: 535 authentication failed; sending is halted")  # the same: quiet
    clock.now += 5
    pinger.round_ok()  # recovery is news: at once, despite the minute
    pinger.wait_sent(3, 5)
    hits = service.wait_for(3)
    assert [(h.method, h.path) for h in hits] == [
        ("GET", f"/{UUID}"),
        ("POST", f"/{UUID}/fail"),
        ("GET", f"/{UUID}"),
    ]
    assert hits[1].body == b"SMTP: 535 authentication failed; sending is halted"
    assert hits[1].content_type == "text/plain; charset=utf-8"


def test_a_lasting_failure_is_repeated_once_a_minute_and_a_new_reason_at_once(
    service, pingers
) -> None:
    pinger, clock = make(service.url, pingers)
    pinger.round_failed("IMAP: login refused")
    pinger.wait_sent(1, 5)
    clock.now += 30
    pinger.round_failed("IMAP: login refused")
    clock.now += 30
    pinger.round_failed("IMAP: login refused")
    pinger.wait_sent(2, 5)
    clock.now += 1
    pinger.round_failed("IMAP: cannot connect")
    pinger.wait_sent(3, 5)
    assert [h.body for h in service.wait_for(3)] == [
        b"IMAP: login refused",
        b"IMAP: login refused",
        b"IMAP: cannot connect",
    ]


def test_a_hanging_ping_service_never_blocks_the_round_and_only_the_latest_ping_goes(
    service, pingers
) -> None:
    pinger, clock = make(service.url, pingers)
    service.hold.set()
    pinger.round_ok()
    assert service.entered.wait(5)  # the thread now waits on the server
    for i in range(50):
        clock.now += 61
        pinger.round_failed(f"failure {i}") if i % 2 else pinger.round_ok()
    # The round's calls came back while the first request is still unanswered.
    assert service.hits == [] and pinger.sent == 0
    service.release.set()
    pinger.wait_sent(2, 5)
    hits = service.wait_for(2)
    assert hits[1].body == b"failure 49"  # the queued pings collapsed into the newest
    assert pinger.sent == 2


def test_a_refused_or_broken_ping_is_logged_once_and_the_url_never(pingers, caplog) -> None:
    broken = PingService(status=500)
    try:
        pinger, clock = make(broken.url, pingers)
        with caplog.at_level(logging.DEBUG, logger="forwarder.ops.health"):
            pinger.round_ok()
            pinger.wait_sent(1, 5)
            clock.now += 61
            pinger.round_ok()
            pinger.wait_sent(2, 5)
        assert pinger.failed == 2 and pinger.sent == 0
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert "HTTP 500" in warnings[0].getMessage()
        assert UUID not in caplog.text
    finally:
        broken.close()


def test_an_unreachable_ping_service_fails_quietly(pingers, caplog) -> None:
    url = f"http://127.0.0.1:{free_port()}/{UUID}"
    pinger, _ = make(url, pingers)
    with caplog.at_level(logging.WARNING, logger="forwarder.ops.health"):
        pinger.round_failed("IMAP down")
        assert pinger.wait_sent(1, 5)
    assert pinger.failed == 1
    assert UUID not in caplog.text


def test_fail_url_keeps_a_query_after_the_path() -> None:
    assert fail_url("https://hc-ping.com/abc") == "https://hc-ping.com/abc/fail"
    assert fail_url("https://hc-ping.com/abc/") == "https://hc-ping.com/abc/fail"
    assert fail_url("https://hc.example/ping/key/slug?create=1") == (
        "https://hc.example/ping/key/slug/fail?create=1"
    )
    assert where("https://hc-ping.com/abc") == "https://hc-ping.com"


def test_only_http_urls_are_taken() -> None:
    with pytest.raises(ValueError):
        HealthPinger("ftp://example.com/x")
