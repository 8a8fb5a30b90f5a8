"""SIGHUP re-reads the config; a broken file is logged and the old rules keep running."""

from __future__ import annotations

import signal
from pathlib import Path

import yaml

from tests.configs import config_dict
from tests.daemonproc import DaemonProcess
from tests.servers.mails import make_mail


def test_reload_applies_good_rules_and_keeps_old_ones_on_a_bad_file(
    tmp_path: Path, imap_user, gateway
) -> None:
    server, user = imap_user.server, imap_user.user
    path = tmp_path / "f.yaml"
    settings = config_dict(imap_user, gateway, tmp_path / "state.db")
    path.write_text(yaml.safe_dump(settings, sort_keys=False))

    with DaemonProcess(path) as daemon:
        daemon.wait_for_checkpoint()

        # A broken file: every problem is logged with its line, the daemon goes on as before.
        path.write_text(path.read_text() + "rules_typo: 1\nlimits:\n  per_minute: lots\n")
        daemon.signal(signal.SIGHUP)
        daemon.wait_for_log("keeping the rules and settings already running")
        log = daemon.output()
        assert f"{path}:" in log and "unknown key 'rules_typo'" in log
        assert "limits.per_minute must be a whole number" in log
        server.append(user, "INBOX", make_mail("urgent: still works", "old rules"))
        (first,) = gateway.wait_for(1)
        assert first.text.startswith("Alice Sender: urgent: still works")

        # A good file with a new rule takes effect without a restart.
        settings["rules"] = [
            {"name": "invoices", "match": {"subject": {"contains": "invoice"}}, "action": "forward"}
        ]
        path.write_text(yaml.safe_dump(settings, sort_keys=False))
        daemon.signal(signal.SIGHUP)
        daemon.wait_for_log("configuration reloaded")
        server.append(user, "INBOX", make_mail("urgent: ignored now", "x"))
        server.append(user, "INBOX", make_mail("Invoice 42", "pay me"))
        received = gateway.wait_for(2)
        daemon.wait_for_checkpoint(above=2)
        assert daemon.stop() == 0
    assert received[1].text.startswith("Alice Sender: Invoice 42")
    assert len(gateway.received) == 2
