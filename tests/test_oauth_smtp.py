"""SMTP AUTH XOAUTH2 against the gateway simulator with an authenticating handler, whose
tokens the identity-provider simulator issued: a send, a 535 for a saved token cured by one
refresh, and a revoked sign-in that halts sending with the command to run."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

from forwarder import config as config_module
from forwarder.delivery.states import State
from tests.support.delivery import our_log, queue, row, start
from tests.support.oauth import oauth2_section, saved, seed_tokens, write_oauth_config

USER = "alice@example.org"


def oauth_gateway(gateway_factory, idp):
    return gateway_factory(
        tls="starttls", oauth2_check=lambda user, token: token in idp.valid_access_tokens(user)
    )


def smtp_oauth(idp) -> dict:
    return {"auth": "oauth2", "username": USER, "oauth2": oauth2_section(idp)}


def test_an_sms_goes_out_after_auth_xoauth2(
    tmp_path: Path, gateway_factory, idp, clock, daemons, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    gateway = oauth_gateway(gateway_factory, idp)
    daemon = start(daemons, tmp_path, gateway, clock, smtp=smtp_oauth(idp))
    settings = daemon.config.smtp.oauth2
    assert settings is not None and settings.account == "smtp"
    data = seed_tokens(settings, idp, USER)
    (queued,) = queue(daemon)
    daemon.delivery.flush(daemon.clock())
    (sms,) = gateway.wait_for(1)
    assert sms.problems == () and sms.encrypted and sms.auth_login == USER
    assert row(daemon, queued.id).state == "sent"
    assert gateway.auth_attempts == [(USER, "XOAUTH2", True)]
    assert idp.grants == []
    assert data["access_token"] not in our_log(caplog)


def test_a_535_for_the_saved_token_refreshes_it_and_sends(
    tmp_path: Path, gateway_factory, idp, clock, daemons
) -> None:
    gateway = oauth_gateway(gateway_factory, idp)
    daemon = start(daemons, tmp_path, gateway, clock, smtp=smtp_oauth(idp))
    settings = daemon.config.smtp.oauth2
    seed_tokens(settings, idp, USER)
    idp.expire_access_tokens(USER)
    (queued,) = queue(daemon)
    daemon.delivery.flush(daemon.clock())
    gateway.wait_for(1)
    assert row(daemon, queued.id).state == "sent"
    assert gateway.auth_attempts == [(USER, "XOAUTH2", False), (USER, "XOAUTH2", True)]
    assert len(idp.grants_of("refresh_token", ok=True)) == 1
    assert saved(settings)["access_token"] in idp.valid_access_tokens(USER)


def test_a_revoked_sign_in_halts_sending_and_says_what_to_run(
    tmp_path: Path, gateway_factory, idp, clock, daemons
) -> None:
    gateway = oauth_gateway(gateway_factory, idp)
    daemon = start(daemons, tmp_path, gateway, clock, smtp=smtp_oauth(idp))
    seed_tokens(daemon.config.smtp.oauth2, idp, USER)
    idp.revoke(USER)
    (queued,) = queue(daemon)
    assert daemon.sender.send(row(daemon, queued.id)) is State.PENDING
    assert daemon.sender.halted is not None
    assert daemon.sender.halted.endswith(
        f"run: forwarder login --config {daemon.config.source} --account smtp"
    )
    assert row(daemon, queued.id).state == "pending"  # it waits for the new sign-in
    assert gateway.received == []


def test_smtp_shares_the_imap_sign_in_when_it_has_no_oauth2_section(
    tmp_path: Path, gateway, idp
) -> None:
    mailbox = SimpleNamespace(host="127.0.0.1", port=993, user=USER, password="unused")
    path = write_oauth_config(
        tmp_path / "forwarder.yaml", mailbox, gateway, idp, smtp={"auth": "oauth2"}
    )
    config = config_module.load(path)
    assert config.smtp.oauth2 is config.imap.oauth2 and config.smtp.username == USER
    assert config.imap.oauth2.scopes == (
        "https://outlook.office.com/IMAP.AccessAsUser.All",
        "https://outlook.office.com/SMTP.Send",
        "offline_access",
    )
