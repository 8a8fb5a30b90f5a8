"""Configs for tests: a real YAML file pointing at the test servers, or an ``ImapConfig``."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from forwarder.config import ImapConfig
from forwarder.configfile.schema import Secret

OWNER = "380501234567"
ALPHA = "TestAlpha"

DEFAULT_RULES: list[dict[str, Any]] = [
    {"name": "urgent", "match": {"subject": {"contains": "urgent"}}, "action": "forward"}
]


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def config_dict(imap: Any, gateway: Any, state: Path, /, **extra: Any) -> dict[str, Any]:
    """Plaintext to the loopback test servers (TLS variants override imap/smtp keys)."""
    base: dict[str, Any] = {
        "imap": {
            "host": imap.host,
            "port": imap.port,
            "security": "plain",
            "username": imap.user,
            "password": imap.password,
            "folders": ["INBOX"],
            "poll_interval": 1,
            "timeout": 5,
        },
        "smtp": {
            "host": gateway.host,
            "port": gateway.port,
            "security": "plain",
            "from": "me@example.com",
            "timeout": 5,
        },
        "gateway": {"login": OWNER, "sender": ALPHA},
        "state": str(state),
        "rules": DEFAULT_RULES,
        "default": "skip",
    }
    return _merge(base, extra)


def write_config(path: Path, imap: Any, gateway: Any, /, **extra: Any) -> Path:
    state = path.parent / "state.db"
    path.write_text(yaml.safe_dump(config_dict(imap, gateway, state, **extra), sort_keys=False))
    return path


def imap_config(account, **overrides) -> ImapConfig:
    """Plaintext to the test server as ``account``; ``overrides`` replace any field."""
    config = ImapConfig(
        host=account.host,
        port=account.port,
        security="plain",
        username=account.user,
        password=Secret(account.password),
        timeout=5,
    )
    return dataclasses.replace(config, **overrides)
