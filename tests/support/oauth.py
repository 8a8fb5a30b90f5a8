"""Helpers for the OAuth2 tests (no tests here): config files whose provider profile points at
the identity-provider simulator, and token files as ``forwarder login`` would leave them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import yaml

from forwarder import config as config_module
from forwarder.oauth import tokenfile
from forwarder.oauth.profiles import OAuth2Settings
from forwarder.oauth.tokens import signed_in
from tests.support.configs import config_dict
from tests.support.idp import PUBLIC_CLIENT, IdentityProvider


def oauth2_section(idp: IdentityProvider, provider: str = "microsoft", **overrides: Any) -> dict:
    """An ``oauth2:`` section for ``provider`` with every endpoint at the simulator."""
    section: dict[str, Any] = {
        "provider": provider,
        "client_id": PUBLIC_CLIENT,
        "token_url": idp.token_url,
        "authorization_url": idp.authorize_url,
    }
    if provider != "google":
        section["device_authorization_url"] = idp.device_url
    if provider == "custom":
        section["scopes"] = ["mail", "offline_access"]
    section.update(overrides)
    return section


def write_oauth_config(
    path: Path,
    account: Any,
    gateway: Any,
    idp: IdentityProvider,
    /,
    *,
    oauth2: dict | None = None,
    **extra: Any,
) -> Path:
    """The usual test config, but IMAP signs in with OAuth2 (``oauth2`` replaces the section)."""
    data = config_dict(account, gateway, path.parent / "state.db", **extra)
    data["imap"].pop("password", None)
    data["imap"]["auth"] = "oauth2"
    data["imap"]["oauth2"] = oauth2 if oauth2 is not None else oauth2_section(idp)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def imap_settings(config_path: Path) -> OAuth2Settings:
    settings = config_module.load(config_path).imap.oauth2
    assert settings is not None
    return settings


def seed_tokens(
    settings: OAuth2Settings, idp: IdentityProvider, user: str, **issue: Any
) -> dict[str, Any]:
    """Sign ``user`` in at the simulator and save the tokens as ``forwarder login`` does."""
    data = signed_in(settings, idp.issue(user, settings.client_id, **issue), time.time())
    tokenfile.save(settings.token_file, data)
    return data


def saved(settings: OAuth2Settings) -> dict[str, Any]:
    data = tokenfile.load(settings.token_file)
    assert data is not None
    return data
