"""IMAP with OAuth2 against a real Dovecot whose ``oauth2`` passdb asks the identity-provider
simulator (RFC 7662 introspection): XOAUTH2 and OAUTHBEARER logins, a refused token refreshed
on the spot, IDLE sessions renewed before their token runs out or after the server ended them,
rotation across a restart of ``forwarder run``, and an ``invalid_grant`` that stops the account
with one message."""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from forwarder import config as config_module
from forwarder.config import ImapConfig
from forwarder.configfile.schema import Secret
from forwarder.imap.connection import AuthError, Mailbox, OAuthLoginRequired
from forwarder.imap.idle import CONNECTED, NEW_MAIL, IdleWatcher
from forwarder.oauth.tokens import REFRESH_MARGIN
from tests.support.daemonproc import DaemonProcess
from tests.support.oauth import (
    imap_settings,
    oauth2_section,
    saved,
    seed_tokens,
    write_oauth_config,
)
from tests.support.servers import free_port, wait_until
from tests.support.servers.mails import make_mail

NO_POLL = 300  # seconds: what arrives during a test came by IDLE


def mailbox_config(tmp_path: Path, oauth_user, **oauth2) -> ImapConfig:
    """The ImapConfig `forwarder` builds for ``oauth_user`` (through a real config file)."""
    idp = oauth_user.idp
    nobody = SimpleNamespace(host="127.0.0.1", port=free_port())  # SMTP is not used here
    path = write_oauth_config(
        tmp_path / "forwarder.yaml", oauth_user, nobody, idp, oauth2=oauth2_section(idp, **oauth2)
    )
    return config_module.load(path).imap


class Events:
    def __init__(self) -> None:
        self.seen: list[str] = []
        self._cond = threading.Condition()

    def __call__(self, folder: str, event: str) -> None:
        with self._cond:
            self.seen.append(event)
            self._cond.notify_all()

    def wait_for(self, event: str, count: int = 1, timeout: float = 10.0) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: self.seen.count(event) >= count, timeout):
                raise TimeoutError(f"{event!r} announced {self.seen.count(event)}/{count} times")


@pytest.fixture
def watch():
    started: list[IdleWatcher] = []

    def start(config: ImapConfig) -> tuple[IdleWatcher, Events]:
        events = Events()
        watcher = IdleWatcher(config, "INBOX", events)
        started.append(watcher)
        watcher.start()
        return watcher, events

    yield start
    for watcher in started:
        watcher.stop()
        watcher.join(5)
        assert not watcher.alive


# -- logging in ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("provider", "mechanism"), [("microsoft", "xoauth2"), ("custom", "oauthbearer")]
)
def test_logs_in_with_the_saved_token(tmp_path: Path, oauth_user, provider, mechanism) -> None:
    config = mailbox_config(tmp_path, oauth_user, provider=provider, mechanism=mechanism)
    assert config.oauth2 is not None and config.oauth2.mechanism == mechanism
    seed_tokens(config.oauth2, oauth_user.idp, oauth_user.user)
    oauth_user.server.append(oauth_user.user, "INBOX", make_mail("hello"))  # password still works
    with Mailbox(config) as mailbox:
        assert mailbox.select("INBOX").exists == 1
        assert mailbox.credentials is not None and not mailbox.credentials.fresh
    idp = oauth_user.idp
    assert [i.active for i in idp.introspections_of(oauth_user.user)] == [True]
    assert idp.grants_of("refresh_token", user=oauth_user.user) == []


def test_a_token_the_server_refuses_is_refreshed_and_the_login_retried(
    tmp_path: Path, oauth_user
) -> None:
    config = mailbox_config(tmp_path, oauth_user)
    seed_tokens(config.oauth2, oauth_user.idp, oauth_user.user)
    oauth_user.idp.expire_access_tokens(oauth_user.user)  # expired early, server-side
    with Mailbox(config) as mailbox:
        mailbox.select("INBOX")
        assert mailbox.credentials is not None and mailbox.credentials.fresh
    idp, user = oauth_user.idp, oauth_user.user
    assert [i.active for i in idp.introspections_of(user)] == [False, True]
    assert len(idp.grants_of("refresh_token", ok=True, user=user)) == 1


def test_a_revoked_sign_in_says_run_forwarder_login(tmp_path: Path, oauth_user) -> None:
    config = mailbox_config(tmp_path, oauth_user)
    seed_tokens(config.oauth2, oauth_user.idp, oauth_user.user)
    oauth_user.idp.revoke(oauth_user.user)
    with pytest.raises(OAuthLoginRequired) as caught:
        Mailbox(config).connect()
    assert caught.value.account == "default"
    assert str(caught.value).endswith(
        f"run: forwarder login --config {tmp_path / 'forwarder.yaml'} --account default"
    )


def test_a_fresh_token_refused_is_an_auth_error_not_a_refresh_loop(
    tmp_path: Path, oauth_user
) -> None:
    config = mailbox_config(tmp_path, oauth_user)
    idp = oauth_user.idp
    seed_tokens(config.oauth2, idp, "someone-else")  # signed in as the wrong person
    with pytest.raises(AuthError, match=r"is imap\.username the account you signed in as"):
        Mailbox(config).connect()
    assert len(idp.grants_of("refresh_token", user="someone-else")) == 1


# -- IDLE ---------------------------------------------------------------------------------------
def test_idle_renews_its_login_before_the_token_expires(tmp_path: Path, oauth_user, watch):
    config = dataclasses.replace(mailbox_config(tmp_path, oauth_user), idle_renew=0.5)
    idp, user = oauth_user.idp, oauth_user.user
    seed_tokens(config.oauth2, idp, user, access_ttl=REFRESH_MARGIN + 2)
    watcher, events = watch(config)
    events.wait_for(CONNECTED)
    events.wait_for(CONNECTED, count=2)  # a second session, with a refreshed token
    oauth_user.server.append(user, "INBOX", make_mail("after the renewal"))
    events.wait_for(NEW_MAIL)
    assert watcher.sessions == 2
    assert len(idp.grants_of("refresh_token", ok=True, user=user)) == 1
    assert idp.introspections_of(user, active=False) == []  # never refused: renewed in time
    assert watcher.backoff.failures == 0


def test_idle_ended_by_the_server_comes_back_with_a_fresh_token(
    tmp_path: Path, oauth_user, watch
) -> None:
    config = mailbox_config(tmp_path, oauth_user)
    idp, user, server = oauth_user.idp, oauth_user.user, oauth_user.server
    seed_tokens(config.oauth2, idp, user)
    _, events = watch(config)
    events.wait_for(CONNECTED)
    idp.expire_access_tokens(user)
    server.kick(user)  # BYE, as when a provider invalidates the session
    events.wait_for(CONNECTED, count=2)
    server.append(user, "INBOX", make_mail("back"))
    events.wait_for(NEW_MAIL)
    assert len(idp.grants_of("refresh_token", ok=True, user=user)) == 1
    assert [i.active for i in idp.introspections_of(user)][-2:] == [False, True]


# -- the daemon ---------------------------------------------------------------------------------
def forwarder_status(config: Path) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "forwarder.cli", "status", "--config", str(config), "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_token_expired_mid_idle_reconnects_and_the_mail_meanwhile_is_forwarded_once(
    tmp_path: Path, oauth_user, gateway
) -> None:
    idp, user, server = oauth_user.idp, oauth_user.user, oauth_user.server
    config = write_oauth_config(
        tmp_path / "forwarder.yaml", oauth_user, gateway, idp, imap={"poll_interval": NO_POLL}
    )
    settings = imap_settings(config)
    seed_tokens(settings, idp, user)
    with DaemonProcess(config) as daemon:
        daemon.wait_for_checkpoint()
        # The round's connection and the IDLE one both logged in.
        idp.wait_for(lambda: len(idp.introspections_of(user, active=True)) >= 2, "two logins")
        idp.expire_access_tokens(user)  # the provider ends the token early …
        server.kick(user)  # … and the server the sessions (BYE)
        server.append(user, "INBOX", make_mail("urgent: while the token expired", "body"))
        (sms,) = gateway.wait_for(1)
        daemon.wait_for_checkpoint(above=0)
        assert daemon.stop() == 0
        log = daemon.output()
    assert sms.text.startswith("Alice Sender: urgent: while the token expired")
    assert len(gateway.received) == 1
    assert len(idp.grants_of("refresh_token", ok=True, user=user)) == 1  # one, for everybody
    assert idp.introspections_of(user, active=False)  # the old token was refused first
    assert saved(settings)["access_token"] in idp.valid_access_tokens(user)
    for token in (saved(settings)["access_token"], saved(settings)["refresh_token"]):
        assert token not in log


def test_a_rotated_refresh_token_survives_a_restart(tmp_path: Path, oauth_user, gateway):
    idp, user, server = oauth_user.idp, oauth_user.user, oauth_user.server
    config = write_oauth_config(tmp_path / "forwarder.yaml", oauth_user, gateway, idp)
    settings = imap_settings(config)
    first = seed_tokens(settings, idp, user, access_ttl=1)  # refreshed at once, and rotated
    with DaemonProcess(config) as daemon:
        daemon.wait_for_checkpoint()
        assert daemon.stop() == 0
    rotated = saved(settings)["refresh_token"]
    assert rotated != first["refresh_token"] and idp.valid_refresh_tokens(user) == [rotated]

    idp.expire_access_tokens(user)  # the restarted daemon must refresh, with the new one
    with DaemonProcess(config) as daemon:
        daemon.wait_for_checkpoint()
        server.append(user, "INBOX", make_mail("urgent after the restart", "body"))
        gateway.wait_for(1)
        assert daemon.stop() == 0
    refreshes = idp.grants_of("refresh_token", user=user)
    assert [g.error for g in refreshes] == [None, None]
    assert [g.params["refresh_token"] for g in refreshes] == [first["refresh_token"], rotated]


def test_invalid_grant_stops_the_account_with_one_clear_error_until_login_and_reload(
    tmp_path: Path, oauth_user, gateway
) -> None:
    idp, user, server = oauth_user.idp, oauth_user.user, oauth_user.server
    config = write_oauth_config(
        tmp_path / "forwarder.yaml", oauth_user, gateway, idp, imap={"poll_interval": NO_POLL}
    )
    settings = imap_settings(config)
    seed_tokens(settings, idp, user)
    idp.revoke(user)
    login = f"forwarder login --config {config} --account default"
    with DaemonProcess(config) as daemon:
        wait_until(
            lambda: (
                daemon.config.with_name("state.db").exists()
                and login in (forwarder_status(config)["last_poll_error"] or "")
            ),
            20,
            "the round to report the refused sign-in",
        )
        assert len(idp.grants_of("refresh_token", user=user)) == 1  # asked once, then left alone
        status = forwarder_status(config)
        (entry,) = status["oauth2"]
        assert (entry["account"], entry["login_command"]) == ("default", login)

        seed_tokens(settings, idp, user)  # what `forwarder login` leaves behind
        daemon.signal(signal.SIGHUP)  # `systemctl reload forwarder`: try again at once
        daemon.wait_for_checkpoint()  # in at last: the first look baselines the mailbox
        server.append(user, "INBOX", make_mail("urgent after signing in again", "body"))
        (sms,) = gateway.wait_for(1)
        assert daemon.stop() == 0
        log = daemon.output()
    assert sms.text.startswith("Alice Sender: urgent after signing in again")
    errors = [line for line in log.splitlines() if line.startswith("ERROR") and login in line]
    assert len(errors) == 1, log
    assert "the provider refused the refresh token (invalid_grant" in errors[0]
    assert saved(settings)["refresh_token"] not in json.dumps(status) + log


def test_password_logins_still_work_beside_oauth2(oauth_user) -> None:
    """The oauth2 Dovecot keeps the static passdb for LOGIN (the mail helpers use it)."""
    config = ImapConfig(
        host=oauth_user.host,
        port=oauth_user.port,
        security="plain",
        username=oauth_user.user,
        password=Secret(oauth_user.password),
        timeout=5,
    )
    with Mailbox(config) as mailbox:
        assert mailbox.credentials is None
        mailbox.select("INBOX")
