"""The offline commands: try, check, test, status on an empty state. No server needed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from forwarder.cli import EX_CONFIG, EX_NOINPUT, EX_OK, EX_TEMPFAIL, main
from tests.support.servers.mails import make_mail

BASE = {
    "imap": {"host": "imap.example.com", "username": "me", "password": "imap-secret"},
    "smtp": {"host": "smtp.example.com", "from": "me@example.com"},
    "gateway": {"login": "0501234567", "sender": "MyAlpha"},
    "rules": [
        {"name": "urgent", "match": {"subject": {"contains": "urgent"}}, "action": "forward"},
        {"name": "news", "match": {"from": "*@news.example.com"}, "action": "skip"},
    ],
}


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "f.yaml"
    path.write_text(yaml.safe_dump({**BASE, "state": str(tmp_path / "state.db")}))
    return path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_try_json_shows_rule_and_the_exact_sms(config: Path, tmp_path: Path, capsys) -> None:
    mail = tmp_path / "m.eml"
    mail.write_bytes(make_mail("URGENT: «сервер» впав", "Диск заповнений.", from_="Ops <o@x.ua>"))
    code, out, _ = run(capsys, "try", "--config", str(config), str(mail), "--json")
    assert code == EX_OK
    result = json.loads(out)
    assert result["action"] == "forward" and result["rule"] == "urgent"
    assert result["sms"] == {
        "to": "380501234567@mail.alphasms.com.ua",
        "subject": "MyAlpha",
        "text": "Ops: URGENT: «сервер» впав\nДиск заповнений.",
        "length": 43,
        "encoding": "ucs2",
        "segments": 1,
    }


def test_try_skip_has_no_sms_and_explain_names_each_rule(
    config: Path, tmp_path: Path, capsys
) -> None:
    mail = tmp_path / "m.eml"
    mail.write_bytes(make_mail("Weekly digest", "...", from_="news@news.example.com"))
    code, out, _ = run(capsys, "try", "--config", str(config), str(mail), "--json", "--explain")
    result = json.loads(out)
    assert (code, result["action"], result["rule"], result["sms"]) == (EX_OK, "skip", "news", None)
    assert any("urgent" in line for line in result["trace"])
    assert any("news" in line for line in result["trace"])


def test_try_masks_the_secret_of_an_api_key_mode(tmp_path: Path, capsys) -> None:
    settings = {
        **BASE,
        "gateway": {
            "login": "380501234567",
            "sender": "MyAlpha",
            "mode": "phone",
            "auth": "api_key",
            "api_key": "TOPSECRETKEY",
            "recipients": ["0671112233"],
        },
    }
    config = tmp_path / "f.yaml"
    config.write_text(yaml.safe_dump(settings))
    mail = tmp_path / "m.eml"
    mail.write_bytes(make_mail("urgent", "x"))
    code, out, err = run(capsys, "try", "--config", str(config), str(mail))
    assert code == EX_OK
    assert "subject:  MyAlpha;***" in out
    assert "to:       380671112233@mail.alphasms.com.ua" in out
    assert "TOPSECRETKEY" not in out + err


def test_try_never_shows_a_secret_quoted_by_the_mail(tmp_path: Path, capsys) -> None:
    """A reply quoting the request Subject is skipped, as the daemon does, not shown as an SMS."""
    settings = {
        **BASE,
        "gateway": {
            "login": "380501234567",
            "sender": "MyAlpha",
            "mode": "phone",
            "auth": "api_key",
            "api_key": "TOPSECRETKEY",
            "recipients": ["0671112233"],
        },
    }
    config = tmp_path / "f.yaml"
    config.write_text(yaml.safe_dump(settings))
    mail = tmp_path / "m.eml"
    mail.write_bytes(make_mail("urgent: Re: MyAlpha;TOPSECRETKEY", "AUTH"))
    code, out, err = run(capsys, "try", "--config", str(config), str(mail))
    assert code == EX_OK
    assert out.startswith("decision: skip")
    assert "TOPSECRETKEY" not in out + err


def test_try_with_a_missing_mail_file(config: Path, tmp_path: Path, capsys) -> None:
    code, _, err = run(capsys, "try", "--config", str(config), str(tmp_path / "nope.eml"))
    assert code == EX_NOINPUT and "cannot read" in err


def test_check_lists_every_problem_and_never_shows_a_secret(tmp_path: Path, capsys) -> None:
    config = tmp_path / "f.yaml"
    config.write_text(
        "imap:\n  host: mail.example.com\n  username: me\n  password: hunter2\n"
        "  security: plain\n  pol_interval: 3\n"
        "smtp:\n  host: smtp.example.com\n  from: nobody\n"
        "gateway:\n  login: '380501234567'\n  sender: 'Far too long alpha'\n  mode: own_number\n"
        "  auth: api_key\n  api_key: 'abc;def'\n"
    )
    code, _, err = run(capsys, "check", "--config", str(config))
    assert code == EX_CONFIG
    lines = err.splitlines()
    assert f"{config}:5: imap.security: plain (unencrypted) is only allowed" in err
    assert any(line.startswith(f"{config}:6: unknown key 'imap.pol_interval'") for line in lines)
    assert f"{config}:9: smtp.from must be an e-mail address" in err
    assert f"{config}:12: gateway.sender:" in err
    assert f"{config}:14: gateway.mode own_number (mode b) sends no secret" in err
    assert "hunter2" not in err and "abc;def" not in err


def test_status_without_state_says_so(config: Path, capsys) -> None:
    code, _, err = run(capsys, "status", "--config", str(config))
    assert code == EX_TEMPFAIL and "no state yet" in err


def test_secret_from_a_file_and_from_the_environment(tmp_path: Path, capsys, monkeypatch) -> None:
    secret = tmp_path / "imap-password"
    secret.write_text("from-a-file\n")
    imap = {k: v for k, v in BASE["imap"].items() if k != "password"}
    settings = {
        **BASE,
        "imap": {**imap, "password_file": str(secret)},
        "smtp": {**BASE["smtp"], "username": "me", "password": "${SMTP_PASSWORD}"},
    }
    config = tmp_path / "f.yaml"
    config.write_text(yaml.safe_dump(settings))
    monkeypatch.setenv("SMTP_PASSWORD", "from-the-env")
    from forwarder import config as config_module

    loaded = config_module.load(config)
    assert loaded.imap.password.reveal() == "from-a-file"
    assert loaded.smtp.password.reveal() == "from-the-env"
    assert "from-a-file" not in repr(loaded) and "from-the-env" not in repr(loaded)


def test_unblock_a_saved_list_that_the_gateway_banned(config: Path, tmp_path: Path, capsys) -> None:
    # Modes c and e send to 'list:<id>'; status tells the user to run exactly this.
    from forwarder.store import Store

    store = Store(tmp_path / "state.db")
    store.block("list:12345", "BANNED reply to <fwd.1@f>")
    store.close()
    code, out, err = run(capsys, "unblock", "--config", str(config), "list:12345")
    assert (code, err) == (EX_OK, "")
    assert "list:12345 unblocked" in out
    store = Store(tmp_path / "state.db")
    assert store.blocked() == {}
    store.close()


def test_run_refuses_a_corrupt_state_file_with_exit_78(
    config: Path, tmp_path: Path, capsys, caplog
) -> None:
    (tmp_path / "state.db").write_bytes(b"this is not an SQLite database" * 100)
    code, _, _ = run(capsys, "run", "--config", str(config))
    assert code == EX_CONFIG
    assert "state file" in caplog.text and "unusable" in caplog.text


def test_numbers_in_the_running_config_are_plain_ints(config: Path) -> None:
    """The loader's int subclass (which remembers how a number was written) must not leak:
    socket.getaddrinfo refuses an int subclass as a port ("Int or String expected")."""
    from forwarder import config as config_module

    text = config.read_text() + "limits:\n  per_minute: 7\n"
    config.write_text(text.replace("host: imap.example.com", "host: imap.example.com\n  port: 993"))
    loaded = config_module.load(config)
    assert type(loaded.imap.port) is int and loaded.imap.port == 993
    assert type(loaded.limits.per_minute) is int
