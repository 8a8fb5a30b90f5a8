"""The delivery policy as pure functions: limits, dedup, the summary, unless_read, backoff,
and quiet hours, all with an injected clock (no server, no waiting)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from forwarder import config as config_module
from forwarder.backoff import Policy
from forwarder.delivery.policy import (
    Action,
    Candidate,
    HeldMail,
    LimitsConfig,
    ReadState,
    SendCounts,
    compose_summary,
    find_original,
    give_up_before,
    limit_reason,
    read_verdict,
    summary_due,
    verdict,
)
from forwarder.mail import Mail
from forwarder.pipeline import plan
from forwarder.store import Store
from forwarder.text.smstext import SmsOptions, sms_length
from tests.support.configs import write_config
from tests.support.servers.mails import make_mail

T0 = 1_800_000_000.0
LIMITS = LimitsConfig(per_minute=5, per_hour=30, per_day=100, dedup_window=600)


# -- limits -----------------------------------------------------------------------------------
def test_send_counts_are_sliding_windows() -> None:
    times = [T0 - 30, T0 - 59.9, T0 - 60, T0 - 1800, T0 - 3600, T0 - 80000, T0 - 86400, T0 + 1]
    counts = SendCounts.at(T0, times)
    # exactly 60 s ago is out of the minute; a future time is not counted at all
    assert counts == SendCounts(minute=2, hour=4, day=6)


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        (SendCounts(4, 4, 4), None),
        (SendCounts(5, 5, 5), "limits.per_minute: 5 SMS in the last minute (limit 5)"),
        (SendCounts(0, 30, 30), "limits.per_hour: 30 SMS in the last hour (limit 30)"),
        (SendCounts(0, 0, 100), "limits.per_day: 100 SMS in the last day (limit 100)"),
        (SendCounts(9, 99, 999), "limits.per_minute: 9 SMS in the last minute (limit 5)"),
    ],
)
def test_limit_reason_names_the_full_window(counts: SendCounts, expected: str | None) -> None:
    assert limit_reason(counts, LIMITS) == expected


def simulate(limits: LimitsConfig, arrivals: list[float], flushes: list[float]) -> dict:
    """Flush at each time in ``flushes``: rows that arrived by then are decided in order.

    Mirrors the daemon's order: summary first when due, then each row's verdict; every
    send is logged at its time (what ``store.send_counts`` counts).
    """
    sends: list[float] = []
    held: list[int] = []
    summaries: list[tuple[float, int]] = []
    pending = list(range(len(arrivals)))
    unreported: list[int] = []
    for now in flushes:
        if summary_due(len(unreported), SendCounts.at(now, sends), limits):
            summaries.append((now, len(unreported)))
            sends.append(now)
            unreported = []
        for index in [i for i in pending if arrivals[i] <= now]:
            pending.remove(index)
            decided = verdict(
                kind="mail",
                created_at=arrivals[index],
                counts=SendCounts.at(now, sends),
                limits=limits,
            )
            if decided.action is Action.SEND:
                sends.append(now)
            else:
                assert decided.action is Action.HOLD
                held.append(index)
                unreported.append(index)
    return {"sends": sends, "held": held, "summaries": summaries}


def test_a_storm_of_200_sends_5_holds_195_and_one_summary_when_the_minute_reopens() -> None:
    result = simulate(LIMITS, [T0] * 200, [T0, T0 + 1, T0 + 30, T0 + 59, T0 + 60.5, T0 + 61])
    assert len(result["sends"]) == 6  # 5 SMS + 1 summary
    assert len(result["held"]) == 195
    assert result["summaries"] == [(T0 + 60.5, 195)]  # not before the window reopened, once


def test_a_storm_that_goes_on_gets_one_summary_per_reopening_and_never_beats_the_limits() -> None:
    limits = LimitsConfig(per_minute=3, per_hour=10, per_day=20, dedup_window=0)
    arrivals = [T0 + i * 10 for i in range(360)]  # one mail every 10 s for an hour
    flushes = [T0 + i * 5 for i in range(3 * 720)]  # a poll every 5 s for three hours
    result = simulate(limits, arrivals, flushes)
    sends = result["sends"]
    for at in sends:
        assert SendCounts.at(at, sends).minute <= 3
        assert SendCounts.at(at, sends).hour <= 10
    assert len(sends) <= 20
    assert sum(n for _at, n in result["summaries"]) == len(result["held"])  # all reported
    assert len(result["summaries"]) < len(sends)


def test_summary_is_not_due_without_held_mail_or_while_a_window_is_full() -> None:
    assert not summary_due(0, SendCounts(), LIMITS)
    assert not summary_due(3, SendCounts(5, 5, 5), LIMITS)
    assert summary_due(3, SendCounts(4, 29, 99), LIMITS)


def test_a_summary_waits_for_room_instead_of_being_held() -> None:
    full = SendCounts(5, 5, 5)
    assert verdict(kind="summary", created_at=T0, counts=full, limits=LIMITS).action is Action.WAIT
    assert verdict(kind="mail", created_at=T0, counts=full, limits=LIMITS).action is Action.HOLD


# -- dedup ------------------------------------------------------------------------------------
def test_a_duplicate_points_at_the_oldest_original_within_the_window() -> None:
    candidates = [
        Candidate(7, "sent", T0 - 300),
        Candidate(3, "held", T0 - 500),
        Candidate(9, "failed", T0 - 10),  # never went out: not an original
        Candidate(2, "sent", T0 - 601),  # outside the window
    ]
    assert find_original(T0, candidates, 600) == Candidate(3, "held", T0 - 500)
    decided = verdict(
        kind="mail", created_at=T0, counts=SendCounts(), limits=LIMITS, candidates=candidates
    )
    assert decided.action is Action.DUPLICATE
    assert decided.original == 3
    assert "SMS #3" in decided.reason and "10 min" in decided.reason


@pytest.mark.parametrize("state", ["sent", "in_doubt", "sending", "held"])
def test_originals_are_rows_that_went_out_or_were_held(state: str) -> None:
    original = Candidate(1, state, T0 - 1)
    assert find_original(T0, [original], 600) == original


@pytest.mark.parametrize("state", ["pending", "failed", "cancelled", "duplicate"])
def test_rows_that_did_not_go_out_are_not_originals(state: str) -> None:
    assert find_original(T0, [Candidate(1, state, T0 - 1)], 600) is None


def test_an_original_created_after_the_duplicate_counts_too() -> None:
    # A retried original may go out after its duplicate came due: arrival times decide.
    original = Candidate(1, "sent", T0 + 100)
    assert find_original(T0, [original], 600) == original


def test_dedup_window_zero_turns_dedup_off_and_a_duplicate_costs_no_capacity() -> None:
    candidates = [Candidate(1, "sent", T0)]
    assert find_original(T0, candidates, 0) is None
    full = SendCounts(5, 5, 5)
    decided = verdict(kind="mail", created_at=T0, counts=full, limits=LIMITS, candidates=candidates)
    assert decided.action is Action.DUPLICATE  # dedup first: not held, not summarised


def test_summaries_are_never_deduplicated() -> None:
    decided = verdict(
        kind="summary",
        created_at=T0,
        counts=SendCounts(),
        limits=LIMITS,
        candidates=[Candidate(1, "sent", T0)],
    )
    assert decided.action is Action.SEND


# -- the summary SMS --------------------------------------------------------------------------
def test_summary_names_senders_and_subjects_with_counts() -> None:
    held = [
        HeldMail("Monitoring", "Disk full"),
        HeldMail("Monitoring", "Disk  full"),  # spacing differences are the same mail
        HeldMail("Bank", "Payment received"),
        HeldMail("Monitoring", "Disk full"),
    ]
    text = compose_summary(held, SmsOptions())
    assert text == (
        "4 more important mails held back by the SMS limits: "
        "Monitoring: Disk full (x3); Bank: Payment received"
    )


def test_summary_of_one() -> None:
    assert compose_summary([HeldMail("", "")], SmsOptions()) == (
        "1 more important mail held back by the SMS limits: ?: (no subject)"
    )


def test_summary_of_many_names_a_few_and_counts_the_rest() -> None:
    held = [HeldMail(f"Sender {i}", f"Subject {i}") for i in range(195)]
    text = compose_summary(held, SmsOptions())
    assert text.startswith("195 more important mails held back by the SMS limits: Sender 0: ")
    assert text.endswith("; +190 more")


@given(
    held=st.lists(
        st.builds(HeldMail, st.text(max_size=80), st.text(max_size=300)), min_size=1, max_size=40
    ),
    max_length=st.integers(70, 500),
    encoding=st.sampled_from(["auto", "gsm7", "ucs2"]),
    transliterate=st.sampled_from(["off", "uk"]),
)
def test_summary_always_fits_the_sms_limits(
    held: list[HeldMail], max_length: int, encoding: str, transliterate: str
) -> None:
    options = SmsOptions(max_length=max_length, encoding=encoding, transliterate=transliterate)
    text = compose_summary(held, options)
    assert 0 < sms_length(text) <= max_length
    assert text[: len(str(len(held)))] == str(len(held))


def test_summary_follows_the_transliteration_setting() -> None:
    text = compose_summary([HeldMail("Банк", "Платіж")], SmsOptions(transliterate="uk"))
    assert text.isascii()
    assert "Bank: Platizh" in text


# -- unless_read ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("state", "now", "action"),
    [
        (ReadState.SEEN, T0, Action.CANCEL),
        (ReadState.UNSEEN, T0, Action.SEND),
        (ReadState.GONE, T0, Action.SEND),  # expunged/moved: cannot know, never miss
        (ReadState.UNKNOWN, T0, Action.WAIT),  # IMAP down: wait...
        (ReadState.UNKNOWN, T0 + 899, Action.WAIT),
        (ReadState.UNKNOWN, T0 + 900, Action.SEND),  # ...up to the bound, then send
        (ReadState.SEEN, T0 + 10_000, Action.CANCEL),  # a late answer still counts
    ],
)
def test_read_verdict(state: ReadState, now: float, action: Action) -> None:
    decided = read_verdict(state, due_at=T0, now=now, wait=900)
    assert decided.action is action
    assert decided.reason


def test_read_verdict_reasons_say_what_happened() -> None:
    assert "read" in read_verdict(ReadState.SEEN, due_at=T0, now=T0, wait=900).reason
    waiting = read_verdict(ReadState.UNKNOWN, due_at=T0, now=T0, wait=900).reason
    assert "delivery.unless_read_wait" in waiting and "15 min" in waiting


# -- backoff and max_age ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("failures", "step"), [(1, 30), (2, 60), (3, 120), (5, 480), (6, 900), (50, 900)]
)
def test_backoff_doubles_with_equal_jitter_and_a_cap(failures: int, step: float) -> None:
    backoff = Policy("smtp retry", first=30, cap=900)
    assert backoff.delay(failures, rand=lambda: 0.0) == step / 2
    assert backoff.delay(failures, rand=lambda: 1.0) == step


@given(st.integers(0, 10_000), st.floats(0, 1))
def test_backoff_is_always_within_half_a_step_and_the_cap(failures: int, r: float) -> None:
    delay = Policy("smtp retry", first=30, cap=900).delay(failures, rand=lambda: r)
    assert 15 <= delay <= 900


def test_max_age_counts_from_when_the_row_was_due() -> None:
    assert not give_up_before(T0 + 6 * 3600, 6 * 3600) > T0
    assert give_up_before(T0 + 6 * 3600 + 1, 6 * 3600) > T0
    # held overnight by quiet hours: due in the morning, not expired then
    assert not give_up_before(T0 + 10 * 3600, 6 * 3600) > T0 + 10 * 3600


# -- quiet hours: held to the end of the window, then due ----------------------------------------
def test_a_mail_held_by_quiet_hours_comes_due_when_the_window_opens(tmp_path: Path) -> None:
    rules = [
        {
            "name": "urgent",
            "match": {"subject": {"contains": "urgent"}},
            "action": "forward",
            "quiet": {"time": "22:00-07:00", "then": "hold"},
        }
    ]
    dummy = SimpleNamespace(host="127.0.0.1", port=1, user="u", password="p")
    path = write_config(tmp_path / "f.yaml", dummy, dummy, rules=rules, timezone="UTC")
    config = config_module.load(path)
    mail = Mail(make_mail("urgent: disk"), uid=5, uidvalidity=1)
    night = datetime(2026, 1, 5, 23, 30, tzinfo=UTC)
    result = plan(mail, config, night, new_message_id=lambda: "<fwd.1@f>")
    morning = datetime(2026, 1, 6, 7, 0, tzinfo=UTC).timestamp()
    (item,) = result.outbox
    assert item.not_before == morning

    clock = SimpleNamespace(now=night.timestamp())
    store = Store(tmp_path / "state.db", clock=lambda: clock.now)
    store.record_batch("INBOX", 1, [result.entry], result.outbox, advance_to=5)
    assert store.due() == []
    clock.now = morning - 1
    assert store.due() == []
    clock.now = morning
    (row,) = store.due()
    assert (row.due_at, row.not_before, row.uid) == (morning, morning, 5)
    # max_age counts from the morning, not from 23:30
    assert not row.due_at < give_up_before(morning + 3600, 6 * 3600)
    store.close()

    result = plan(mail, config, night + timedelta(hours=8), new_message_id=lambda: "<fwd.2@f>")
    assert result.outbox[0].not_before == (night + timedelta(hours=8)).timestamp()


@pytest.mark.parametrize(
    ("settings", "quoted"),
    [
        (
            {
                "mode": "phone",
                "auth": "password",
                "password": "s3cr3t-pw",
                "recipients": ["380671112233"],
            },
            "TestAlpha;380501234567;s3cr3t-pw",
        ),
        (
            {
                "mode": "phone",
                "auth": "api_key",
                "api_key": "KEY0123456789abcdef",
                "recipients": ["380671112233"],
            },
            "TestAlpha;KEY0123456789abcdef",
        ),
    ],
)
def test_a_mail_quoting_the_gateway_secret_is_never_forwarded(
    tmp_path: Path, settings: dict, quoted: str
) -> None:
    """A gateway reply from an address reply_from does not know quotes the request Subject:
    forwarding it would put the password or API key in an SMS, the log and the state DB."""
    rules = [{"name": "all", "match": {"subject": "*"}, "action": "forward"}]
    dummy = SimpleNamespace(host="127.0.0.1", port=1, user="u", password="p")
    path = write_config(
        tmp_path / "f.yaml",
        dummy,
        dummy,
        rules=rules,
        gateway={"login": "380501234567", "sender": "TestAlpha", **settings},
        smtp={"allow_plaintext_secrets": True},
    )
    config = config_module.load(path)
    now = datetime(2026, 1, 5, 12, tzinfo=UTC)
    for mail in (
        Mail(make_mail(f"Re: {quoted}", "AUTH", from_="robot@alphasms.ua"), uid=1),
        Mail(make_mail("Error", f"Request {quoted}: AUTH\n", from_="robot@alphasms.ua"), uid=2),
    ):
        result = plan(mail, config, now, new_message_id=lambda: "<fwd.1@f>")
        assert result.outbox == () and result.entry.action == "skip", result.entry
        assert "password or API key" in result.entry.reason
    ordinary = Mail(make_mail("urgent", "the pw is s3cr3t-pw; KEY0123456789abcdef"), uid=3)
    assert plan(ordinary, config, now, new_message_id=lambda: "<fwd.1@f>").outbox
