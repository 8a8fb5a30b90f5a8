"""Several accounts in one daemon: the accounts: list, state keyed by account (and the
migration of a schema-1 state file), and two real mailboxes where one frozen account never
delays the other."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from forwarder import config as config_module
from forwarder.config import ConfigError
from forwarder.delivery.states import State
from forwarder.store import SCHEMA_VERSION, Store
from tests.support.configs import config_dict
from tests.support.daemonproc import DaemonProcess
from tests.support.servers.dovecot import ImapAccount
from tests.support.servers.mails import make_mail

FIXTURES = Path(__file__).parent / "fixtures"

BASE = """\
smtp: {host: smtp.example.com, from: me@example.com}
gateway: {login: "380501234567", sender: Alpha}
state: {state}
"""


def load(tmp_path: Path, accounts: str) -> config_module.Config:
    path = tmp_path / "forwarder.yaml"
    path.write_text(BASE.replace("{state}", str(tmp_path / "state.db")) + accounts)
    return config_module.load(path)


def problems(tmp_path: Path, accounts: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, accounts)
    return [str(p) for p in caught.value.problems]


def test_an_accounts_list_names_each_account(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        "accounts:\n"
        "  - {name: work, host: imap.work.example, username: me, password: a}\n"
        "  - {name: personal, host: imap.ukr.net, username: me, password: b,\n"
        "     folders: [INBOX, Alerts], max_connections: 2}\n",
    )
    assert [a.name for a in config.accounts] == ["work", "personal"]
    assert config.account("personal").host == "imap.ukr.net"
    assert config.imap is config.accounts[0]
    # One connection for the rounds, one IDLE: Alerts is polled.
    assert config.account("personal").idle_folders == ("INBOX",)
    assert config.account("work").idle_folders == ("INBOX",)


def test_a_single_imap_section_is_the_default_account(tmp_path: Path) -> None:
    config = load(tmp_path, "imap: {host: imap.example.com, username: me, password: a}\n")
    assert [a.name for a in config.accounts] == ["default"]


def test_account_mistakes_are_reported_at_their_lines(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        "imap: {host: imap.example.com, username: me, password: a}\n"
        "accounts:\n"
        "  - {name: work, host: a.example, username: me, password: a}\n"
        "  - {name: work, host: b.example, username: me, password: b}\n"
        "  - {name: Bad Name, host: c.example, username: me, password: c}\n",
    )
    path = tmp_path / "forwarder.yaml"
    assert f"{path}:4: use imap: for one account or accounts: for several, not both" in found
    assert (
        f"{path}:7: accounts[1].name: account name 'work' is used twice, at line 6 and line 7"
        in found
    )
    assert any(p.startswith(f"{path}:8: accounts[2].name") and "lower-case" in p for p in found)


def test_a_rule_may_match_on_the_account(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        "accounts:\n"
        "  - {name: work, host: a.example, username: me, password: a}\n"
        "rules:\n"
        "  - {name: work, match: {account: work}, action: forward}\n"
        "tests:\n"
        "  - {name: work mail, mail: {subject: hi, account: work}, expect: work}\n"
        "  - {name: other mail, mail: {subject: hi, account: home}, expect: skip}\n",
    )
    from forwarder.rules.ruletests import run_rule_tests

    assert [r.passed for r in run_rule_tests(config.ruleset)] == [True, True]


# -- the state file ---------------------------------------------------------------------------
def v1_state(path: Path) -> Path:
    with sqlite3.connect(path) as db:
        db.executescript((FIXTURES / "state-v1.sql").read_text())
    return path


def test_a_schema_1_state_file_is_migrated_and_loses_nothing(tmp_path: Path) -> None:
    store = Store(v1_state(tmp_path / "state.db"))
    try:
        # schema 1 → 2 (accounts) → 3 (receipts, issue 11), in one open
        assert store.get_meta("schema_version") == str(SCHEMA_VERSION) == "3"
        assert store.checkpoint("INBOX") == store.checkpoint("INBOX", account="default")
        assert (store.checkpoint("INBOX").uidvalidity, store.checkpoint("INBOX").last_uid) == (
            7,
            42,
        )
        assert store.checkpoint("INBOX", account="work") is None
        assert store.handled_uids("INBOX", 7, [40, 41, 42]) == {41, 42}
        assert store.forwarded_as("<a@example.com>") == "INBOX/41"
        (row,) = store.outbox_in(State.PENDING)
        assert (row.account, row.folder, row.uid, row.text) == (
            "default",
            "INBOX",
            41,
            "urgent: disk full",
        )
        (reply,) = store.replies()
        assert (reply.account, reply.code) == ("default", "OK")
        assert set(store.checkpoints()) == {("default", "INBOX"), ("default", "Alerts")}
    finally:
        store.close()
    again = Store(tmp_path / "state.db")  # opening a migrated file again changes nothing
    try:
        assert len(again.outbox_in(State.PENDING)) == 1
    finally:
        again.close()


def test_accounts_keep_their_own_checkpoints_but_share_the_message_id_ledger(
    tmp_path: Path,
) -> None:
    from forwarder.records import LedgerEntry

    store = Store(tmp_path / "state.db")
    try:
        work, home = store.account("work"), store.account("home")
        work.baseline("INBOX", 1, 10)
        home.baseline("INBOX", 5, 3)
        assert work.checkpoint("INBOX").last_uid == 10 and home.checkpoint("INBOX").last_uid == 3
        work.record_batch(
            "INBOX", 1, [LedgerEntry(11, "<same@x>", "forward", "r", "")], [], advance_to=11
        )
        assert home.forwarded_as("<same@x>") == "work:INBOX/11"  # one message, one SMS
        assert home.handled_uids("INBOX", 1, [11]) == set()
    finally:
        store.close()


# -- two real mailboxes -----------------------------------------------------------------------
def two_accounts(
    tmp_path: Path, work: Any, home: Any, gateway: Any, **imap: Any
) -> tuple[Path, dict[str, Any]]:
    settings = config_dict(work, gateway, tmp_path / "state.db")
    first = settings.pop("imap")
    second = config_dict(home, gateway, tmp_path / "state.db")["imap"]
    settings["accounts"] = [
        {"name": "work", **first, **imap},
        {"name": "home", **second},
    ]
    work_rule = {"name": "all-work", "match": {"account": "work"}, "action": "forward"}
    settings["rules"] = [*settings["rules"], work_rule]  # a copy: DEFAULT_RULES is shared
    path = tmp_path / "forwarder.yaml"
    path.write_text(yaml.safe_dump(settings, sort_keys=False))
    return path, settings


def status(config: Path) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "forwarder.cli", "status", "--config", str(config), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(result.stdout)


def test_two_accounts_are_both_forwarded_and_shown(tmp_path: Path, dovecot_server, gateway):
    work = _user(dovecot_server, "work")
    home = _user(dovecot_server, "home")
    config, _ = two_accounts(tmp_path, work, home, gateway, poll_interval=300)
    with DaemonProcess(config) as daemon:
        daemon.wait_for_meta("ready_at")
        dovecot_server.append(home.user, "INBOX", make_mail("plain mail at home", "x"))
        dovecot_server.append(home.user, "INBOX", make_mail("urgent: at home", "x"))
        dovecot_server.append(work.user, "INBOX", make_mail("plain mail at work", "x"))
        received = gateway.wait_for(2)
        shown = status(config)
        assert daemon.stop() == 0
    texts = {sms.text.split(": ", 1)[1].split("\n")[0] for sms in received}
    assert texts == {"plain mail at work", "urgent: at home"}
    assert len(gateway.received) == 2  # plain mail at home: skipped (not work, not urgent)
    assert set(shown["accounts"]) == {"work", "home"}
    assert set(shown["folders"]) == {"work:INBOX", "home:INBOX"}


def test_a_frozen_account_never_delays_another(
    tmp_path: Path, dovecot_server, dovecot_factory, gateway
) -> None:
    slow = dovecot_factory(tls=False)
    work = _user(slow, "work")
    home = _user(dovecot_server, "home")
    # The frozen account's round blocks for up to 60 s on its socket.
    config, _ = two_accounts(tmp_path, work, home, gateway, timeout=60, idle=False)
    with DaemonProcess(config) as daemon:
        daemon.wait_for_meta("ready_at")
        slow.freeze()
        try:
            dovecot_server.append(home.user, "INBOX", make_mail("urgent: home goes on", "x"))
            # Well inside the 60 s the frozen account's round is stuck: only a round of its
            # own can have brought it.
            (sms,) = gateway.wait_for(1, timeout=20)
        finally:
            slow.thaw()
        assert "home goes on" in sms.text
        assert daemon.stop(timeout=90) == 0


def _user(server: Any, name: str) -> ImapAccount:
    """A fresh mailbox on ``server`` (Dovecot creates users on first login)."""
    return ImapAccount(
        host=server.host,
        port=server.port,
        tls_port=server.tls_port,
        user=f"{name}-{uuid.uuid4().hex[:8]}",
        password=server.password,
        ca_file=server.ca_file,
        server=server,
    )


def test_check_says_which_folders_the_connection_budget_leaves_to_polling(tmp_path: Path) -> None:
    path = tmp_path / "forwarder.yaml"
    path.write_text(
        BASE.replace("{state}", str(tmp_path / "state.db"))
        + "imap: {host: imap.gmail.com, username: me, password: a, max_connections: 2,\n"
        + "       folders: [INBOX, Alerts, Bank]}\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "forwarder.cli", "check", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "allows IDLE on 1 folder(s); polled every 60 s instead: Alerts, Bank" in result.stdout
