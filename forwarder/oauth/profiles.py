"""What each provider needs, as values: endpoints, scopes, the sign-in flow, and quirks.

Pure: ``config`` reads the YAML and asks here for defaults and for what is not allowed;
nothing here touches the network or a file.

Facts encoded here (each one a reason someone's setup broke elsewhere):

- Microsoft (Outlook.com, Microsoft 365) accepts only XOAUTH2 on IMAP, not OAUTHBEARER. Its
  device-code flow works for IMAP/SMTP scopes; ``offline_access`` is what brings a refresh
  token. Personal accounts sign in at the ``consumers`` tenant, work accounts at their own
  tenant or ``common``/``organizations``. It rotates refresh tokens.
- Google refuses the device flow for the Gmail scope ``https://mail.google.com/``: only the
  loopback redirect flow works. ``access_type=offline`` and ``prompt=consent`` make it hand out
  a refresh token on every sign-in; a "Desktop app" client has a client secret that Google
  requires although it cannot be kept secret in an installed app.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from forwarder.configfile.schema import Secret

PROVIDERS = ("microsoft", "google", "custom")
FLOWS = ("device", "loopback")
MECHANISMS = ("xoauth2", "oauthbearer")

MICROSOFT_LOGIN = "https://login.microsoftonline.com"
MICROSOFT_IMAP_SCOPE = "https://outlook.office.com/IMAP.AccessAsUser.All"
MICROSOFT_SMTP_SCOPE = "https://outlook.office.com/SMTP.Send"
OFFLINE_SCOPE = "offline_access"
#: Personal Microsoft account domains: those sign in at the "consumers" tenant.
MICROSOFT_PERSONAL_DOMAINS = ("outlook.", "hotmail.", "live.", "msn.com", "passport.com")

GOOGLE_AUTHORIZATION_URL = "https://accounts.google.com/o/oauth2/v2/auth"
GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"
GOOGLE_SCOPE = "https://mail.google.com/"

#: The name of the token set of the single ``imap:`` section (and, later, of ``accounts:``).
DEFAULT_ACCOUNT = "default"
#: The token set of an ``smtp.oauth2`` section of its own.
SMTP_ACCOUNT = "smtp"


@dataclass(frozen=True)
class OAuth2Settings:
    """Everything needed to get, refresh and use one account's tokens; an immutable value.

    ``token_command`` replaces the provider part: its output is the access token, and
    ``provider`` is None.
    """

    account: str  # which token set: "default" for imap:, "smtp" for an own smtp.oauth2
    username: str  # the mailbox login: the SASL user and the sign-in hint
    token_file: Path  # beside the state file
    config_file: str  # for messages: "forwarder login --config F --account A"
    provider: str | None = None  # microsoft | google | custom; None with token_command
    client_id: str = ""
    client_secret: Secret | None = None
    scopes: tuple[str, ...] = ()
    token_url: str = ""
    device_authorization_url: str | None = None
    authorization_url: str | None = None
    flow: str = "device"  # how `forwarder login` signs in: device | loopback
    redirect_host: str = "127.0.0.1"  # the loopback redirect URI's host
    redirect_port: int = 0  # 0: any free port (Microsoft and Google allow any)
    authorize_params: tuple[tuple[str, str], ...] = ()  # extra authorization request fields
    refresh_with_scope: bool = False  # send scope= with a refresh (Microsoft wants it)
    mechanism: str = "xoauth2"  # IMAP SASL mechanism: xoauth2 | oauthbearer
    token_command: tuple[str, ...] | None = None  # argv
    timeout: float = 30.0  # each HTTP request, and the token command

    @property
    def login_command(self) -> str:
        return f"forwarder login --config {self.config_file} --account {self.account}"

    @property
    def token_endpoint_auth_method(self) -> str:
        """RFC 6749 §2.3: a public client sends only its id; a secret goes in the body."""
        return "client_secret_post" if self.client_secret else "none"


def microsoft_tenant(username: str) -> str:
    """ "consumers" for a personal account (outlook.com, hotmail.com, live.com…), else "common"."""
    domain = username.rpartition("@")[2].lower()
    if any(domain.startswith(p) or domain == p for p in MICROSOFT_PERSONAL_DOMAINS):
        return "consumers"
    return "common"


def microsoft_urls(tenant: str) -> dict[str, str]:
    base = f"{MICROSOFT_LOGIN}/{tenant}/oauth2/v2.0"
    return {
        "token_url": f"{base}/token",
        "device_authorization_url": f"{base}/devicecode",
        "authorization_url": f"{base}/authorize",
    }


def default_scopes(provider: str, *, imap: bool, smtp: bool) -> tuple[str, ...]:
    """The scopes a profile asks for when the config names none (custom: none: required)."""
    if provider == "microsoft":
        wanted = [MICROSOFT_IMAP_SCOPE] if imap else []
        if smtp:
            wanted.append(MICROSOFT_SMTP_SCOPE)
        return (*wanted, OFFLINE_SCOPE)
    if provider == "google":
        return (GOOGLE_SCOPE,)
    return ()


def default_flow(provider: str, *, device_url: str | None) -> str:
    if provider == "google":
        return "loopback"
    if provider == "custom" and not device_url:
        return "loopback"
    return "device"


def flow_problem(
    provider: str, flow: str, *, device_url: str | None, authorization_url: str | None
) -> str | None:
    if provider == "google" and flow == "device":
        return (
            "Google refuses the device flow for the Gmail scope: use flow: loopback "
            "(the default for google)"
        )
    if flow == "device" and not device_url:
        return "flow: device needs device_authorization_url"
    if flow == "loopback" and not authorization_url:
        return "flow: loopback needs authorization_url"
    return None


def mechanism_problem(provider: str, mechanism: str) -> str | None:
    if provider == "microsoft" and mechanism != "xoauth2":
        return "Microsoft accepts only XOAUTH2 on IMAP, not OAUTHBEARER: use mechanism: xoauth2"
    return None


def authorize_params(provider: str) -> tuple[tuple[str, str], ...]:
    if provider == "google":
        # Without these Google gives a refresh token only on the very first consent.
        return (("access_type", "offline"), ("prompt", "consent"))
    return ()


def redirect_host(provider: str) -> str:
    # Microsoft's app registrations take "http://localhost" as a desktop redirect URI (any
    # port); Google's desktop clients accept the loopback IP literal RFC 8252 §7.3 prefers.
    return "localhost" if provider == "microsoft" else "127.0.0.1"


def token_file(state: Path, account: str) -> Path:
    return state.parent / f"oauth2-{account}.json"
