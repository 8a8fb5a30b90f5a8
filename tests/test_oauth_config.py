"""imap.auth / smtp.auth: oauth2 and the oauth2: sections: profiles' defaults, and FILE:LINE
for every mistake."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from forwarder import config as config_module
from forwarder.config import ConfigError
from forwarder.oauth import profiles

REST = """\
gateway: {login: "380501234567", sender: MyAlpha}
rules: [{name: all, match: {subject: {contains: x}}, action: forward}]
"""


def load(tmp_path: Path, text: str, more: str = ""):
    path = tmp_path / "f.yaml"
    path.write_text(textwrap.dedent(text) + more + REST)
    return config_module.load(path)


def problems(tmp_path: Path, text: str, more: str = "") -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text, more)
    return [str(p).replace(f"{tmp_path / 'f.yaml'}:", "") for p in caught.value.problems]


SMTP = """\
smtp:
  host: smtp.example.com
  from: me@example.com
"""


def test_microsoft_defaults_for_a_personal_account(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """\
        imap:
          host: outlook.office365.com
          username: me@outlook.com
          auth: oauth2
          oauth2: {provider: microsoft, client_id: app-id}
        smtp:
          host: smtp-mail.outlook.com
          security: starttls
          auth: oauth2
          from: me@outlook.com
        state: /var/lib/forwarder/state.db
    """,
    )
    s = config.imap.oauth2
    assert s is not None and config.smtp.oauth2 is s
    assert s.token_url == "https://login.microsoftonline.com/consumers/oauth2/v2.0/token"
    assert s.device_authorization_url.endswith("/consumers/oauth2/v2.0/devicecode")
    assert (s.flow, s.mechanism, s.account) == ("device", "xoauth2", "default")
    assert s.token_file == Path("/var/lib/forwarder/oauth2-default.json")
    assert s.client_secret is None and s.token_endpoint_auth_method == "none"
    assert config.imap.password.reveal() == ""


@pytest.mark.parametrize(
    ("username", "tenant"),
    [("me@contoso.com", "common"), ("me@hotmail.co.uk", "consumers"), ("me@live.com", "consumers")],
)
def test_microsoft_tenant_follows_the_account(username: str, tenant: str) -> None:
    assert profiles.microsoft_tenant(username) == tenant


def test_a_tenant_and_every_endpoint_can_be_given(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """\
        imap:
          host: outlook.office365.com
          username: me@contoso.com
          auth: oauth2
          oauth2:
            provider: microsoft
            client_id: app-id
            tenant: contoso.onmicrosoft.com
            authorization_url: http://127.0.0.1:8080/authorize
    """,
        SMTP,
    )
    s = config.imap.oauth2
    assert s.token_url.startswith("https://login.microsoftonline.com/contoso.onmicrosoft.com/")
    assert s.authorization_url == "http://127.0.0.1:8080/authorize"
    assert s.scopes == (profiles.MICROSOFT_IMAP_SCOPE, profiles.OFFLINE_SCOPE)


def test_google_defaults(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """\
        imap:
          host: imap.gmail.com
          username: me@gmail.com
          auth: oauth2
          oauth2: {provider: google, client_id: x.apps.googleusercontent.com,
                   client_secret: GOCSPX-abc, mechanism: oauthbearer}
    """,
        SMTP,
    )
    s = config.imap.oauth2
    assert (s.flow, s.scopes, s.mechanism) == (
        "loopback",
        ("https://mail.google.com/",),
        "oauthbearer",
    )
    assert s.token_url == "https://oauth2.googleapis.com/token"
    assert dict(s.authorize_params) == {"access_type": "offline", "prompt": "consent"}
    assert "GOCSPX" not in repr(config)


def test_token_command_as_a_shell_line_or_a_list(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        """\
        imap:
          host: imap.example.com
          username: me@example.com
          auth: oauth2
          oauth2: {token_command: "oama access me@example.com", timeout: 10s}
        smtp:
          host: smtp.example.com
          username: me@example.com
          from: me@example.com
          auth: oauth2
          oauth2: {token_command: [/usr/bin/get-token, --smtp]}
    """,
    )
    assert config.imap.oauth2.token_command == ("/bin/sh", "-c", "oama access me@example.com")
    assert config.imap.oauth2.timeout == 10
    assert config.smtp.oauth2.token_command == ("/usr/bin/get-token", "--smtp")
    assert config.smtp.oauth2.account == "smtp"


def test_every_mistake_has_its_line(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """\
        imap:
          host: imap.gmail.com
          username: me@gmail.com
          auth: oauth2
          password: secret
          oauth2:
            provider: google
            client-id: x
            flow: device
            token_url: http://tokens.example.com/token
        smtp:
          host: smtp.gmail.com
          username: other@gmail.com
          auth: oauth2
          from: me@gmail.com
    """,
    )
    assert found == [
        "5: imap.password is not used with imap.auth: oauth2",
        "7: imap.oauth2.client_id is required (the client (application) id of your app "
        "registration)",
        "7: imap.oauth2.client_secret (or imap.oauth2.client_secret_file) is required",
        "8: unknown key 'imap.oauth2.client-id' (did you mean 'client_id'?)",
        "9: imap.oauth2: Google refuses the device flow for the Gmail scope: use flow: "
        "loopback (the default for google)",
        "10: imap.oauth2.token_url: 'http://tokens.example.com/token' must be an https:// URL "
        "(plain http only to a loopback host)",
        "13: smtp.username (other@gmail.com) must be imap.username (me@gmail.com) to use "
        "imap's OAuth2 sign-in; leave it out, or give smtp.oauth2 its own",
    ]


def test_profile_rules_and_missing_pieces(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """\
        imap:
          host: outlook.office365.com
          username: me@outlook.com
          auth: oauth2
          oauth2:
            provider: microsoft
            client_id: app
            mechanism: oauthbearer
            scopes: []
        smtp:
          host: smtp.example.com
          from: me@example.com
          auth: oauth2
          oauth2:
            provider: custom
            client_id: app
            mechanism: oauthbearer
    """,
    )
    assert found == [
        "8: imap.oauth2: Microsoft accepts only XOAUTH2 on IMAP, not OAUTHBEARER: use "
        "mechanism: xoauth2",
        "9: imap.oauth2.scopes must name at least one scope",
        "11: smtp.username is required with smtp.auth: oauth2 (the login)",
        "15: smtp.oauth2.scopes is required with provider: custom",
        "15: smtp.oauth2.token_url is required with provider: custom",
        "15: smtp.oauth2: provider custom needs device_authorization_url (device flow) or "
        "authorization_url (loopback flow)",
        "17: smtp.oauth2.mechanism: SMTP uses xoauth2 only",
    ]


def test_oauth2_pieces_in_the_wrong_place(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """\
        imap:
          host: imap.example.com
          username: me@example.com
          password: x
          auth: oauth3
          oauth2: {provider: google}
        smtp:
          host: smtp.example.com
          from: me@example.com
          auth: oauth2
        other:
          auth: oauth2
    """,
    )
    assert found[:3] == [
        "5: imap.auth must be one of password, oauth2, not 'oauth3'",
        "6: imap.oauth2 is only used with imap.auth: oauth2",
        "10: smtp.auth: oauth2 needs smtp.oauth2, or imap.auth: oauth2 to share its sign-in",
    ]


def test_token_command_excludes_the_provider_settings(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """\
        imap:
          host: imap.example.com
          username: me@example.com
          auth: oauth2
          oauth2:
            token_command: ""
            provider: microsoft
    """,
        SMTP,
    )
    assert found == [
        "6: imap.oauth2.token_command is empty",
        "7: imap.oauth2.provider is not used with imap.oauth2.token_command",
    ]


def test_auth_oauth2_without_a_section(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """\
        imap:
          host: imap.example.com
          username: me@example.com
          auth: oauth2
    """,
        SMTP,
    )
    assert found == [
        "4: imap.auth: oauth2 needs an imap.oauth2: section (provider: microsoft, google or custom)"
    ]


def test_the_readme_outlook_example_passes_check(tmp_path: Path) -> None:
    """A newcomer copies this block from README.md: it must be a valid config as it stands."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    after = readme[readme.index("<!-- outlook-example") :]
    block = after[after.index("```yaml\n") + 8 : after.index("```\n", after.index("```yaml"))]
    config = tmp_path / "forwarder.yaml"
    config.write_text(textwrap.dedent(block) + f"state: {tmp_path / 'state.db'}\n")
    result = subprocess.run(
        [sys.executable, "-m", "forwarder.cli", "check", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1] == (
        f"note: OAuth2 account default (me@outlook.com) is not signed in yet: run "
        f"forwarder login --config {config} --account default"
    )
    loaded = config_module.load(config)
    assert loaded.smtp.oauth2 is loaded.imap.oauth2
    assert loaded.imap.oauth2.token_url.startswith("https://login.microsoftonline.com/consumers/")


def test_each_account_has_its_own_sign_in_and_smtp_shares_the_one_it_names(tmp_path) -> None:
    config = load(
        tmp_path,
        """\
        accounts:
          - name: home
            host: imap.example.com
            username: me@example.com
            password: x
          - name: work
            host: outlook.office365.com
            username: me@contoso.com
            auth: oauth2
            oauth2: {provider: microsoft, client_id: app-id}
        smtp:
          host: smtp.office365.com
          security: starttls
          username: me@contoso.com
          auth: oauth2
          from: me@contoso.com
        state: /var/lib/forwarder/state.db
    """,
    )
    home, work = config.accounts
    assert home.oauth2 is None and work.oauth2 is not None
    assert work.oauth2.account == "work"
    assert work.oauth2.token_file == Path("/var/lib/forwarder/oauth2-work.json")
    assert work.oauth2.login_command.endswith("--account work")
    assert profiles.MICROSOFT_SMTP_SCOPE in work.oauth2.scopes
    assert config.smtp.oauth2 is work.oauth2


def test_an_account_oauth2_mistake_names_the_account(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """\
        accounts:
          - name: work
            host: outlook.office365.com
            username: me@contoso.com
            auth: oauth2
            password: x
            oauth2: {provider: microsoft, client_id: app-id, mechanism: oauthbearer}
    """,
        SMTP,
    )
    assert found == [
        "6: accounts[0].password is not used with accounts[0].auth: oauth2",
        "7: accounts[0].oauth2: Microsoft accepts only XOAUTH2 on IMAP, not OAUTHBEARER: use "
        "mechanism: xoauth2",
    ]
