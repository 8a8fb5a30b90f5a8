"""The self-alert policy: one SMS when the mailbox has been unreadable too long, one when it
reads again, never a repeat; it survives a restart through its stored form."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from forwarder.imap.connection import AuthError, CertificateError, ConnectionLost, MailboxError
from forwarder.ops.alerts import ImapOutage, Trouble, observe
from forwarder.ops.runtime import classify
from forwarder.text.smstext import is_gsm7

KYIV = timezone(timedelta(hours=3))
HOST = "imap.ukr.net"
T0 = datetime(2024, 5, 1, 9, 12, 30, tzinfo=KYIV).timestamp()


def run(outcomes, *, after: float = 1800, enabled: bool = True):
    """Feed (seconds after T0, trouble or None for ok); return the texts queued and when."""
    state, texts = ImapOutage(), []
    for offset, trouble in outcomes:
        state, alert = observe(
            state,
            ok=trouble is None,
            now=T0 + offset,
            host=HOST,
            trouble=trouble,
            after=after,
            enabled=enabled,
            tz=KYIV,
        )
        if alert is not None:
            texts.append((offset, alert.text, alert.recovered))
    return state, texts


def test_one_sms_after_the_delay_and_one_when_it_works_again() -> None:
    outcomes = [(0, None)] + [(60 * m, Trouble.AUTH) for m in range(1, 90)] + [(5400, None)]
    state, texts = run(outcomes)
    assert texts == [
        (1860, "forwarder: cannot log in to imap.ukr.net since 09:13 - check the password", False),
        (
            5400,
            "forwarder: imap.ukr.net works again (failing since 09:13); "
            "mail that came meanwhile is forwarded now",
            True,
        ),
    ]
    assert state == ImapOutage()
    assert all(is_gsm7(text) for _, text, _ in texts)  # one SMS segment's worth, not UCS-2


def test_a_short_outage_sends_nothing_either_way() -> None:
    _, texts = run([(0, Trouble.UNREACHABLE), (600, Trouble.UNREACHABLE), (1200, None)])
    assert texts == []


def test_the_text_names_the_latest_kind_of_trouble() -> None:
    _, texts = run([(0, Trouble.UNREACHABLE), (1800, Trouble.TLS)])
    assert texts == [
        (
            1800,
            "forwarder: the TLS certificate of imap.ukr.net is refused since 09:12 - "
            "check imap.host and imap.ca_file",
            False,
        )
    ]
    _, texts = run([(0, Trouble.UNREACHABLE), (1800, Trouble.UNREACHABLE)])
    assert texts[0][1] == (
        "forwarder: cannot connect to imap.ukr.net since 09:12 - is the server or the network down?"
    )


def test_an_outage_that_began_on_another_day_says_the_date() -> None:
    _, texts = run([(0, Trouble.AUTH), (86400, Trouble.AUTH)], after=86400)
    assert texts[0][1] == (
        "forwarder: cannot log in to imap.ukr.net since 1 May 09:12 - check the password"
    )


def test_disabled_alerts_keep_the_state_and_queue_nothing() -> None:
    state, texts = run([(0, Trouble.AUTH), (3600, Trouble.AUTH)], enabled=False)
    assert texts == [] and state.down and not state.alerted


def test_a_restart_in_the_middle_neither_forgets_nor_repeats() -> None:
    state, alert = observe(ImapOutage(), ok=False, now=T0, host=HOST, trouble=Trouble.AUTH)
    stored = state.to_json()
    state, alert = observe(
        ImapOutage.from_json(stored), ok=False, now=T0 + 1800, host=HOST, trouble=Trouble.AUTH
    )
    assert alert is not None and not alert.recovered  # the outage's start was remembered
    state, alert = observe(
        ImapOutage.from_json(state.to_json()),
        ok=False,
        now=T0 + 3600,
        host=HOST,
        trouble=Trouble.AUTH,
    )
    assert alert is None  # told already, before the restart
    state, alert = observe(ImapOutage.from_json(state.to_json()), ok=True, now=T0 + 4000, host=HOST)
    assert alert is not None and alert.recovered


@pytest.mark.parametrize(
    "stored", [None, "", "not json", "[]", '{"since": "x"}', '{"trouble": "?"}']
)
def test_an_unreadable_stored_state_counts_as_no_outage(stored) -> None:
    assert ImapOutage.from_json(stored) == ImapOutage()


def test_failures_are_sorted_by_what_the_owner_must_do() -> None:
    assert classify(AuthError("refused")) is Trouble.AUTH
    assert classify(CertificateError("bad cert")) is Trouble.TLS
    assert classify(MailboxError("cannot connect")) is Trouble.UNREACHABLE
    assert classify(ConnectionLost("bye")) is Trouble.UNREACHABLE


def test_times_are_local_by_default() -> None:
    now = datetime(2024, 5, 1, 12, 0, tzinfo=UTC).timestamp()
    _, alert = observe(
        ImapOutage(since=now - 3600, trouble=Trouble.AUTH),
        ok=False,
        now=now,
        host=HOST,
        trouble=Trouble.AUTH,
    )
    local = datetime.fromtimestamp(now - 3600).astimezone()
    assert alert is not None and f"since {local:%H:%M}" in alert.text


def test_a_lost_oauth2_sign_in_says_which_login_to_run() -> None:
    from forwarder.ops.alerts import ImapOutage, Trouble, observe

    outage, _ = observe(
        ImapOutage(),
        ok=False,
        now=1000.0,
        host="outlook.office365.com",
        trouble=Trouble.LOGIN,
        after=60,
        account="work",
    )
    _, alert = observe(
        outage,
        ok=False,
        now=1100.0,
        host="outlook.office365.com",
        trouble=Trouble.LOGIN,
        after=60,
        account="work",
    )
    assert alert is not None
    assert "run forwarder login --account work" in alert.text
