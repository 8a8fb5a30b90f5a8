"""Delivery against the real aiosmtpd gateway simulator: every mode a–e on the wire, secrets
nowhere else, retries and backoff, permanent failures, TLS, the in-doubt window, crash recovery,
one connection per burst. The daemon runs in-process with an injected clock: no sleeps."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from forwarder.cli import main as cli_main
from forwarder.cli import status_data
from forwarder.delivery.states import State
from tests.support.configs import ALPHA, OWNER
from tests.support.delivery import (
    API_KEY,
    LIST_ID,
    MODES,
    PASSWORD,
    RECIPIENT,
    SECRETS,
    SMTP_PASSWORD,
    SMTP_USER,
    all_rows,
    count_connections,
    load_config,
    make_daemon,
    our_log,
    queue,
    row,
    start,
    state_file_bytes,
)

TEXT = "Monitoring: urgent: disk full\nDisk /var is 99% full."
GATEWAY = "mail.alphasms.com.ua"

# mode letter -> (simulator TLS, envelope/To, exact Subject on the wire)
WIRE = {
    "a": ("starttls", f"{RECIPIENT}@{GATEWAY}", f"{ALPHA};{OWNER};{PASSWORD}"),
    "b": ("none", f"{OWNER}@{GATEWAY}", ALPHA),
    "c": ("implicit", f"{OWNER}@{GATEWAY}", f"{ALPHA};{OWNER};{PASSWORD};{LIST_ID}"),
    "d": ("starttls", f"{RECIPIENT}@{GATEWAY}", f"{ALPHA};{API_KEY}"),
    "e": ("implicit", f"{OWNER}@{GATEWAY}", f"{ALPHA};{API_KEY};{LIST_ID}"),
}


def restart(daemons, daemon, clock):
    """A new process on the same state file: recovery first, as Daemon.start() does."""
    daemon.sender.close()
    daemon.store.close()
    fresh = make_daemon(daemon.config, clock)
    daemons.append(fresh)
    fresh.delivery.recover()
    return fresh


# -- the five modes on the wire, and secrets nowhere else ----------------------------------------
@pytest.mark.parametrize("letter", ["a", "b", "c", "d", "e"])
def test_each_mode_on_the_wire_and_its_secret_nowhere_else(
    tmp_path: Path, gateway_factory, clock, daemons, caplog, capsys, letter: str
) -> None:
    caplog.set_level(logging.DEBUG)
    tls, to, subject = WIRE[letter]
    auth = {"username": SMTP_USER, "password": SMTP_PASSWORD} if tls == "starttls" else {}
    gateway = gateway_factory(tls=tls, owner=OWNER, **auth)
    daemon = start(daemons, tmp_path, gateway, clock, gateway=MODES[letter])

    (queued,) = queue(daemon)
    daemon.delivery.flush(daemon.clock())
    (sms,) = gateway.wait_for(1)
    assert sms.problems == ()
    assert sms.mode == letter
    assert (sms.to, sms.subject, sms.text, sms.charset) == (to, subject, TEXT, "utf-8")
    assert sms.encrypted is (letter != "b")
    assert sms.message_id == queued.message_id
    assert sms.message_id.endswith("@forwarder.invalid>")
    assert sms.headers["Auto-Submitted"] == "auto-generated"
    assert row(daemon, queued.id).state == "sent"

    # A server that quotes the Subject back in its errors: transient, then permanent.
    gateway.fail_next(451, f"busy with {subject}", stage="data")
    gateway.fail_next(554, f"refused {subject}", stage="data", count=5)
    (failing,) = queue(daemon, ["urgent: second"])
    daemon.delivery.flush(daemon.clock())
    failed = row(daemon, failing.id)
    assert failed.state == "failed"
    assert failed.last_error.startswith("DATA 554 refused TestAlpha")

    assert cli_main(["status", "--json", "--config", str(daemon.config.source)]) == 0
    status = capsys.readouterr().out
    assert json.loads(status)["recent"][-1]["subject"] == queued.subject_masked
    stored = state_file_bytes(daemon.config)
    assert queued.subject_masked.encode() in stored
    logged = our_log(caplog)
    assert "SMS sent" in logged
    for secret in SECRETS:
        assert secret not in logged, "a secret reached the log"
        assert secret not in status, "a secret reached status --json"
        assert secret.encode() not in stored, "a secret reached the state file"
    if letter != "b":
        assert "***" in queued.subject_masked and "***" in failed.last_error


# -- transient failures: retried within a send, then across rounds with backoff --------------------
@pytest.mark.parametrize(
    ("code", "stage"), [(451, "rcpt"), (452, "data"), (421, "mail"), (552, "rcpt")]
)
def test_a_transient_reply_is_retried_and_the_sms_arrives_once(
    tmp_path: Path, gateway, clock, daemons, code: int, stage: str
) -> None:
    daemon = start(daemons, tmp_path, gateway, clock)
    gateway.fail_next(code, "try again later", stage=stage)
    (queued,) = queue(daemon)
    daemon.delivery.flush(daemon.clock())
    assert len(gateway.received) == 1
    assert gateway.attempts == 2
    sent = row(daemon, queued.id)
    assert (sent.state, sent.attempts, sent.retries) == ("sent", 2, 0)


@pytest.mark.parametrize("stage", ["mail", "rcpt"])
def test_a_connection_lost_before_data_is_retried_and_arrives_once(
    tmp_path: Path, gateway, clock, daemons, stage: str
) -> None:
    daemon = start(daemons, tmp_path, gateway, clock)
    gateway.drop_next(stage)
    (queued,) = queue(daemon)
    daemon.delivery.flush(daemon.clock())
    assert len(gateway.received) == 1
    assert row(daemon, queued.id).state == "sent"


def test_smtp_down_then_up_backs_off_then_delivers_each_once(
    tmp_path: Path, gateway, clock, daemons
) -> None:
    daemon = start(daemons, tmp_path, gateway, clock)
    gateway.stop()
    first, second = queue(daemon, ["urgent 1", "urgent 2"])
    daemon.delivery.flush(daemon.clock())
    waiting = row(daemon, first.id)
    assert (waiting.state, waiting.retries, waiting.attempts) == ("pending", 1, 3)
    assert clock.now + 15 <= waiting.not_before <= clock.now + 30  # retry_backoff 30 s, jitter
    assert "cannot reach SMTP server" in waiting.last_error
    assert row(daemon, second.id).attempts == 0  # the burst stopped: the server is down

    daemon.delivery.flush(daemon.clock())  # the next poll, too soon: the server is not hammered
    assert row(daemon, first.id).attempts == 3 and row(daemon, second.id).attempts == 0

    gateway.start()
    clock.now = waiting.not_before
    daemon.delivery.flush(daemon.clock())
    assert sorted(s.text.splitlines()[0] for s in gateway.received) == [
        "Monitoring: urgent 1",
        "Monitoring: urgent 2",
    ]
    assert {r.state for r in all_rows(daemon)} == {"sent"}


def test_the_wait_between_rounds_doubles_with_jitter(
    tmp_path: Path, gateway, clock, daemons
) -> None:
    daemon = start(daemons, tmp_path, gateway, clock, delivery={"retry_attempts": 1})
    gateway.stop()
    (queued,) = queue(daemon)
    for round_, step in enumerate([30, 60, 120, 240, 480, 900, 900], start=1):
        daemon.delivery.flush(daemon.clock())
        waiting = row(daemon, queued.id)
        assert waiting.retries == round_
        assert step / 2 <= waiting.not_before - clock.now <= step
        clock.now = waiting.not_before
    assert gateway.attempts == 0


def test_a_restart_retries_at_once_and_sends_once(tmp_path: Path, gateway, clock, daemons) -> None:
    daemon = start(daemons, tmp_path, gateway, clock)
    gateway.stop()
    (queued,) = queue(daemon)
    daemon.delivery.flush(daemon.clock())
    assert row(daemon, queued.id).not_before > clock.now
    gateway.start()
    daemon = restart(daemons, daemon, clock)
    daemon.delivery.flush(daemon.clock())
    assert len(gateway.received) == 1
    assert row(daemon, queued.id).state == "sent"


def test_a_row_not_delivered_within_max_age_fails_and_is_reported(
    tmp_path: Path, gateway, clock, daemons, caplog
) -> None:
    daemon = start(daemons, tmp_path, gateway, clock, delivery={"max_age": "1h"})
    gateway.stop()
    (queued,) = queue(daemon)
    daemon.delivery.flush(daemon.clock())
    clock.advance(3600)
    daemon.delivery.flush(daemon.clock())
    assert row(daemon, queued.id).state == "pending"  # exactly max_age: still trying
    clock.advance(1)
    daemon.delivery.flush(daemon.clock())
    given_up = row(daemon, queued.id)
    assert given_up.state == "failed"
    assert given_up.reason == "not delivered within delivery.max_age (1 h) of being due"
    assert "cannot reach SMTP server" in given_up.last_error
    assert f"SMS {queued.message_id} for {queued.source_message_id} given up" in caplog.text
    gateway.start()
    daemon.delivery.flush(daemon.clock())
    assert gateway.received == []


# -- permanent failures: not retried ----------------------------------------------------------
@pytest.mark.parametrize(("code", "stage"), [(550, "rcpt"), (554, "data"), (552, "data")])
def test_a_permanent_reply_fails_the_sms_and_is_not_retried(
    tmp_path: Path, gateway, clock, daemons, code: int, stage: str
) -> None:
    daemon = start(daemons, tmp_path, gateway, clock)
    gateway.fail_next(code, "no", stage=stage)
    failing, following = queue(daemon, ["urgent 1", "urgent 2"])
    daemon.delivery.flush(daemon.clock())
    failed = row(daemon, failing.id)
    assert (failed.state, failed.attempts) == ("failed", 1)
    assert failed.last_error == f"{stage.upper()} {code} no"
    assert gateway.attempts == 2  # one try for the failed SMS, one for the next
    assert row(daemon, following.id).state == "sent"  # a refused SMS does not stop the others
    clock.advance(3600)
    daemon.delivery.flush(daemon.clock())
    assert gateway.attempts == 2


def test_a_refused_mail_from_halts_sending_until_the_settings_change(
    tmp_path: Path, gateway, clock, daemons
) -> None:
    daemon = start(daemons, tmp_path, gateway, clock)
    gateway.fail_next(553, "sender not allowed", stage="mail")
    failing, waiting = queue(daemon, ["urgent 1", "urgent 2"])
    daemon.delivery.flush(daemon.clock())
    assert row(daemon, failing.id).state == "pending"  # the settings are wrong, not the SMS
    assert row(daemon, waiting.id).state == "pending"
    assert daemon.sender.halted == "MAIL 553 sender not allowed"
    clock.advance(3600)
    daemon.delivery.flush(daemon.clock())
    assert gateway.attempts == 1
    daemon = restart(daemons, daemon, clock)  # a restart with fixed settings
    daemon.delivery.flush(daemon.clock())
    assert row(daemon, failing.id).state == row(daemon, waiting.id).state == "sent"


def test_the_sms_that_meets_wrong_settings_waits_with_the_queue_and_goes_once_fixed(
    tmp_path: Path, gateway, clock, daemons
) -> None:
    # A halt says the settings are wrong, not this SMS: failing it would lose an important mail.
    daemon = start(daemons, tmp_path, gateway, clock)
    gateway.fail_next(553, "sender not allowed", stage="mail")
    (first,) = queue(daemon)
    daemon.delivery.flush(daemon.clock())
    assert daemon.sender.halted == "MAIL 553 sender not allowed"
    waiting = row(daemon, first.id)
    assert (waiting.state, waiting.last_error) == ("pending", "MAIL 553 sender not allowed")
    daemon = restart(daemons, daemon, clock)  # a restart with fixed settings
    daemon.delivery.flush(daemon.clock())
    assert row(daemon, first.id).state == "sent"
    assert len(gateway.received) == 1


def test_a_reload_with_unchanged_settings_resumes_a_halted_sender(
    tmp_path: Path, gateway, clock, daemons, capsys
) -> None:
    daemon = start(daemons, tmp_path, gateway, clock)
    gateway.fail_next(535, "relay access denied", stage="mail")
    failing, waiting = queue(daemon, ["urgent 1", "urgent 2"])
    daemon.delivery.flush(daemon.clock())
    assert daemon.sender.halted is not None
    # 'forwarder status' reads the state file: the halt is there, in its own line.
    halted = status_data(daemon.config, daemon.store)["smtp_halted"]
    assert halted == daemon.sender.halted
    assert cli_main(["status", "--config", str(daemon.config.source)]) == 0
    assert f"SENDING STOPPED: {halted}; queued SMS wait" in capsys.readouterr().out
    daemon.delivery.flush(daemon.clock())
    assert row(daemon, waiting.id).attempts == 0
    assert daemon.reload()  # SIGHUP: the cause was fixed on the server's side
    daemon.delivery.flush(daemon.clock())
    assert row(daemon, waiting.id).state == "sent"
    assert row(daemon, failing.id).state == "sent"  # it waited for the settings too
    assert status_data(daemon.config, daemon.store)["smtp_halted"] is None


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
def test_a_certificate_from_the_wrong_ca_is_refused_and_not_retried(
    tmp_path: Path, gateway_factory, clock, daemons, caplog, tls: str
) -> None:
    gateway = gateway_factory(tls=tls)
    daemon = start(
        daemons, tmp_path, gateway, clock, ca_file=gateway.wrong_ca_file, gateway=MODES["e"]
    )
    refused, waiting = queue(daemon, ["urgent 1", "urgent 2"])
    daemon.delivery.flush(daemon.clock())
    failed = row(daemon, refused.id)
    assert failed.state == "pending"  # waits for the settings to be fixed, as the queue does
    assert failed.attempts == 1  # not retried, not even within the send
    assert "TLS certificate rejected" in failed.last_error
    assert gateway.attempts == 0  # no MAIL command ever reached the server
    assert row(daemon, waiting.id).state == "pending"  # waits for the settings to be fixed
    assert daemon.sender.halted is not None
    assert "sending stopped: TLS certificate rejected" in caplog.text
    clock.advance(3600)
    daemon.delivery.flush(daemon.clock())
    assert row(daemon, waiting.id).attempts == 0
    assert API_KEY not in our_log(caplog)

    fixed = make_daemon(load_config(tmp_path, gateway, gateway=MODES["e"]), clock)
    daemons.append(fixed)
    fixed.delivery.flush(fixed.clock())
    received = gateway.wait_for(2)
    assert len(received) == 2
    assert all(sms.problems == () and sms.encrypted for sms in received)
    assert row(fixed, refused.id).state == row(fixed, waiting.id).state == "sent"


def test_a_plaintext_only_server_is_refused_for_starttls(
    tmp_path: Path, gateway, clock, daemons
) -> None:
    daemon = start(daemons, tmp_path, gateway, clock, smtp={"security": "starttls"})
    (queued,) = queue(daemon)
    daemon.delivery.flush(daemon.clock())
    failed = row(daemon, queued.id)
    assert failed.state == "pending" and "STARTTLS" in failed.last_error
    assert daemon.sender.halted is not None
    assert gateway.received == []


# -- the in-doubt window (RFC 1047) and crash recovery ------------------------------------------
def test_on_doubt_alert_never_sends_twice(tmp_path: Path, gateway, clock, daemons, caplog) -> None:
    # Without receipts nothing can tell whether it got through (tests/test_receipts.py has
    # the cases where something can).
    delivery = {"on_doubt": "alert", "receipts": "off"}
    daemon = start(daemons, tmp_path, gateway, clock, delivery=delivery)
    gateway.drop_next("data", accept=True)
    (queued,) = queue(daemon)
    daemon.delivery.flush(daemon.clock())
    assert len(gateway.received) == 1  # the gateway has it; forwarder cannot know
    assert row(daemon, queued.id).state == "in_doubt"
    assert "is in doubt and will not be sent again (delivery.on_doubt: alert)" in caplog.text
    clock.advance(3600)
    daemon.delivery.flush(daemon.clock())
    daemon = restart(daemons, daemon, clock)
    daemon.delivery.flush(daemon.clock())
    assert len(gateway.received) == 1
    assert row(daemon, queued.id).state == "in_doubt"
    assert daemon.store.send_counts().day == 1  # counted against the limits all the same


def test_on_doubt_resend_sends_again_with_the_same_message_id(
    tmp_path: Path, gateway, clock, daemons
) -> None:
    delivery = {"on_doubt": "resend", "receipts": "off"}
    daemon = start(daemons, tmp_path, gateway, clock, delivery=delivery)
    gateway.drop_next("data", accept=True)
    (queued,) = queue(daemon)
    daemon.delivery.flush(daemon.clock())
    doubtful = row(daemon, queued.id)
    assert doubtful.state == "pending" and doubtful.not_before > clock.now
    clock.now = doubtful.not_before
    daemon.delivery.flush(daemon.clock())
    first, second = gateway.wait_for(2)
    assert first.message_id == second.message_id == queued.message_id
    assert row(daemon, queued.id).state == "sent"
    assert daemon.store.send_counts().minute == 2  # both may be billed: both count


def test_on_doubt_resend_after_a_crash_in_the_window(
    tmp_path: Path, gateway, clock, daemons
) -> None:
    daemon = start(daemons, tmp_path, gateway, clock, delivery={"on_doubt": "resend"})
    (queued,) = queue(daemon)
    daemon.store.start_attempt(queued.id)
    daemon.store.before_dot(queued.id)  # killed between the final dot and the 250
    daemon = restart(daemons, daemon, clock)
    daemon.delivery.flush(daemon.clock())
    assert len(gateway.received) == 1
    assert row(daemon, queued.id).state == "sent"


def test_a_crash_before_the_final_dot_is_sent_after_restart_once(
    tmp_path: Path, gateway, clock, daemons
) -> None:
    daemon = start(daemons, tmp_path, gateway, clock)
    (queued,) = queue(daemon)
    daemon.store.start_attempt(queued.id)  # killed mid-DATA
    daemon = restart(daemons, daemon, clock)
    assert row(daemon, queued.id).state == "pending"
    daemon.delivery.flush(daemon.clock())
    daemon.delivery.flush(daemon.clock())
    (sms,) = gateway.received
    assert sms.message_id == queued.message_id
    assert row(daemon, queued.id).state == "sent"


# -- one connection per burst -----------------------------------------------------------------
def test_a_burst_goes_through_one_smtp_connection(tmp_path: Path, gateway, clock, daemons) -> None:
    connections = count_connections(gateway)
    daemon = start(daemons, tmp_path, gateway, clock, limits={"per_minute": 100})
    queue(daemon, [f"urgent {n}" for n in range(10)])
    daemon.delivery.flush(daemon.clock())
    assert len(gateway.wait_for(10)) == 10
    assert connections.opened == 1
    queue(daemon, ["urgent again"])
    daemon.delivery.flush(daemon.clock())
    assert connections.opened == 2  # closed between bursts, not held open while idle
    assert [s.message_id for s in gateway.received] == [r.message_id for r in all_rows(daemon)]


def test_send_reports_its_outcome_and_smtplib_stays_quiet(
    tmp_path: Path, gateway, clock, daemons
) -> None:
    daemon = start(daemons, tmp_path, gateway, clock)
    assert daemon.sender._connect().debuglevel == 0  # smtplib's debug output prints secrets
    daemon.sender.close()
    (queued,) = queue(daemon)
    assert daemon.sender.send(queued) is State.SENT
    gateway.fail_next(554, "no", stage="data")
    (other,) = queue(daemon, ["urgent other"])
    assert daemon.sender.send(other) is State.FAILED
