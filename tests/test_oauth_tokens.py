"""TokenSource against the identity-provider simulator over real HTTP: reuse, refresh before
expiry, rotation saved before use, invalid_grant, transient failures, the token file on disk,
and token_command."""

from __future__ import annotations

import os
import pwd
import stat
import sys
import time
from pathlib import Path

import pytest

from forwarder.configfile.schema import Secret
from forwarder.oauth import tokenfile, tokens
from forwarder.oauth.profiles import MICROSOFT_IMAP_SCOPE, OFFLINE_SCOPE, OAuth2Settings
from forwarder.oauth.tokens import (
    REFRESH_MARGIN,
    CommandTokenSource,
    LoginRequired,
    TokenRefused,
    TokenSource,
    TokenUnavailable,
    signed_in,
)
from tests.support.idp import CONFIDENTIAL_CLIENT, CONFIDENTIAL_SECRET, PUBLIC_CLIENT

USER = "alice@example.org"


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def settings_for(tmp_path: Path, idp, **overrides) -> OAuth2Settings:
    values = {
        "account": "work",
        "username": USER,
        "token_file": tmp_path / "oauth2-work.json",
        "config_file": "/etc/forwarder/forwarder.yaml",
        "provider": "microsoft",
        "client_id": PUBLIC_CLIENT,
        "scopes": (MICROSOFT_IMAP_SCOPE, OFFLINE_SCOPE),
        "token_url": idp.token_url if idp else "",
        "refresh_with_scope": True,
        "timeout": 5,
    }
    values.update(overrides)
    return OAuth2Settings(**values)


def sign_in(settings: OAuth2Settings, idp, **issue) -> dict:
    data = signed_in(settings, idp.issue(USER, settings.client_id, **issue), time.time())
    tokenfile.save(settings.token_file, data)
    return data


def test_a_token_still_valid_is_reused_without_asking_the_provider(tmp_path: Path, idp) -> None:
    settings = settings_for(tmp_path, idp)
    data = sign_in(settings, idp)
    source = TokenSource(settings)
    first = source.access_token()
    assert first.value.reveal() == data["access_token"] and not first.fresh
    assert source.access_token().value == first.value
    assert idp.grants == []


def test_refreshed_before_it_expires_and_the_rotated_token_saved(tmp_path: Path, idp) -> None:
    settings = settings_for(tmp_path, idp)
    data = sign_in(settings, idp)
    clock = Clock()
    source = TokenSource(settings, clock=clock)
    clock.now = data["expires_at"] - REFRESH_MARGIN + 1  # still valid, but not for long
    assert data["access_token"] in idp.valid_access_tokens(USER)

    token = source.access_token()

    assert token.fresh and token.value.reveal() != data["access_token"]
    (grant,) = idp.grants_of("refresh_token")
    assert grant.error is None
    assert grant.params["scope"] == f"{MICROSOFT_IMAP_SCOPE} {OFFLINE_SCOPE}"  # Microsoft's way
    now_saved = tokenfile.load(settings.token_file)
    assert now_saved is not None
    assert now_saved["access_token"] == token.value.reveal()
    assert now_saved["refresh_token"] != data["refresh_token"]  # rotated …
    assert idp.valid_refresh_tokens(USER) == [now_saved["refresh_token"]]  # … and the old dead
    assert stat.S_IMODE(settings.token_file.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [settings.token_file.name]  # no temp file


def test_a_rotated_refresh_token_is_never_used_before_it_is_saved(
    tmp_path: Path, idp, monkeypatch
) -> None:
    settings = settings_for(tmp_path, idp)
    data = sign_in(settings, idp, access_ttl=1)
    source = TokenSource(settings)
    real_save = tokenfile.save

    def disk_full(path, content):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tokenfile, "save", disk_full)
    with pytest.raises(TokenUnavailable, match="cannot save the new tokens") as caught:
        source.access_token()
    assert "No space left" in str(caught.value)
    assert tokenfile.load(settings.token_file)["refresh_token"] == data["refresh_token"]

    monkeypatch.setattr(tokenfile, "save", real_save)
    token = source.access_token()  # saves what it got, then uses it: no second refresh
    assert len(idp.grants_of("refresh_token")) == 1
    assert tokenfile.load(settings.token_file)["access_token"] == token.value.reveal()
    assert tokenfile.load(settings.token_file)["refresh_token"] in idp.valid_refresh_tokens(USER)


def test_a_token_the_server_refused_is_refreshed_at_once(tmp_path: Path, idp) -> None:
    settings = settings_for(tmp_path, idp)
    sign_in(settings, idp)
    source = TokenSource(settings)
    first = source.access_token()
    source.invalidate(first)
    second = source.access_token()
    assert second.fresh and second.value != first.value
    assert source.access_token().value == second.value  # one refresh, not one per call
    assert len(idp.grants_of("refresh_token")) == 1


def test_invalid_grant_stops_the_account_with_one_message_until_new_tokens(
    tmp_path: Path, idp
) -> None:
    settings = settings_for(tmp_path, idp)
    sign_in(settings, idp, access_ttl=1)
    idp.revoke(USER)
    heard: list[LoginRequired] = []
    unsubscribe = tokens.on_login_required(heard.append)
    try:
        source = TokenSource(settings)
        with pytest.raises(LoginRequired) as caught:
            source.access_token()
        message = str(caught.value)
        assert message == (
            f"OAuth2 account work ({USER}): the provider refused the refresh token "
            "(invalid_grant: The refresh token is invalid or was revoked); run: "
            "forwarder login --config /etc/forwarder/forwarder.yaml --account work"
        )
        assert caught.value.command.endswith("--account work")
        with pytest.raises(LoginRequired):
            source.access_token()  # still down, and the provider is not asked again
        assert len(idp.grants_of("refresh_token")) == 1
        assert heard == [caught.value]  # the hook, once

        sign_in(settings, idp)  # what `forwarder login` does: the file changes
        assert not source.access_token().fresh
    finally:
        unsubscribe()


def test_no_token_file_means_login_required(tmp_path: Path, idp) -> None:
    settings = settings_for(tmp_path, idp)
    with pytest.raises(LoginRequired, match=r"not signed in: there are no tokens in .*run: "):
        TokenSource(settings).access_token()


def test_tokens_of_another_client_id_are_not_used(tmp_path: Path, idp) -> None:
    sign_in(settings_for(tmp_path, idp), idp)
    other = settings_for(tmp_path, idp, client_id=CONFIDENTIAL_CLIENT)
    with pytest.raises(LoginRequired, match="issued to another client id"):
        TokenSource(other).access_token()


def test_a_provider_down_is_temporary_and_then_works(tmp_path: Path, idp) -> None:
    settings = settings_for(tmp_path, idp)
    sign_in(settings, idp, access_ttl=1)
    idp.fail_next_token_requests(1, status=503)
    source = TokenSource(settings)
    with pytest.raises(TokenUnavailable, match=r"failed \(HTTP 503\)"):
        source.access_token()
    assert source.access_token().fresh


def test_a_wrong_client_secret_is_refused_not_a_login(tmp_path: Path, idp) -> None:
    settings = settings_for(
        tmp_path, idp, client_id=CONFIDENTIAL_CLIENT, client_secret=Secret("wrong")
    )
    sign_in(settings, idp, access_ttl=1)
    with pytest.raises(TokenRefused) as caught:
        TokenSource(settings).access_token()
    assert not isinstance(caught.value, LoginRequired)
    assert "invalid_client" in str(caught.value) and "client_id" in str(caught.value)
    good = settings_for(
        tmp_path, idp, client_id=CONFIDENTIAL_CLIENT, client_secret=Secret(CONFIDENTIAL_SECRET)
    )
    assert TokenSource(good).access_token().fresh
    assert CONFIDENTIAL_SECRET not in repr(good)


def test_no_error_text_holds_a_token(tmp_path: Path, idp) -> None:
    settings = settings_for(tmp_path, idp)
    data = sign_in(settings, idp, access_ttl=1)
    secrets = {data["access_token"], data["refresh_token"]}
    texts = []
    idp.fail_next_token_requests(1, status=500)
    for arrange in (lambda: None, lambda: idp.revoke(USER)):
        arrange()
        with pytest.raises(tokens.TokenError) as caught:
            TokenSource(settings).access_token()
        texts.append(str(caught.value) + repr(caught.value))
    assert texts and not any(s in t for s in secrets for t in texts)


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can hand a file to another user")
def test_saved_as_root_the_file_belongs_to_the_state_directory_owner(tmp_path: Path) -> None:
    """`sudo forwarder login` must leave a file the service's (dynamic) user can read."""
    nobody = pwd.getpwnam("nobody")
    state_dir = tmp_path / "state"
    state_dir.mkdir(mode=0o700)
    os.chown(state_dir, nobody.pw_uid, nobody.pw_gid)
    tokenfile.save(state_dir / "oauth2-default.json", {"access_token": "x"})
    st = (state_dir / "oauth2-default.json").stat()
    assert (st.st_uid, st.st_gid) == (nobody.pw_uid, nobody.pw_gid)
    assert stat.S_IMODE(st.st_mode) == 0o600


# -- token_command -------------------------------------------------------------------------------
def command_source(tmp_path: Path, command: tuple[str, ...], timeout: float = 5) -> TokenSource:
    settings = settings_for(
        tmp_path,
        None,
        provider=None,
        client_id="",
        token_url="",
        token_command=command,
        timeout=timeout,
    )
    return tokens.source_for(settings)


def test_token_command_stdout_is_the_token(tmp_path: Path) -> None:
    source = command_source(tmp_path, ("/bin/sh", "-c", "printf 'tok-123\\n'"))
    assert isinstance(source, CommandTokenSource)
    token = source.access_token()
    assert token.value.reveal() == "tok-123" and token.expires_at is None
    argv = command_source(tmp_path, (sys.executable, "-c", "print('tok-456')"))
    assert argv.access_token().value.reveal() == "tok-456"


def test_a_failing_token_command_says_why_without_echoing_the_token(tmp_path: Path) -> None:
    script = "echo tok-SECRET-1; echo 'refresh failed for tok-SECRET-1' >&2; exit 3"
    source = command_source(tmp_path, ("/bin/sh", "-c", script))
    with pytest.raises(TokenUnavailable) as caught:
        source.access_token()
    assert str(caught.value) == (
        "OAuth2 account work: the token_command exited with status 3: refresh failed for ***"
    )


def test_a_token_command_that_hangs_is_killed_with_its_children(tmp_path: Path) -> None:
    source = command_source(tmp_path, ("/bin/sh", "-c", "sleep 60 & sleep 60"), timeout=1)
    with pytest.raises(TokenUnavailable, match="did not finish within 1 s"):
        source.access_token()


def test_a_token_command_that_cannot_run_or_prints_nothing_is_refused(tmp_path: Path) -> None:
    with pytest.raises(TokenRefused, match="cannot be run: No such file"):
        command_source(tmp_path, ("/nonexistent/token-tool",)).access_token()
    with pytest.raises(TokenRefused, match="printed nothing"):
        command_source(tmp_path, ("/bin/true",)).access_token()


# -- pure SASL pieces ----------------------------------------------------------------------------
def test_what_a_bye_says_about_the_token() -> None:
    from forwarder.oauth.sasl import says_token_expired

    assert says_token_expired("Session invalidated - AccessTokenExpired")  # Microsoft
    assert says_token_expired("Access token has expired")
    assert not says_token_expired("Server shutting down.")  # Dovecot, doveadm kick
    assert not says_token_expired("Disconnected for inactivity.")


def test_the_xoauth2_response_and_the_answer_to_a_challenge() -> None:
    from forwarder.oauth.sasl import smtp_authobject, xoauth2

    assert xoauth2("me@x.org", "tok") == "user=me@x.org\x01auth=Bearer tok\x01\x01"
    respond = smtp_authobject("me@x.org", "tok")
    assert respond() == xoauth2("me@x.org", "tok")
    assert respond(b'{"status":"401"}') == ""  # then the server's 535, not the token again
