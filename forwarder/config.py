"""The configuration file: read once, validated completely, then an immutable value.

``load(path)`` either returns a ``Config`` that the rest of forwarder trusts
without further checks, or raises ``ConfigError`` carrying every problem as
``FILE:LINE: what is wrong``. It never touches a server.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import shlex
import urllib.parse
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any

from forwarder.configfile import LOG_FORMATS  # re-exported: config.LOG_FORMATS
from forwarder.configfile.schema import Problems, Secret, Section
from forwarder.configfile.yamlsource import ConfigError, Problem, load_file
from forwarder.delivery.policy import LimitsConfig
from forwarder.delivery.receipts import Receipts
from forwarder.delivery.receipts import resolve as resolve_receipts
from forwarder.gateway import account as gateway
from forwarder.gateway.account import Account, Auth, Mode
from forwarder.oauth import profiles
from forwarder.oauth.profiles import OAuth2Settings
from forwarder.rules.guards import DEFAULT_REPLY_FROM
from forwarder.rules.ruleset import GuardContext, RuleSet, compile_ruleset
from forwarder.rules.ruletests import load_rule_tests
from forwarder.text.smstext import ENCODINGS, SMS_MAX_CHARS, SmsOptions, validate_template

DEFAULT_STATE = "/var/lib/forwarder/state.db"
SECURITY = ("tls", "starttls", "plain")
IMAP_PORTS = {"tls": 993, "starttls": 143, "plain": 143}
SMTP_PORTS = {"tls": 465, "starttls": 587, "plain": 25}
AUTH_METHODS = ("password", "oauth2")
METRICS_PORT = 9187

__all__ = ["Config", "ConfigError", "load"]


_DOMAIN = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*$"
)


_BARE_ADDRESS = re.compile(r"^[^\s@<>,;:\"()\[\]\\]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")


def check_domain(value: str) -> str | None:
    """A bare DNS name: it goes into To: and Message-ID: headers, so no spaces, ',', '@', CR/LF."""
    if not _DOMAIN.match(value):
        return f"{value!r} is not a domain name like mail.alphasms.com.ua"
    return None


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and 'localhost': the only hosts plaintext may go to."""
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _defaults(cls: type) -> dict[str, Any]:
    """A settings dataclass's field defaults: each default is written once, in its field."""
    return {f.name: f.default for f in dataclasses.fields(cls) if f.default is not MISSING}


@dataclass(frozen=True)
class ImapConfig:
    """One IMAP account: the single ``imap:`` section (named ``default``) or an item of
    ``accounts:``."""

    host: str
    port: int
    security: str  # tls | starttls | plain (plain only to loopback)
    username: str
    password: Secret
    folders: tuple[str, ...] = ("INBOX",)
    poll_interval: float = 60.0  # the safety-net poll, also the only mechanism when idle is off
    idle: bool = True  # RFC 2177 push where the server offers it
    idle_renew: float = 600.0  # re-issue IDLE this often; RFC 2177: servers may drop it at 29 min
    timeout: float = 30.0  # every socket operation; nothing may block for ever
    ca_file: str | None = None
    fetch_bytes: int = 4096  # how much of each text part to fetch: the SMS needs only the start
    keyword: str | None = None  # e.g. "$Forwarded": flag handled mail, when PERMANENTFLAGS allow
    name: str = "default"  # the account's name: state rows, status and rules' account: match
    max_connections: int | None = None  # None: 1 + one IDLE connection per folder
    auth: str = "password"  # password | oauth2
    oauth2: OAuth2Settings | None = None  # with auth: oauth2 (then password is empty)

    @property
    def idle_folders(self) -> tuple[str, ...]:
        """The folders that get an IDLE connection within the connection budget: one
        connection is the round's, the rest IDLE; folders beyond the budget are polled."""
        if not self.idle:
            return ()
        budget = len(self.folders) if self.max_connections is None else self.max_connections - 1
        return self.folders[: max(0, budget)]


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    security: str
    username: str | None
    password: Secret | None
    from_addr: str  # the address registered with AlphaSMS
    timeout: float = 30.0
    ca_file: str | None = None
    allow_plaintext_secrets: bool = False  # loopback only; for tests and local relays
    auth: str = "password"  # password (when username is set) | oauth2
    oauth2: OAuth2Settings | None = None  # with auth: oauth2: imap's, or smtp.oauth2's own


@dataclass(frozen=True)
class DeliveryConfig:
    # resend | alert: a request in doubt (cut off after the final dot) that no receipt settles
    on_doubt: str = "resend"
    receipts: str = Receipts.AUTO.value  # auto | sent_folder | copy | off: how doubts are settled
    receipt_wait: float = 120.0  # how long after a doubt its receipt may take to show up
    sent_folder: str | None = None  # receipts: sent_folder; None: the RFC 6154 \\Sent folder
    receipt_to: str | None = None  # receipts: copy; None: smtp.from
    receipt_folder: str | None = None  # receipts: copy; move copies here (None: mark them read)
    max_age: float = 6 * 3600.0  # keep retrying a pending SMS this long after due, then fail it
    retry_attempts: int = 3  # tries within one send before the SMS waits for the next round
    retry_backoff: float = 30.0  # first wait between rounds after a transient failure; doubles
    retry_backoff_max: float = 900.0  # ... up to this
    unless_read_wait: float = 900.0  # unless_read and IMAP down: wait this long, then send
    message_id_domain: str = "forwarder.invalid"


@dataclass(frozen=True)
class MetricsConfig:
    """Prometheus text at ``http://HOST:PORT/metrics``; served only when ``listen`` is set."""

    listen: tuple[str, int] | None = None  # (host, port); host an IP address or localhost
    allow_remote: bool = False  # the endpoint has no authentication: loopback unless said


@dataclass(frozen=True)
class HealthConfig:
    """A healthchecks.io-style dead man's switch: GET after good rounds, ``/fail`` on bad."""

    ping_url: Secret | None = None  # whoever knows it can ping: kept out of logs like a secret


@dataclass(frozen=True)
class AlertsConfig:
    """SMS to the owner about forwarder itself (the mailbox cannot be read, and back)."""

    enabled: bool = True
    imap_down_after: float = 1800.0


@dataclass(frozen=True)
class WatchdogConfig:
    """The systemd watchdog (active when the unit sets ``WatchdogSec=``)."""

    # No finished round for this long: hung, the pings stop and systemd restarts forwarder.
    # None: forwarder.ops.watchdog.round_bound(poll_interval, timeout), at least 15 min.
    round_timeout: float | None = None


@dataclass(frozen=True)
class Config:
    source: Path
    accounts: tuple[ImapConfig, ...]
    smtp: SmtpConfig
    gateway: Account
    delivery: DeliveryConfig
    limits: LimitsConfig
    sms: SmsOptions
    ruleset: RuleSet
    state: Path
    reply_from: tuple[str, ...] = DEFAULT_REPLY_FROM
    pause: float = 3600.0  # after AUTH/FORBIDDEN/NO LIST, wait this long before one probe SMS
    probe_wait: float = 300.0  # a probe with no error reply within this long closes the circuit
    log_level: str = "INFO"
    log_format: str = "plain"  # plain | json (one JSON object per line)
    metrics: MetricsConfig = MetricsConfig()
    health: HealthConfig = HealthConfig()
    alerts: AlertsConfig = AlertsConfig()
    watchdog: WatchdogConfig = WatchdogConfig()
    # Things worth fixing that do not stop forwarder (a secret in a file others can read).
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @property
    def imap(self) -> ImapConfig:
        """The first (with ``imap:``, the only) account."""
        return self.accounts[0]

    def account(self, name: str) -> ImapConfig:
        """The account called ``name``; KeyError if this config has none by that name."""
        for account in self.accounts:
            if account.name == name:
                return account
        raise KeyError(name)

    @property
    def receipts(self) -> Receipts:
        """The receipt kind in use (``auto`` resolved for this SMTP and IMAP host)."""
        return resolve_receipts(self.delivery.receipts, self.smtp.host, self.imap.host)

    @property
    def receipt_to(self) -> str:
        """Where ``copy`` receipts go: ``delivery.receipt_to``, else ``smtp.from``."""
        return self.delivery.receipt_to or self.smtp.from_addr


def load(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate the config file; raise ConfigError with every problem found."""
    document, loaded = load_file(path, environ)
    problems = Problems()
    problems.extend(loaded)
    if document is None and problems:
        raise ConfigError(problems.items)
    top = Section(document, "", problems, file=str(path), line=1)

    state = Path(top.text("state", DEFAULT_STATE, what="a file path"))
    smtp_section = top.section("smtp")
    oauth = _OAuthPlace(state=state, config_file=str(path), smtp_user=_smtp_shares(smtp_section))
    accounts = _accounts(top, oauth)
    smtp = _smtp(smtp_section, accounts, oauth)
    account, reply_from, pause, probe_wait = _gateway(top.section("gateway"), smtp)
    watched = {folder for imap in accounts for folder in imap.folders}
    delivery = _delivery(top.section("delivery"), watched)
    limits = _limits(top.section("limits"))
    sms = _sms(top.section("sms"), account.max_length)
    log_level = top.text("log_level", "INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    log_format = top.text("log_format", _defaults(Config)["log_format"], choices=LOG_FORMATS)
    metrics = _metrics(top.section("metrics"))
    health = _health(top.section("health"))
    alerts = _alerts(top.section("alerts"))
    watchdog = _watchdog(top.section("watchdog"))
    context = GuardContext(
        reply_from=reply_from,
        own_domain=delivery.message_id_domain,
        own_from=smtp.from_addr if smtp else "",
        gateway_domain=account.domain if account else gateway.DEFAULT_DOMAIN,
    )
    ruleset = compile_ruleset(top, context)
    ruleset = ruleset.with_tests(load_rule_tests(top, ruleset.names, ruleset.timezone))
    top.finish()
    if problems:
        raise ConfigError(problems.items)
    return Config(
        source=Path(path),
        accounts=accounts,
        smtp=smtp,
        gateway=account,
        delivery=delivery,
        limits=limits,
        sms=sms,
        ruleset=ruleset,
        state=state,
        reply_from=reply_from,
        pause=pause,
        probe_wait=probe_wait,
        log_level=log_level,
        log_format=log_format,
        metrics=metrics,
        health=health,
        alerts=alerts,
        watchdog=watchdog,
        warnings=tuple(_exposed_secrets(problems.inline_secrets)),
    )


def _exposed_secrets(inline: list[Problem]) -> list[str]:
    """A warning per config file that holds a secret and that group or others can read."""
    by_file: dict[str, list[Problem]] = {}
    for found in inline:
        by_file.setdefault(found.file, []).append(found)
    warnings = []
    for file, found in by_file.items():
        try:
            mode = os.stat(file).st_mode & 0o777
        except OSError:
            continue
        if not mode & 0o044:
            continue
        who = {0o040: "its group", 0o004: "every user"}.get(mode & 0o044, "its group and others")
        names = ", ".join(sorted({f.message for f in found}))
        first = min(f.line for f in found)
        warnings.append(
            f"{file}:{first}: {names} {'is' if len(found) == 1 else 'are'} written in this "
            f"file, which {who} can read (mode {mode:04o}): run  chmod 600 {shlex.quote(file)}  "
            "(or move the secret to a *_file setting, e.g. a systemd credential: see README)"
        )
    return warnings


def _security(section: Section, host: str | None) -> str:
    security = section.text("security", "tls", choices=SECURITY)
    if security == "plain" and host and not is_loopback(host):
        section.error(
            "security",
            f"{section.name('security')}: plain (unencrypted) is only allowed to a loopback host, "
            f"not {host!r}; use tls or starttls",
        )
    return security


ACCOUNT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")


def _accounts(top: Section, oauth: _OAuthPlace) -> tuple[ImapConfig, ...]:
    """``imap:`` (one account, named ``default``) or ``accounts:`` (several, each named)."""
    if not top.has("accounts"):
        return (_imap(top.section("imap"), "default", oauth, first=True),)
    if top.has("imap"):
        top.error("imap", "use imap: for one account or accounts: for several, not both")
    accounts: list[ImapConfig] = []
    first_line: dict[str, int] = {}
    for section in top.sections("accounts", what="accounts (each item starting '- name:')"):
        name = section.text("name", what="an account name", check=_check_account_name) or ""
        if name in first_line:
            section.error(
                "name",
                f"{section.name('name')}: account name {name!r} is used twice, at line "
                f"{first_line[name]} and line {section.line('name')}",
            )
        first_line.setdefault(name, section.line("name"))
        accounts.append(_imap(section, name, oauth, first=not accounts))
    if not accounts:
        top.error("accounts", "accounts must list at least one account")
        accounts.append(_imap(top.section("imap"), "default", oauth, first=True))
    return tuple(accounts)


def _check_account_name(value: str) -> str | None:
    if not ACCOUNT_NAME.fullmatch(value):
        return "must be a short name of lower-case letters, digits, - and _ (like work)"
    return None


def _imap(s: Section, name: str, oauth: _OAuthPlace, *, first: bool) -> ImapConfig:
    host = s.text("host", what="a host name")
    security = _security(s, host)
    d = _defaults(ImapConfig)
    folders = s.str_list("folders", list(d["folders"]), what="folder names")
    if not folders:
        s.error("folders", "imap.folders must name at least one folder")
    username = s.text("username") or ""
    auth = s.text("auth", "password", choices=AUTH_METHODS)
    oauth2 = None
    if auth == "oauth2":
        for key in ("password", "password_file"):
            if s.has(key):
                s.error(key, f"{s.name(key)} is not used with {s.name('auth')}: oauth2")
                s.raw(key)
        # The token set is the account's: "default" for imap:, its name under accounts:.
        sends = oauth.shares_with(username, first=first)
        oauth2 = _oauth2(s, oauth, account=name, username=username, imap=True, smtp=sends)
        password = Secret("")
    else:
        if s.has("oauth2"):
            s.error("oauth2", f"{s.name('oauth2')} is only used with {s.name('auth')}: oauth2")
            s.raw("oauth2")
        password = s.secret("password", required=True) or Secret("")
    config = ImapConfig(
        host=host or "",
        port=s.integer("port", IMAP_PORTS[security], minimum=1, maximum=65535),
        security=security,
        username=username,
        password=password,
        folders=tuple(folders or d["folders"]),
        poll_interval=s.duration("poll_interval", d["poll_interval"], minimum=1),
        idle=s.boolean("idle", d["idle"]),
        idle_renew=s.duration("idle_renew", d["idle_renew"], minimum=10),
        timeout=s.duration("timeout", d["timeout"], minimum=1),
        ca_file=_ca_file(s),
        fetch_bytes=s.size("fetch_bytes", d["fetch_bytes"]),
        keyword=s.text("keyword", None, check=_check_keyword),
        name=name,
        max_connections=s.integer("max_connections", None, minimum=1, maximum=100),
        auth=auth,
        oauth2=oauth2,
    )
    if config.idle_renew >= 29 * 60:
        s.error("idle_renew", "imap.idle_renew must be below 29 minutes (RFC 2177 §3)")
    s.finish()
    return config


def _check_keyword(value: str) -> str | None:
    if value.startswith("\\") or not value or any(c in value for c in ' (){%*"\\]'):
        return "must be an IMAP keyword like $Forwarded (no spaces, no system flags like \\Seen)"
    return None


def _ca_file(s: Section) -> str | None:
    ca_file = s.text("ca_file", None, what="a file path")
    if ca_file and not Path(ca_file).is_file():
        s.error("ca_file", f"{s.name('ca_file')}: {ca_file} does not exist")
    return ca_file


def _smtp(s: Section, accounts: tuple[ImapConfig, ...], oauth: _OAuthPlace) -> SmtpConfig:
    host = s.text("host", what="a host name")
    security = _security(s, host)
    username = s.text("username", None)
    auth = s.text("auth", "password", choices=AUTH_METHODS)
    oauth2 = None
    password = None
    if auth == "oauth2":
        for key in ("password", "password_file"):
            if s.has(key):
                s.error(key, f"smtp.{key} is not used with smtp.auth: oauth2")
                s.raw(key)
        if s.has("oauth2"):
            if any(a.name == profiles.SMTP_ACCOUNT for a in accounts):
                s.error(
                    "oauth2",
                    f"smtp.oauth2 keeps its tokens as account {profiles.SMTP_ACCOUNT!r}: "
                    "rename the IMAP account of that name",
                )
            oauth2 = _oauth2(
                s,
                oauth,
                account=profiles.SMTP_ACCOUNT,
                username=username or "",
                imap=False,
                smtp=True,
            )
            if username is None:
                s.error(None, "smtp.username is required with smtp.auth: oauth2 (the login)")
        else:
            # Share an account's sign-in: the one with smtp.username as its username (or,
            # without smtp.username, the first account); its scopes then include sending.
            shared = next(
                (a for i, a in enumerate(accounts) if oauth.shares_with(a.username, first=i == 0)),
                None,
            )
            only = accounts[0] if len(accounts) == 1 else None
            if shared is None and only is not None and only.auth == "oauth2":
                s.error(
                    "username",
                    f"smtp.username ({username}) must be imap.username ({only.username}) to "
                    "use imap's OAuth2 sign-in; leave it out, or give smtp.oauth2 its own",
                )
            elif shared is None or shared.auth != "oauth2":
                whose = (
                    "imap.auth: oauth2"
                    if only is not None
                    else "an account with auth: oauth2 and smtp.username as its username"
                )
                s.error(
                    "auth", f"smtp.auth: oauth2 needs smtp.oauth2, or {whose} to share its sign-in"
                )
            else:
                oauth2 = shared.oauth2  # one sign-in for both: the scopes include sending
                username = shared.username
    else:
        if s.has("oauth2"):
            s.error("oauth2", "smtp.oauth2 is only used with smtp.auth: oauth2")
            s.raw("oauth2")
        password = s.secret("password", required=username is not None)
        if password is not None and username is None:
            s.error("password", "smtp.password is set but smtp.username is not")
    d = _defaults(SmtpConfig)
    from_addr = s.text("from", what="an e-mail address") or ""
    if from_addr and not _BARE_ADDRESS.match(from_addr):
        # It is the From: header and the SMTP envelope sender, and the own-mail guard compares
        # it with the From of incoming mail: a display name, a list or a line break breaks them.
        s.error(
            "from",
            f"smtp.from must be an e-mail address alone, like me@example.com, not {from_addr!r}",
        )
    config = SmtpConfig(
        host=host or "",
        port=s.integer("port", SMTP_PORTS[security], minimum=1, maximum=65535),
        security=security,
        username=username,
        password=password,
        from_addr=from_addr,
        timeout=s.duration("timeout", d["timeout"], minimum=1),
        ca_file=_ca_file(s),
        allow_plaintext_secrets=s.boolean("allow_plaintext_secrets", d["allow_plaintext_secrets"]),
        auth=auth,
        oauth2=oauth2,
    )
    s.finish()
    return config


@dataclass
class _OAuthPlace:
    """What the oauth2 sections need from the rest of the file."""

    state: Path
    config_file: str
    #: With smtp.auth: oauth2 and no smtp.oauth2: smtp.username ("" if not given); else None.
    smtp_user: str | None = None

    def shares_with(self, username: str, *, first: bool) -> bool:
        """Does SMTP send with this account's sign-in?"""
        if self.smtp_user is None:
            return False
        return self.smtp_user == username if self.smtp_user else first


def _smtp_shares(smtp: Section) -> str | None:
    node = smtp.node
    if node.get("auth") != "oauth2" or "oauth2" in node:
        return None
    user = node.get("username")
    return str(user) if isinstance(user, str) else ""


def _check_url(value: str) -> str | None:
    """https, or http to a loopback host only (a local test server, a local proxy)."""
    parts = urllib.parse.urlsplit(value)
    if parts.scheme == "https" and parts.hostname:
        return None
    if parts.scheme == "http" and parts.hostname and is_loopback(parts.hostname):
        return None
    return f"{value!r} must be an https:// URL (plain http only to a loopback host)"


def _oauth2(
    parent: Section, place: _OAuthPlace, *, account: str, username: str, imap: bool, smtp: bool
) -> OAuth2Settings | None:
    """``<imap|smtp>.oauth2``: a provider profile, or a token_command."""
    if not parent.has("oauth2"):
        parent.error(
            "auth",
            f"{parent.name('auth')}: oauth2 needs an {parent.name('oauth2')}: "
            "section (provider: microsoft, google or custom)",
        )
        parent.raw("oauth2")
        return None
    s = parent.section("oauth2")
    where = s.path
    token_file = profiles.token_file(place.state, account)
    base = {
        "account": account,
        "username": username,
        "token_file": token_file,
        "config_file": place.config_file,
        "timeout": s.duration("timeout", 30, minimum=1),
    }
    mechanism = s.text("mechanism", "xoauth2", choices=profiles.MECHANISMS)
    if not imap and mechanism != "xoauth2":
        s.error("mechanism", f"{where}.mechanism: SMTP uses xoauth2 only")
    command = _token_command(s)
    if s.has("token_command"):
        for key in (
            "provider",
            "client_id",
            "client_secret",
            "client_secret_file",
            "tenant",
            "scopes",
            "token_url",
            "device_authorization_url",
            "authorization_url",
            "flow",
            "redirect_port",
        ):
            if s.has(key):
                s.error(key, f"{where}.{key} is not used with {where}.token_command")
                s.raw(key)
        s.finish()
        if command is None:
            return None
        return OAuth2Settings(**base, mechanism=mechanism, token_command=command)
    provider = s.text("provider", what="microsoft, google or custom", choices=profiles.PROVIDERS)
    client_id = s.text("client_id", what="the client (application) id of your app registration")
    client_secret = s.secret(
        "client_secret", required=provider == "google", what="the client secret"
    )
    urls: dict[str, str | None] = {
        "token_url": None,
        "device_authorization_url": None,
        "authorization_url": None,
    }
    tenant = None
    if provider == "microsoft":
        tenant = s.text(
            "tenant", profiles.microsoft_tenant(username), what="a tenant", check=_check_tenant
        )
        urls.update(profiles.microsoft_urls(tenant or "common"))
    else:
        if s.has("tenant"):
            s.error("tenant", f"{where}.tenant is only used with provider: microsoft")
            s.raw("tenant")
        if provider == "google":
            urls.update(
                token_url=profiles.GOOGLE_TOKEN_URL,
                authorization_url=profiles.GOOGLE_AUTHORIZATION_URL,
            )
    for key in urls:  # every endpoint can be pointed elsewhere (a test server, a proxy)
        given = s.text(key, None, what="a URL", check=_check_url)
        if given is not None:
            urls[key] = given
    if provider == "custom" and not s.has("token_url"):
        s.error(None, f"{where}.token_url is required with provider: custom")
    no_flow_url = not (urls["device_authorization_url"] or urls["authorization_url"])
    if provider == "custom" and no_flow_url:
        s.error(
            None,
            f"{where}: provider custom needs device_authorization_url (device flow) "
            "or authorization_url (loopback flow)",
        )
    scopes = s.str_list("scopes", None, what="scopes")
    if scopes is None:
        scopes = list(profiles.default_scopes(provider or "custom", imap=imap, smtp=smtp))
        if provider == "custom":
            s.error(None, f"{where}.scopes is required with provider: custom")
    elif not scopes:
        s.error("scopes", f"{where}.scopes must name at least one scope")
    flow = s.text(
        "flow",
        profiles.default_flow(provider or "custom", device_url=urls["device_authorization_url"]),
        choices=profiles.FLOWS,
    )
    if (
        provider
        and not no_flow_url
        and (
            problem := profiles.flow_problem(
                provider,
                flow,
                device_url=urls["device_authorization_url"],
                authorization_url=urls["authorization_url"],
            )
        )
    ):
        s.error("flow" if s.has("flow") else None, f"{where}: {problem}")
    if provider and imap and (problem := profiles.mechanism_problem(provider, mechanism)):
        s.error("mechanism", f"{where}: {problem}")
    redirect_port = s.integer("redirect_port", 0, minimum=0, maximum=65535)
    s.finish()
    if provider is None or client_id is None:
        return None
    return OAuth2Settings(
        **base,
        provider=provider,
        client_id=client_id,
        client_secret=client_secret,
        scopes=tuple(scopes),
        token_url=urls["token_url"] or "",
        device_authorization_url=urls["device_authorization_url"],
        authorization_url=urls["authorization_url"],
        flow=flow,
        redirect_host=profiles.redirect_host(provider),
        redirect_port=redirect_port,
        authorize_params=profiles.authorize_params(provider),
        refresh_with_scope=provider != "google",
        mechanism=mechanism,
    )


def _check_tenant(value: str) -> str | None:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.-]*", value):
        return "must be common, consumers, organizations, a tenant id or a domain"
    return None


def _token_command(s: Section) -> tuple[str, ...] | None:
    """A shell command line (run with /bin/sh -c), or a list: the program and its arguments."""
    if not s.has("token_command"):
        return None
    value = s.raw("token_command")
    if isinstance(value, str):
        if not value.strip():
            s.error("token_command", f"{s.name('token_command')} is empty")
            return None
        return ("/bin/sh", "-c", value)
    items = s.str_list("token_command", what="the program and its arguments")
    if not items:
        s.error("token_command", f"{s.name('token_command')} is empty")
        return None
    return tuple(items)


def _gateway(s: Section, smtp: SmtpConfig) -> tuple[Account, tuple[str, ...], float, float]:
    def phone(value: str) -> str | None:
        try:
            gateway.normalize_phone(value)
        except ValueError as exc:
            return str(exc)
        return None

    login = s.text("login", what="the account's phone number", check=phone)
    sender = s.text("sender", what="the alpha-name", check=gateway.check_alpha_name)
    domain = s.text("domain", gateway.DEFAULT_DOMAIN, what="a domain", check=check_domain)
    mode = Mode(s.text("mode", "own_number", choices=[m.value for m in Mode]))
    auth = Auth(s.text("auth", "none", choices=[a.value for a in Auth]))
    recipients: list[str] = []
    bad_recipients = False
    for number in s.str_list("recipients", [], what="phone numbers"):
        try:
            normalized = gateway.normalize_phone(number)
        except ValueError as exc:
            s.error("recipients", f"gateway.recipients: {exc}")
            bad_recipients = True
            continue
        if normalized in recipients:
            # Two requests for one number: every SMS would be sent (and billed) twice.
            s.error("recipients", f"gateway.recipients names {normalized} twice")
            bad_recipients = True
            continue
        recipients.append(normalized)
    list_id = s.text("list_id", None, check=gateway.check_token)
    password = s.secret("password", required=auth is Auth.PASSWORD)
    api_key = s.secret("api_key", required=auth is Auth.API_KEY, what="an API key")
    if api_key is not None and gateway.check_token(api_key.reveal()):
        s.error("api_key", "gateway.api_key must be one token: no ';', spaces or line breaks")
    if password is not None and any(c in password.reveal() for c in ";\r\n"):
        s.error("password", "gateway.password cannot contain ';' or line breaks (Subject syntax)")
    max_length = s.integer("max_length", SMS_MAX_CHARS, minimum=1, maximum=SMS_MAX_CHARS)
    reply_from = tuple(s.str_list("reply_from", list(DEFAULT_REPLY_FROM), what="address patterns"))
    d = _defaults(Config)
    pause = s.duration("pause", d["pause"], minimum=1)
    probe_wait = s.duration("probe_wait", d["probe_wait"], minimum=1)

    # Which of the seed document's modes a–e the combination names; anything else is impossible.
    if mode is Mode.OWN_NUMBER and auth is not Auth.NONE:
        s.error("auth", "gateway.mode own_number (mode b) sends no secret: use auth: none")
    if mode is not Mode.OWN_NUMBER and auth is Auth.NONE:
        s.error(
            "auth",
            f"gateway.mode {mode.value} needs a secret (modes a, c, d, e): "
            "set auth: password or auth: api_key",
        )
    if mode is Mode.PHONE and not recipients and not bad_recipients:
        s.error(
            "recipients" if s.has("recipients") else "mode",
            "gateway.mode phone needs gateway.recipients: [numbers]",
        )
    if mode is not Mode.PHONE and recipients:
        s.error("recipients", "gateway.recipients is only used with mode: phone")
    if mode is Mode.LIST and list_id is None and not s.has("list_id"):
        s.error("mode", "gateway.mode list needs gateway.list_id")
    if mode is not Mode.LIST and list_id is not None:
        s.error("list_id", "gateway.list_id is only used with mode: list")
    for key, value, wanted in (
        ("password", password, Auth.PASSWORD),
        ("api_key", api_key, Auth.API_KEY),
    ):
        if value is not None and auth is not wanted:
            s.error(
                key if s.has(key) else f"{key}_file",
                f"gateway.{key} is only used with auth: {wanted.value} (auth is {auth.value})",
            )
    if auth is not Auth.NONE and smtp.security == "plain" and not smtp.allow_plaintext_secrets:
        s.error(
            "auth",
            "this mode puts a password or API key in the Subject, which must not travel "
            "unencrypted: use smtp.security tls or starttls (or, to a loopback relay only, "
            "smtp.allow_plaintext_secrets: true)",
        )
    s.finish()
    account = Account(
        login=gateway.normalize_phone(login) if login else "",
        sender=sender or "",
        domain=domain,
        mode=mode,
        auth=auth,
        recipients=tuple(recipients),
        list_id=list_id,
        password=password,
        api_key=api_key,
        max_length=max_length,
    )
    return account, reply_from, pause, probe_wait


def _check_address(value: str) -> str | None:
    if not _BARE_ADDRESS.match(value):
        return f"must be an e-mail address alone, like me@example.com, not {value!r}"
    return None


def _delivery(s: Section, watched: set[str]) -> DeliveryConfig:
    d = _defaults(DeliveryConfig)
    config = DeliveryConfig(
        on_doubt=s.text("on_doubt", d["on_doubt"], choices=("resend", "alert")),
        # YAML 1.1 reads a bare `off` as false: take it as the word it was meant to be.
        receipts=Receipts.OFF.value
        if s.raw("receipts") is False
        else s.text("receipts", d["receipts"], choices=[r.value for r in Receipts]),
        receipt_wait=s.duration("receipt_wait", d["receipt_wait"], minimum=1),
        sent_folder=s.text("sent_folder", None, what="a folder name", check=_check_folder),
        receipt_to=s.text("receipt_to", None, what="an e-mail address", check=_check_address),
        receipt_folder=s.text("receipt_folder", None, what="a folder name", check=_check_folder),
        max_age=s.duration("max_age", d["max_age"], minimum=60),
        retry_attempts=s.integer("retry_attempts", d["retry_attempts"], minimum=1, maximum=20),
        retry_backoff=s.duration("retry_backoff", d["retry_backoff"], minimum=1),
        retry_backoff_max=s.duration("retry_backoff_max", d["retry_backoff_max"], minimum=1),
        unless_read_wait=s.duration("unless_read_wait", d["unless_read_wait"]),
        message_id_domain=s.text(
            "message_id_domain", d["message_id_domain"], what="a domain", check=check_domain
        ),
    )
    if config.receipt_folder is not None and config.receipt_folder in watched:
        # A copy moved into a watched folder would come back as new mail, again and again.
        s.error(
            "receipt_folder",
            f"delivery.receipt_folder {config.receipt_folder!r} is a watched folder "
            "(imap.folders); "
            "name a folder forwarder does not watch",
        )
    explicit = config.receipts
    for key, wanted in (
        ("sent_folder", Receipts.SENT_FOLDER),
        ("receipt_to", Receipts.COPY),
        ("receipt_folder", Receipts.COPY),
    ):
        if s.has(key) and explicit in (Receipts.OFF.value, _other(wanted)):
            s.error(key, f"delivery.{key} is only used with receipts: {wanted.value} (or auto)")
    if config.retry_backoff_max < config.retry_backoff:
        s.error(
            "retry_backoff_max",
            f"delivery.retry_backoff_max ({config.retry_backoff_max:g}s) is shorter than "
            f"delivery.retry_backoff ({config.retry_backoff:g}s)",
        )
    s.finish()
    return config


def _other(kind: Receipts) -> str:
    return (Receipts.COPY if kind is Receipts.SENT_FOLDER else Receipts.SENT_FOLDER).value


def _check_folder(value: str) -> str | None:
    if not value.strip() or any(c in value for c in "\r\n"):
        return "must be a folder name (not empty, no line breaks)"
    return None


def _limits(s: Section) -> LimitsConfig:
    d = _defaults(LimitsConfig)
    config = LimitsConfig(
        per_minute=s.integer("per_minute", d["per_minute"], minimum=1),
        per_hour=s.integer("per_hour", d["per_hour"], minimum=1),
        per_day=s.integer("per_day", d["per_day"], minimum=1),
        dedup_window=s.duration("dedup_window", d["dedup_window"]),
    )
    s.finish()
    return config


def _sms(s: Section, max_length: int) -> SmsOptions:
    def template(value: str) -> str | None:
        return validate_template(value)

    defaults = SmsOptions()
    options = SmsOptions(
        template=s.text("template", defaults.template, check=template),
        max_length=max_length,
        encoding=s.text("encoding", defaults.encoding, choices=ENCODINGS),
        transliterate=s.text("transliterate", defaults.transliterate, choices=("off", "uk", "ru")),
        max_segments=s.integer("max_segments", None, minimum=1, maximum=10),
    )
    s.finish()
    return options


def _metrics(s: Section) -> MetricsConfig:
    allow_remote = s.boolean("allow_remote", _defaults(MetricsConfig)["allow_remote"])
    raw = s.text("listen", None, what='an address like "127.0.0.1:9187"')
    listen = None
    if raw is not None:
        listen = _listen_address(raw)
        if listen is None:
            s.error(
                "listen",
                f"metrics.listen must be HOST:PORT with an IP address or localhost, like "
                f'"127.0.0.1:{METRICS_PORT}" or "[::1]:{METRICS_PORT}", not {raw!r}',
            )
        elif not allow_remote and not is_loopback(listen[0]):
            s.error(
                "listen",
                f"metrics.listen: {listen[0]} is not a loopback address, and /metrics has no "
                "password: set metrics.allow_remote: true to serve it to the network",
            )
            listen = None
    s.finish()
    return MetricsConfig(listen=listen, allow_remote=allow_remote)


def _listen_address(value: str) -> tuple[str, int] | None:
    """("127.0.0.1", 9187) from "127.0.0.1:9187", "[::1]:9187", "localhost:9187" or "9187"."""
    value = value.strip()
    if value.isdigit():
        host, port_text = "127.0.0.1", value
    else:
        host, sep, port_text = value.rpartition(":")
        if not sep or not port_text.isdigit():
            return None
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        elif ":" in host:
            return None  # an IPv6 address needs brackets: [::1]:9187
    port = int(port_text)
    if not 1 <= port <= 65535:
        return None
    if host.lower() != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return None
    return host, port


def _health(s: Section) -> HealthConfig:
    def url(value: str) -> str | None:
        parts = urllib.parse.urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            # The URL itself is not repeated: it works as a password for the check.
            return "must be an http:// or https:// URL, like https://hc-ping.com/<uuid>"
        return None

    ping_url = s.text("ping_url", None, what="a URL", check=url)
    s.finish()
    return HealthConfig(ping_url=Secret(ping_url) if ping_url else None)


def _alerts(s: Section) -> AlertsConfig:
    d = _defaults(AlertsConfig)
    config = AlertsConfig(
        enabled=s.boolean("enabled", d["enabled"]),
        # A few seconds is allowed (tests use it); under a few minutes, every network blip
        # becomes two SMS.
        imap_down_after=s.duration("imap_down_after", d["imap_down_after"], minimum=1),
    )
    s.finish()
    return config


def _watchdog(s: Section) -> WatchdogConfig:
    config = WatchdogConfig(round_timeout=s.duration("round_timeout", None, minimum=1))
    s.finish()
    return config
