"""``forwarder login`` as a person runs it: the device-code flow (Microsoft profile) and the
loopback redirect flow with PKCE (Google profile), both against the identity-provider
simulator, the test playing the person over HTTP; then the saved tokens log in to Dovecot."""

from __future__ import annotations

import queue
import re
import stat
import subprocess
import sys
import threading
import urllib.parse
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from forwarder import config as config_module
from forwarder.imap.connection import Mailbox
from forwarder.oauth import tokenfile
from tests.support.idp import CONFIDENTIAL_CLIENT, CONFIDENTIAL_SECRET, DEVICE_GRANT
from tests.support.oauth import oauth2_section, write_oauth_config
from tests.support.servers import free_port

READ_TIMEOUT = 15.0


class Login:
    """``forwarder login`` running, its output read line by line as it comes."""

    def __init__(self, config: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "forwarder.cli", "login", "--config", str(config), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def line_matching(self, pattern: str) -> re.Match[str]:
        while True:
            try:
                line = self.lines.get(timeout=READ_TIMEOUT)
            except queue.Empty:
                raise AssertionError(f"no line like {pattern!r}; saw {self.seen}") from None
            self.seen.append(line)
            if found := re.search(pattern, line):
                return found

    def finish(self) -> tuple[int, str, str]:
        code = self.proc.wait(READ_TIMEOUT)
        assert self.proc.stderr is not None
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return code, "\n".join(self.seen), self.proc.stderr.read()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(5)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


@pytest.fixture
def logins():
    started: list[Login] = []

    def run(config: Path, *args: str) -> Login:
        login = Login(config, *args)
        started.append(login)
        return login

    yield run
    for login in started:
        login.close()


def test_device_flow_then_the_saved_tokens_log_in(tmp_path: Path, oauth_user, logins) -> None:
    idp, user = oauth_user.idp, oauth_user.user
    nobody = SimpleNamespace(host="127.0.0.1", port=free_port())
    config = write_oauth_config(tmp_path / "forwarder.yaml", oauth_user, nobody, idp)
    login = logins(config)
    url = login.line_matching(r"1\. open:\s+(\S+)").group(1)
    code = login.line_matching(r"2\. enter:\s+(\S+)").group(1)
    assert url == idp.url("device")
    # The person opens the page on their phone, types the code and signs in.
    query = urllib.parse.urlencode({"user_code": code, "user": user})
    with urllib.request.urlopen(f"{url}?{query}", timeout=5) as page:
        assert page.status == 200
    status, out, err = login.finish()
    assert status == 0, out + err
    assert "Signed in." in out

    settings = config_module.load(config).imap.oauth2
    data = tokenfile.load(settings.token_file)
    assert data is not None and data["username"] == user and data["refresh_token"]
    assert stat.S_IMODE(settings.token_file.stat().st_mode) == 0o600
    for secret in (data["access_token"], data["refresh_token"]):
        assert secret not in out + err
    (asked,) = [r for r in idp.device_requests if r.get("scope", "").startswith("https://")][-1:]
    assert asked["scope"] == (
        "https://outlook.office.com/IMAP.AccessAsUser.All offline_access"
    )  # Microsoft's scopes; this config does not send through SMTP
    polls = idp.grants_of(DEVICE_GRANT, user=user)
    assert polls[-1].error is None
    assert all(g.error != "slow_down" for g in polls)  # it waited the interval between polls

    with Mailbox(config_module.load(config).imap) as mailbox:  # what the daemon then does
        mailbox.select("INBOX")


def test_loopback_flow_with_pkce_for_google(tmp_path: Path, idp, logins) -> None:
    user = "someone@gmail.com"
    mailbox = SimpleNamespace(host="127.0.0.1", port=993, user=user, password="unused")
    section = oauth2_section(
        idp, provider="google", client_id=CONFIDENTIAL_CLIENT, client_secret=CONFIDENTIAL_SECRET
    )
    nobody = SimpleNamespace(host="127.0.0.1", port=free_port())
    config = write_oauth_config(tmp_path / "forwarder.yaml", mailbox, nobody, idp, oauth2=section)
    login = logins(config)
    authorize = login.line_matching(r"1\. open:\s+(\S+)").group(1)
    login.line_matching(r"Waiting for you")

    # The browser: the provider answers with a redirect to forwarder's loopback listener.
    no_redirects = urllib.request.build_opener(NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as redirect:
        no_redirects.open(authorize, timeout=5)
    location = redirect.value.headers["Location"]
    redirect.value.close()
    assert location.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(location, timeout=10) as page:
        assert b"forwarder" in page.read()
    status, out, err = login.finish()
    assert status == 0, out + err

    (params,) = idp.authorize_requests
    assert params["scope"] == "https://mail.google.com/"
    assert params["code_challenge_method"] == "S256" and len(params["code_challenge"]) == 43
    assert (params["access_type"], params["prompt"]) == ("offline", "consent")
    assert params["login_hint"] == user
    (exchange,) = idp.grants_of("authorization_code")
    assert exchange.error is None and exchange.params["code_verifier"]
    assert exchange.params["client_secret"] == CONFIDENTIAL_SECRET  # Google wants it in the body
    data = tokenfile.load(config_module.load(config).imap.oauth2.token_file)
    assert data is not None and data["provider"] == "google" and data["username"] == user


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def test_a_declined_sign_in_says_so_and_saves_nothing(tmp_path: Path, idp, logins) -> None:
    mailbox = SimpleNamespace(host="127.0.0.1", port=993, user="bob@example.org", password="x")
    nobody = SimpleNamespace(host="127.0.0.1", port=free_port())
    config = write_oauth_config(tmp_path / "forwarder.yaml", mailbox, nobody, idp)
    login = logins(config)
    code = login.line_matching(r"2\. enter:\s+(\S+)").group(1)
    idp.device_page({"user_code": code, "deny": "1"})
    status, _out, err = login.finish()
    assert status == 1
    assert err.strip() == "forwarder login: sign-in was declined"
    assert not (tmp_path / "oauth2-default.json").exists()


def test_login_names_the_accounts_it_knows(tmp_path: Path, idp) -> None:
    mailbox = SimpleNamespace(host="127.0.0.1", port=993, user="bob@example.org", password="x")
    nobody = SimpleNamespace(host="127.0.0.1", port=free_port())
    config = write_oauth_config(tmp_path / "forwarder.yaml", mailbox, nobody, idp)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "forwarder.cli",
            "login",
            "--config",
            str(config),
            "--account",
            "work",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 64
    assert "has no OAuth2 account 'work' (accounts: default)" in result.stderr
    data = yaml.safe_load(config.read_text())
    assert data["imap"]["auth"] == "oauth2"
