"""Prometheus metrics over real HTTP, parsed with prometheus_client's own parser."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from forwarder.delivery.states import State
from forwarder.ops.metrics import Metrics, MetricsServer


def outbox(**counts: float) -> dict[tuple, float]:
    """The forwarder_outbox series: every state, 0 unless given."""
    return {(("state", str(s)),): counts.get(str(s), 0.0) for s in State}


def scrape(address: tuple[str, int]) -> dict[str, dict[tuple, float]]:
    """``/metrics`` as {metric family: {labels: value}} (samples of that family only)."""
    host, port = address
    host = f"[{host}]" if ":" in host else host
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode("utf-8")
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


@pytest.fixture
def served() -> Iterator[tuple[Metrics, tuple[str, int]]]:
    metrics = Metrics()
    server = MetricsServer(metrics, "127.0.0.1", 0)
    address = server.start()
    yield metrics, address
    server.stop()


def test_every_metric_is_served_and_parses(served) -> None:
    metrics, address = served
    metrics.mail_decided("forward")
    metrics.mail_decided("skip", 3)
    metrics.sms_settled("sent")
    metrics.gateway_error("AUTH")
    metrics.gateway_error("MSG:XYZ")
    metrics.gateway_error("MSG:ABC")
    metrics.set_outbox({"pending": 2, "sent": 5})
    metrics.set_circuit(True)
    metrics.polled(1714550000.5)
    metrics.set_up("INBOX", True)
    metrics.set_up("Alerts", False)

    got = scrape(address)
    assert got["forwarder_mails_total"] == {
        (("action", "forward"),): 1.0,
        (("action", "skip"),): 3.0,
        (("action", "error"),): 0.0,  # known series exist from the start, at 0
    }
    assert got["forwarder_sms_total"][(("state", "sent"),)] == 1.0
    assert set(got["forwarder_sms_total"]) == {  # every settled state exists from the start
        (("state", s),) for s in ("sent", "in_doubt", "failed", "held", "duplicate", "cancelled")
    }
    assert got["forwarder_gateway_errors_total"] == {
        (("code", "AUTH"),): 1.0,
        (("code", "MSG"),): 2.0,  # MSG:xyz is one series, not one per code
    }
    assert got["forwarder_outbox"] == outbox(pending=2.0, sent=5.0)
    assert got["forwarder_circuit_open"] == {(): 1.0}
    assert got["forwarder_last_poll_timestamp_seconds"] == {(): 1714550000.5}
    assert got["forwarder_up"] == {(("folder", "INBOX"),): 1.0, (("folder", "Alerts"),): 0.0}


def test_gauges_follow_the_state_of_the_moment(served) -> None:
    metrics, address = served
    metrics.set_outbox({"pending": 2})
    metrics.set_outbox({"sent": 1})
    metrics.set_circuit(False)
    metrics.set_up("INBOX", True)
    metrics.set_up("Old", True)
    metrics.forget_folder("Old")  # no longer configured
    metrics.forget_folder("never watched")
    got = scrape(address)
    assert got["forwarder_outbox"] == outbox(sent=1.0)  # pending back to 0, not a stale 2
    assert got["forwarder_circuit_open"] == {(): 0.0}
    assert got["forwarder_up"] == {(("folder", "INBOX"),): 1.0}


def test_the_registry_is_private() -> None:
    first, second = Metrics(), Metrics()  # a second one (a test, a reload) does not clash
    first.mail_decided("forward")
    assert b'forwarder_mails_total{action="forward"} 1.0' in first.render()
    assert b'forwarder_mails_total{action="forward"} 0.0' in second.render()
    assert REGISTRY.get_sample_value("forwarder_mails_total", {"action": "forward"}) is None


def test_ipv6_loopback_is_served() -> None:
    server = MetricsServer(Metrics(), "[::1]", 0)
    try:
        address = server.start()
    except OSError as exc:  # a machine without IPv6
        pytest.skip(f"no IPv6 loopback: {exc}")
    try:
        assert address[0] == "::1"
        assert "forwarder_circuit_open" in scrape(address)
    finally:
        server.stop()


def test_a_taken_port_raises_oserror(served) -> None:
    _, (host, port) = served
    with pytest.raises(OSError):
        MetricsServer(Metrics(), host, port).start()
