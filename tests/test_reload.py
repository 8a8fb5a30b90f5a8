"""SIGHUP re-reads the config; a broken file is logged and the old rules keep running."""

from __future__ import annotations

import signal
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import yaml

from forwarder import config as config_module
from forwarder.daemon import POLL_JOB, Daemon
from tests.support.configs import config_dict, write_config
from tests.support.daemonproc import DaemonProcess
from tests.support.notifysocket import NotifySocket
from tests.support.servers import free_port
from tests.support.servers.mails import make_mail


def test_reload_applies_good_rules_and_keeps_old_ones_on_a_bad_file(
    tmp_path: Path, imap_user, gateway
) -> None:
    server, user = imap_user.server, imap_user.user
    path = tmp_path / "f.yaml"
    settings = config_dict(imap_user, gateway, tmp_path / "state.db")
    path.write_text(yaml.safe_dump(settings, sort_keys=False))

    notify = NotifySocket()
    with notify, DaemonProcess(path, env=notify.env) as daemon:
        daemon.wait_for_checkpoint()
        notify.until(lambda m: m.get("READY") == "1")

        # A broken file: every problem is logged with its line, the daemon goes on as before.
        path.write_text(path.read_text() + "rules_typo: 1\nlimits:\n  per_minute: lots\n")
        daemon.signal(signal.SIGHUP)
        notify.until(lambda m: m.get("RELOADING") == "1")
        refused = notify.until(lambda m: m.get("READY") == "1")
        assert "reload refused" in refused["STATUS"]
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
        notify.until(lambda m: m.get("RELOADING") == "1")
        reloaded = notify.until(lambda m: m.get("READY") == "1")
        assert "reload refused" not in reloaded["STATUS"]
        server.append(user, "INBOX", make_mail("urgent: ignored now", "x"))
        server.append(user, "INBOX", make_mail("Invoice 42", "pay me"))
        received = gateway.wait_for(2)
        daemon.wait_for_checkpoint(above=2)
        assert daemon.stop() == 0
    assert received[1].text.startswith("Alice Sender: Invoice 42")
    assert len(gateway.received) == 2


def test_reload_applies_a_new_poll_interval(tmp_path: Path, gateway) -> None:
    # imap.poll_interval is the safety net under IDLE (and all there is without it).
    imap = SimpleNamespace(host="127.0.0.1", port=free_port(), user="u", password="p")
    path = write_config(tmp_path / "f.yaml", imap, gateway, imap={"poll_interval": 300})
    daemon = Daemon(config_module.load(path))
    daemon.start()
    try:
        write_config(path, imap, gateway, imap={"poll_interval": 20})
        assert daemon.reload()
        assert daemon.scheduler.get_job(POLL_JOB).trigger.interval == timedelta(seconds=20)
    finally:
        daemon.shutdown()
        daemon.store.close()


def test_reload_applies_a_new_message_id_domain_to_resent_sms_too(tmp_path: Path, gateway) -> None:
    # The guard that keeps forwarder's own requests out reads the domain from the new config.
    imap = SimpleNamespace(host="127.0.0.1", port=free_port(), user="u", password="p")
    path = write_config(tmp_path / "f.yaml", imap, gateway)
    daemon = Daemon(config_module.load(path))
    try:
        write_config(path, imap, gateway, delivery={"message_id_domain": "fwd.example.com"})
        assert daemon.reload()
        assert daemon.tracker.new_message_id().endswith("@fwd.example.com>")
    finally:
        daemon.shutdown()
        daemon.store.close()


def test_reload_applies_new_delivery_retry_attempts(tmp_path: Path, gateway) -> None:
    imap = SimpleNamespace(host="127.0.0.1", port=free_port(), user="u", password="p")
    path = write_config(tmp_path / "f.yaml", imap, gateway)
    daemon = Daemon(config_module.load(path))
    try:
        write_config(path, imap, gateway, delivery={"retry_attempts": 7})  # smtp: unchanged
        assert daemon.reload()
        daemon.delivery.flush(daemon.clock())  # nothing queued: no SMTP connection
        assert daemon.sender.attempts == 7
    finally:
        daemon.shutdown()
        daemon.store.close()
