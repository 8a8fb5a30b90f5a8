"""The STATUS line and the READY rule: pure functions of values."""

from __future__ import annotations

from forwarder.ops.readiness import ready, waiting_for
from forwarder.ops.status import MAX_LENGTH, ago, status_line


def test_the_status_line_reads_as_the_issue_shows_it() -> None:
    line = status_line(folders=["INBOX", "Alerts"], sms_today=3, last_poll_ago=12.4)
    assert line == "watching INBOX, Alerts · 3 SMS today · last poll 12 s ago"


def test_what_is_wrong_comes_first() -> None:
    line = status_line(
        folders=["INBOX"],
        sms_today=0,
        last_poll_ago=7300,
        problems=["IMAP: login refused", "", "sending paused:\ngateway said AUTH"],
    )
    assert line == (
        "IMAP: login refused · sending paused: gateway said AUTH · watching INBOX · "
        "0 SMS today · last poll 2 h ago"
    )


def test_before_ready_and_before_any_poll() -> None:
    line = status_line(folders=["INBOX"], sms_today=0, last_poll_ago=None, starting=True)
    assert line == "starting: looking at INBOX · 0 SMS today · no poll yet"


def test_a_long_line_is_cut() -> None:
    line = status_line(folders=[f"Folder{i}" for i in range(60)], sms_today=1, last_poll_ago=1)
    assert len(line) <= MAX_LENGTH and line.endswith("…")


def test_ago_rounds_down_like_a_clock() -> None:
    assert [ago(s) for s in (-3, 0, 59.9, 60, 3599, 3600, 86399, 86400 * 3)] == [
        "0 s",
        "0 s",
        "59 s",
        "1 min",
        "59 min",
        "1 h",
        "23 h",
        "3 d",
    ]


def test_ready_waits_for_every_folder_without_a_checkpoint() -> None:
    folders = ["INBOX", "Alerts", "Ops"]
    assert waiting_for(folders, looked_at={"INBOX"}, checkpointed={"Ops"}) == ["Alerts"]
    assert not ready(folders, looked_at={"INBOX"}, checkpointed={"Ops"})
    assert ready(folders, looked_at={"INBOX", "Alerts"}, checkpointed={"Ops"})
    # A restart while IMAP is down: every folder has its checkpoint, the promise holds.
    assert ready(folders, looked_at=set(), checkpointed=set(folders))
