"""Limits, dedup and the summary SMS against the real gateway simulator, with an injected
clock: a storm is held and reported once, identical alerts become one SMS."""

from __future__ import annotations

from pathlib import Path

from forwarder.cli import status_data
from tests.support.configs import OWNER
from tests.support.delivery import (
    MODES,
    RECIPIENT,
    all_rows,
    queue,
    row,
    start,
)

OTHER = "380931234567"


def test_a_storm_of_200_is_held_and_reported_by_one_summary(
    tmp_path: Path, gateway, clock, daemons, caplog
) -> None:
    limits = {"per_minute": 3, "per_hour": 30, "per_day": 100, "dedup_window": 0}
    daemon = start(daemons, tmp_path, gateway, clock, limits=limits)
    queue(daemon, [f"urgent: alert {n}" for n in range(200)])
    daemon.delivery.flush(daemon.clock())
    assert len(gateway.received) == 3
    rows = all_rows(daemon)
    held = [r for r in rows if r.state == "held"]
    assert len(held) == 197
    assert held[0].reason == "limits.per_minute: 3 SMS in the last minute (limit 3)"
    assert "197 SMS held back" in caplog.text

    clock.advance(30)
    daemon.delivery.flush(daemon.clock())
    assert len(gateway.received) == 3  # the minute has not reopened: no summary yet

    clock.advance(31)
    daemon.delivery.flush(daemon.clock())
    received = gateway.wait_for(4)
    summary = received[3]
    assert summary.problems == ()
    assert summary.text.startswith(
        "197 more important mails held back by the SMS limits: Monitoring: urgent: alert 3; "
    )
    assert summary.text.endswith("more")
    (summary_row,) = [r for r in all_rows(daemon) if r.kind == "summary"]
    assert summary_row.state == "sent" and summary_row.message_id == summary.message_id
    assert {r.summary_id for r in all_rows(daemon) if r.state == "held"} == {summary_row.id}

    for _ in range(3):  # the window reopens again: nothing left to report, nothing sent
        clock.advance(61)
        daemon.delivery.flush(daemon.clock())
    assert len(gateway.received) == 4

    data = status_data(daemon.config, daemon.store)
    assert data["outbox"] == {"sent": 4, "held": 197}


def test_mail_after_the_summary_is_sent_normally_and_a_new_overflow_gets_a_new_summary(
    tmp_path: Path, gateway, clock, daemons
) -> None:
    daemon = start(daemons, tmp_path, gateway, clock, limits={"per_minute": 2, "per_hour": 50})
    queue(daemon, ["urgent 1", "urgent 2", "urgent 3"])
    daemon.delivery.flush(daemon.clock())
    clock.advance(61)
    daemon.delivery.flush(daemon.clock())  # the summary of 1
    queue(daemon, ["urgent 4", "urgent 5", "urgent 6"])
    daemon.delivery.flush(daemon.clock())  # one slot left in this minute
    clock.advance(61)
    daemon.delivery.flush(daemon.clock())  # the second summary, of 2
    texts = [s.text for s in gateway.wait_for(5)]
    assert texts[2] == "1 more important mail held back by the SMS limits: Monitoring: urgent 3"
    assert texts[3].startswith("Monitoring: urgent 4")
    assert texts[4] == (
        "2 more important mails held back by the SMS limits: Monitoring: urgent 5; "
        "Monitoring: urgent 6"
    )


def test_a_summary_waits_while_the_circuit_is_open(tmp_path: Path, gateway, clock, daemons) -> None:
    daemon = start(daemons, tmp_path, gateway, clock, limits={"per_minute": 1})
    queue(daemon, ["urgent 1", "urgent 2"])
    daemon.delivery.flush(daemon.clock())
    daemon.store.open_circuit("AUTH", "authorisation failed", probe_at=clock.now + 10**6)
    clock.advance(61)
    daemon.delivery.flush(daemon.clock())
    (summary,) = [r for r in all_rows(daemon) if r.kind == "summary"]
    assert summary.state == "pending"  # durable, queued, obeying the circuit
    assert len(gateway.received) == 1
    daemon.store.close_circuit()
    daemon.delivery.flush(daemon.clock())
    assert gateway.wait_for(2)[1].text.startswith("1 more important mail held back")
    assert row(daemon, summary.id).state == "sent"


def test_identical_alerts_within_the_dedup_window_become_one_sms(
    tmp_path: Path, gateway, clock, daemons
) -> None:
    daemon = start(daemons, tmp_path, gateway, clock, limits={"dedup_window": "10m"})
    first, *copies = queue(daemon, ["URGENT: disk full"] * 3)
    clock.advance(300)
    (later,) = queue(daemon, ["urgent:   disk FULL"])  # case and spacing do not matter
    daemon.delivery.flush(daemon.clock())
    assert len(gateway.received) == 1
    for copy in [*copies, later]:
        duplicate = row(daemon, copy.id)
        assert duplicate.state == "duplicate"
        assert duplicate.duplicate_of == first.id
        assert duplicate.reason.startswith(f"same sender and subject as SMS #{first.id}")

    clock.advance(601)
    (fresh,) = queue(daemon, ["URGENT: disk full"])
    daemon.delivery.flush(daemon.clock())
    assert row(daemon, fresh.id).state == "sent"  # outside the window: a new SMS
    assert len(gateway.received) == 2


def test_dedup_is_per_recipient(tmp_path: Path, gateway_factory, clock, daemons) -> None:
    simulator = gateway_factory(tls="starttls", owner=OWNER)
    mode_a = {**MODES["d"], "recipients": [RECIPIENT, OTHER]}
    daemon = start(daemons, tmp_path, simulator, clock, gateway=mode_a)
    queue(daemon, ["urgent: same", "urgent: same"])
    daemon.delivery.flush(daemon.clock())
    assert sorted(s.phone for s in simulator.wait_for(2)) == sorted([RECIPIENT, OTHER])
    assert [r.state for r in all_rows(daemon)] == ["sent", "sent", "duplicate", "duplicate"]


def test_a_duplicate_of_a_held_mail_is_not_counted_twice_in_the_summary(
    tmp_path: Path, gateway, clock, daemons
) -> None:
    daemon = start(daemons, tmp_path, gateway, clock, limits={"per_minute": 1})
    queue(daemon, ["urgent: first", "urgent: storm", "urgent: storm", "urgent: storm"])
    daemon.delivery.flush(daemon.clock())
    assert [r.state for r in all_rows(daemon)] == ["sent", "held", "duplicate", "duplicate"]
    clock.advance(61)
    daemon.delivery.flush(daemon.clock())
    assert gateway.wait_for(2)[1].text == (
        "1 more important mail held back by the SMS limits: Monitoring: urgent: storm"
    )
