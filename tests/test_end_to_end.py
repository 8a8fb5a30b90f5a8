"""The whole flow against real servers: Dovecot → forwarder run → the gateway simulator."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.configs import ALPHA, OWNER, write_config
from tests.support.daemonproc import DaemonProcess, read_ledger
from tests.support.servers.mails import make_mail


def forwarder(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "forwarder.cli", *args], capture_output=True, text=True, timeout=60
    )


def test_one_important_mail_becomes_one_sms_and_a_restart_sends_nothing_twice(
    tmp_path: Path, imap_user, gateway
) -> None:
    server, user = imap_user.server, imap_user.user
    server.append(user, "INBOX", make_mail("Already here, urgent", "old mail"))
    config = write_config(tmp_path / "forwarder.yaml", imap_user, gateway)

    with DaemonProcess(config) as daemon:
        daemon.wait_for_checkpoint()  # baselined: the mail already there is not forwarded
        server.append(user, "INBOX", make_mail("Lunch?", "nothing important"))
        server.append(
            user,
            "INBOX",
            make_mail(
                "URGENT: server down",
                "The database is not answering.\n\n-- \nOps bot",
                from_="Monitoring <alerts@example.com>",
            ),
        )
        (sms,) = gateway.wait_for(1)
        daemon.wait_for_checkpoint(above=2)
        assert daemon.stop() == 0

    assert sms.problems == ()
    assert sms.to == f"{OWNER}@mail.alphasms.com.ua"
    assert sms.subject == ALPHA
    assert sms.charset == "utf-8"
    assert sms.text == "Monitoring: URGENT: server down\nThe database is not answering."

    # Restart: everything is checkpointed, so nothing is sent again; new mail still is.
    with DaemonProcess(config) as daemon:
        server.append(user, "INBOX", make_mail("urgent again", "second"))
        second = gateway.wait_for(2)
        daemon.wait_for_checkpoint(above=3)
        assert daemon.stop() == 0
    assert [s.text.splitlines()[0] for s in second] == [
        "Monitoring: URGENT: server down",
        "Alice Sender: urgent again",
    ]
    assert len(gateway.received) == 2

    status = forwarder("status", "--config", str(config), "--json")
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    assert data["outbox"] == {"sent": 2}
    assert data["limit_counts"]["day"] == 2  # what the wallet guard counts
    assert data["folders"]["INBOX"]["last_uid"] == 4


def test_mail_that_arrives_while_the_daemon_is_down_is_forwarded_after_it_starts(
    tmp_path: Path, imap_user, gateway
) -> None:
    server, user = imap_user.server, imap_user.user
    config = write_config(tmp_path / "forwarder.yaml", imap_user, gateway)
    with DaemonProcess(config) as daemon:
        daemon.wait_for_checkpoint()
        assert daemon.stop() == 0
    server.append(user, "INBOX", make_mail("urgent while down", "body"))
    with DaemonProcess(config) as daemon:
        (sms,) = gateway.wait_for(1)
        assert daemon.stop() == 0
    assert sms.text.startswith("Alice Sender: urgent while down")


def test_check_reports_file_line_and_exits_78_without_touching_servers(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(
        "imap:\n  host: imap.example.com\n  username: me\n  password: x\n  poll_intervall: 5\n"
        "smtp:\n  host: smtp.example.com\n  from: me@example.com\n"
        "gateway:\n  login: '12'\n  sender: MyAlpha\n"
        "rules: []\n"
    )
    result = forwarder("check", "--config", str(config))
    assert result.returncode == 78
    assert f"{config}:5: unknown key 'imap.poll_intervall' (did you mean 'poll_interval'?)" in (
        result.stderr
    )
    assert f"{config}:10: gateway.login:" in result.stderr


def test_run_with_a_bad_config_exits_78_before_connecting(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("imap: [\n")
    result = forwarder("run", "--config", str(config))
    assert result.returncode == 78
    assert f"{config}:" in result.stderr and "YAML syntax error" in result.stderr


def test_status_tells_a_running_daemon_from_a_crashed_one(tmp_path: Path, imap_user, gateway):
    config = write_config(tmp_path / "forwarder.yaml", imap_user, gateway)
    with DaemonProcess(config) as daemon:
        daemon.wait_for_checkpoint()
        assert json.loads(forwarder("status", "--config", str(config), "--json").stdout)["running"]
        text = forwarder("status", "--config", str(config)).stdout
        assert text.startswith("daemon:     up since")
        daemon.proc.kill()  # a crash: no "stopped" is ever written
        daemon.proc.wait()
    data = json.loads(forwarder("status", "--config", str(config), "--json").stdout)
    assert data["running"] is False
    assert forwarder("status", "--config", str(config)).stdout.startswith("daemon:     not running")


def test_one_message_in_two_watched_folders_or_delivered_twice_costs_one_sms(
    tmp_path: Path, imap_user, gateway
) -> None:
    """A Gmail label is a folder, a filter may copy, a server may deliver twice: the same
    Message-ID is forwarded once."""
    server, user = imap_user.server, imap_user.user
    server.create_folder(user, "Important")
    config = write_config(
        tmp_path / "forwarder.yaml",
        imap_user,
        gateway,
        imap={"folders": ["INBOX", "Important"]},
    )
    copy = make_mail("urgent: one message, three copies", "body")
    with DaemonProcess(config) as daemon:
        daemon.wait_for_checkpoint("INBOX")
        daemon.wait_for_checkpoint("Important")
        server.append(user, "INBOX", copy)
        server.append(user, "INBOX", copy)  # delivered twice
        server.append(user, "Important", copy)
        gateway.wait_for(1)
        daemon.wait_for_checkpoint("INBOX", above=1)
        daemon.wait_for_checkpoint("Important", above=0)
        assert daemon.stop() == 0
    assert len(gateway.received) == 1
    ledger = read_ledger(tmp_path / "state.db")
    assert [action for *_, action, _ in ledger].count("forward") == 1
    assert sum("(same Message-ID)" in reason for *_, reason in ledger) == 2
