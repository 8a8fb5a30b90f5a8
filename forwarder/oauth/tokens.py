"""A valid access token on demand, for every connection of one account.

One ``TokenSource`` per account and process (``source_for``), shared by the round's IMAP
connection, every IDLE thread and the SMTP sender, so a token is refreshed once, under a lock,
however many connections need it at the same moment.

- A cached access token is handed out while it stays valid for ``REFRESH_MARGIN`` (plus what
  the caller asks for); after that it is refreshed first. A connection the server refused
  ``invalidate()``s its token, and the next ``access_token()`` refreshes at once.
- A refresh answer is written to the token file (atomically) *before* its access token is
  handed out: when the provider rotated the refresh token, the old one may already be dead,
  so the new one must survive a crash that follows. If it cannot be written, it is not used
  (and the next call tries to write it again).
- ``invalid_grant`` means the refresh token is dead for good (revoked, expired, password
  changed): ``LoginRequired``, once, telling the person what to run. The source then stays
  down without asking the provider again, until the token file changes (``forwarder login``
  wrote new tokens); listeners (``on_login_required``) hear of it once per transition.
- ``token_command``: the command's standard output is the access token, run on every
  request (the tool keeps its own cache), with a timeout; its output is never shown.

No secret ever leaves in an exception text or a log line: tokens travel as ``Secret``, error
texts are the provider's error code and (cut short) description.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from forwarder.configfile.schema import Secret
from forwarder.oauth import tokenfile
from forwarder.oauth.profiles import OAuth2Settings

logger = logging.getLogger(__name__)

#: Refresh when less than this is left: covers clock skew and a login that takes a while.
REFRESH_MARGIN = 300.0
#: Errors of the token endpoint that no retry will fix (RFC 6749 §5.2).
_REFUSALS = frozenset(
    {
        "invalid_client",
        "unauthorized_client",
        "invalid_scope",
        "unsupported_grant_type",
        "invalid_request",
    }
)
_DESCRIPTION_MAX = 200


class TokenError(Exception):
    """No access token could be had; safe to show (never holds a token). Temporary unless
    it is a ``TokenRefused``."""

    def __init__(self, message: str, *, account: str) -> None:
        super().__init__(message)
        self.account = account


class TokenUnavailable(TokenError):
    """The provider or the token command failed for now (network, 5xx, timeout): retry."""


class TokenRefused(TokenError):
    """The provider or the setup refuses for good (wrong client id, command cannot run)."""


class LoginRequired(TokenRefused):
    """A person must sign in again: ``command`` says how (``forwarder login …``)."""

    def __init__(self, message: str, *, account: str, command: str) -> None:
        super().__init__(message, account=account)
        self.command = command


@dataclass(frozen=True)
class AccessToken:
    value: Secret
    expires_at: float | None  # epoch seconds; None: unknown (token_command, or not said)
    fresh: bool  # obtained just now: a refusal of it will not be cured by another refresh

    def valid_for(self, now: float) -> float:
        return float("inf") if self.expires_at is None else self.expires_at - now


_listeners: list[Callable[[LoginRequired], None]] = []
_listeners_lock = threading.Lock()


def on_login_required(callback: Callable[[LoginRequired], None]) -> Callable[[], None]:
    """Call ``callback(error)`` whenever an account newly needs ``forwarder login`` (once per
    transition, from whichever thread met it; must be quick). Returns an unsubscribe function.

    The hook for a self-alert ("forwarder cannot read your mail: run forwarder login …").
    """
    with _listeners_lock:
        _listeners.append(callback)

    def unsubscribe() -> None:
        with _listeners_lock, contextlib.suppress(ValueError):
            _listeners.remove(callback)

    return unsubscribe


def _announce(error: LoginRequired) -> None:
    with _listeners_lock:
        listeners = list(_listeners)
    for listener in listeners:
        try:
            listener(error)
        except Exception:
            logger.exception("a login-required listener failed")


class TokenSource:
    """Access tokens for one account, from its token file and its provider."""

    def __init__(
        self,
        settings: OAuth2Settings,
        *,
        clock: Callable[[], float] = time.time,
        session_factory: Callable[..., Any] | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self._session_factory = session_factory
        self._lock = threading.Lock()
        self._data: dict[str, Any] | None = None  # the token file's content as last read
        self._signature: tuple[int, int, int] | None = None
        self._loaded = False
        self._unsaved: dict[str, Any] | None = None  # refreshed, not yet written
        self._refused: set[str] = set()  # access tokens a server refused
        self._dead: LoginRequired | None = None
        self._dead_signature: tuple[int, int, int] | None = None
        self.refreshes = 0  # refresh requests made, for tests

    # -- the interface ------------------------------------------------------------------------
    def access_token(self, *, valid_for: float = 0.0) -> AccessToken:
        """A token valid for at least ``REFRESH_MARGIN + valid_for`` seconds (if it says)."""
        with self._lock:
            if self._unsaved is not None:
                self._save(self._unsaved)
            self._reload()
            if self._dead is not None:
                raise self._dead
            data = self._data
            if data is None:
                raise self._login_required(
                    f"not signed in: there are no tokens in {self.settings.token_file}"
                )
            self._check_client(data)
            value = data.get("access_token")
            expires_at = data.get("expires_at")
            if value and value not in self._refused:
                left = float("inf") if expires_at is None else float(expires_at) - self.clock()
                if left > REFRESH_MARGIN + valid_for:
                    return AccessToken(Secret(value), _float(expires_at), fresh=False)
            return self._refresh(data)

    def invalidate(self, token: AccessToken) -> None:
        """A server refused ``token`` (or ended the session over it): refresh before reuse."""
        with self._lock:
            self._refused.add(token.value.reveal())

    def expires_at(self) -> float | None:
        """When the saved access token expires, for ``status``; None if unknown."""
        with self._lock:
            self._reload()
            return _float(self._data.get("expires_at")) if self._data else None

    # -- internals ----------------------------------------------------------------------------
    def _reload(self) -> None:
        path = self.settings.token_file
        current = tokenfile.signature(path)
        if self._loaded and current == self._signature:
            return
        try:
            self._data = tokenfile.load(path)
        except tokenfile.TokenFileError as exc:
            raise TokenRefused(
                f"{exc}; run {self.settings.login_command}", account=self.settings.account
            ) from None
        self._signature, self._loaded = current, True
        self._refused.clear()
        if self._dead is not None and current != self._dead_signature:
            logger.info(
                "OAuth2 account %s: new tokens in %s; trying them", self.settings.account, path
            )
            self._dead = None

    def _check_client(self, data: dict[str, Any]) -> None:
        """Refresh tokens are bound to the client that got them (RFC 6749 §6)."""
        saved = data.get("client_id")
        if saved and saved != self.settings.client_id:
            raise self._login_required(
                f"the tokens in {self.settings.token_file} were issued to another client id "
                f"than oauth2.client_id"
            )

    def _login_required(self, why: str) -> LoginRequired:
        s = self.settings
        error = LoginRequired(
            f"OAuth2 account {s.account} ({s.username}): {why}; run: {s.login_command}",
            account=s.account,
            command=s.login_command,
        )
        if self._dead is None:
            self._dead, self._dead_signature = error, self._signature
            _announce(error)
        return error

    def _refresh(self, data: dict[str, Any]) -> AccessToken:
        s = self.settings
        refresh_token = data.get("refresh_token")
        if not refresh_token:
            raise self._login_required(
                "the saved access token expired and there is no refresh token"
            )
        session = self._session()
        kwargs: dict[str, Any] = {"timeout": s.timeout}
        if s.refresh_with_scope and s.scopes:
            kwargs["scope"] = " ".join(s.scopes)
        self.refreshes += 1
        try:
            token = session.refresh_token(s.token_url, refresh_token=refresh_token, **kwargs)
        except Exception as exc:
            raise self._refresh_error(exc) from None
        finally:
            session.close()
        fresh = _merge(data, dict(token), self.clock(), s)
        self._save(fresh)
        logger.debug(
            "OAuth2 account %s: access token refreshed (valid %.0f s)%s",
            s.account,
            fresh["expires_at"] - self.clock() if fresh.get("expires_at") else -1,
            "; the refresh token was rotated" if fresh["refresh_token"] != refresh_token else "",
        )
        return AccessToken(
            Secret(fresh["access_token"]), _float(fresh.get("expires_at")), fresh=True
        )

    def _save(self, data: dict[str, Any]) -> None:
        try:
            tokenfile.save(self.settings.token_file, data)
        except OSError as exc:
            self._unsaved = data  # keep the rotated refresh token: the old one may be dead
            raise TokenUnavailable(
                f"OAuth2 account {self.settings.account}: cannot save the new tokens to "
                f"{self.settings.token_file} ({exc.strerror or exc}); they are not used "
                "until they are saved",
                account=self.settings.account,
            ) from None
        self._unsaved = None
        self._data = data
        self._signature = tokenfile.signature(self.settings.token_file)
        self._refused.clear()

    def _session(self) -> Any:
        s = self.settings
        if self._session_factory is not None:
            return self._session_factory(s)
        return new_session(s)

    def _refresh_error(self, exc: Exception) -> TokenError:
        s = self.settings
        where = f"OAuth2 account {s.account}: refreshing the access token at {s.token_url}"
        from authlib.common.errors import AuthlibBaseError

        error = exc.error if isinstance(exc, AuthlibBaseError) else None
        if isinstance(error, str):
            described = f"{error}: {_short(getattr(exc, 'description', '') or '')}".rstrip(": ")
            if error == "invalid_grant":
                return self._login_required(f"the provider refused the refresh token ({described})")
            if error in _REFUSALS:
                return TokenRefused(
                    f"{where} was refused ({described}): check oauth2.client_id"
                    ", client_secret and scopes",
                    account=s.account,
                )
            return TokenUnavailable(f"{where} failed ({described})", account=s.account)
        return TokenUnavailable(f"{where} failed ({describe_http_error(exc)})", account=s.account)


class CommandTokenSource(TokenSource):
    """Access tokens printed by ``oauth2.token_command`` (like mbsync's PassCmd)."""

    def access_token(self, *, valid_for: float = 0.0) -> AccessToken:
        with self._lock:
            return AccessToken(Secret(self._run()), None, fresh=True)

    def invalidate(self, token: AccessToken) -> None:
        pass  # the command runs again for every login anyway

    def expires_at(self) -> float | None:
        return None

    def _run(self) -> str:
        s = self.settings
        assert s.token_command is not None
        name = f"OAuth2 account {s.account}: the token_command"
        try:
            proc = subprocess.Popen(
                list(s.token_command),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,  # its own group: a timeout kills its children too
            )
        except OSError as exc:
            raise TokenRefused(
                f"{name} cannot be run: {exc.strerror or exc}", account=s.account
            ) from None
        try:
            out, err = proc.communicate(timeout=s.timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise TokenUnavailable(
                f"{name} did not finish within {s.timeout:g} s", account=s.account
            ) from None
        printed = out.decode("utf-8", "replace")
        lines = [line.strip() for line in printed.splitlines() if line.strip()]
        if proc.returncode != 0:
            detail = err.decode("utf-8", "replace")
            for line in lines:  # whatever it printed might be a token: never show it
                detail = detail.replace(line, "***")
            last = next((x.strip() for x in reversed(detail.splitlines()) if x.strip()), "")
            said = f": {_short(last)}" if last else ""
            raise TokenUnavailable(
                f"{name} exited with status {proc.returncode}{said}", account=s.account
            )
        if not lines:
            raise TokenRefused(
                f"{name} printed nothing (it must print the access token)", account=s.account
            )
        return lines[0]


def new_session(settings: OAuth2Settings, **kwargs: Any) -> Any:
    """An Authlib requests session for ``settings``' client (imported here: only OAuth2
    setups pay for importing requests)."""
    from authlib.integrations.requests_client import OAuth2Session

    secret = settings.client_secret.reveal() if settings.client_secret else None
    session = OAuth2Session(
        client_id=settings.client_id,
        client_secret=secret,
        token_endpoint_auth_method=settings.token_endpoint_auth_method,
        **kwargs,
    )
    session.headers["User-Agent"] = "forwarder"
    return session


def describe_http_error(exc: BaseException) -> str:
    """A network or HTTP failure of the token endpoint in a few words (no URL parameters)."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if status is not None:
        return f"HTTP {status}"
    name = exc.__class__.__name__
    if "Timeout" in name:
        return "timed out"
    if "Connection" in name:
        return "cannot connect"
    if isinstance(exc, ValueError):
        return "the answer was not a token (not JSON)"
    return name


def _merge(
    old: dict[str, Any], token: dict[str, Any], now: float, settings: OAuth2Settings
) -> dict[str, Any]:
    """The token file's new content after a refresh (or a sign-in, when ``old`` is empty)."""
    if not token.get("access_token"):
        raise TokenUnavailable(
            f"OAuth2 account {settings.account}: the token endpoint "
            "answered without an access token",
            account=settings.account,
        )
    expires_in = token.get("expires_in")
    expires_at = token.get("expires_at")
    if expires_in is not None:
        expires_at = now + float(expires_in)
    return {
        "account": settings.account,
        "username": settings.username,
        "provider": settings.provider,
        "client_id": settings.client_id,
        "token_url": settings.token_url,
        "access_token": token["access_token"],
        "expires_at": float(expires_at) if expires_at is not None else None,
        # RFC 6749 §6: the server may issue a new refresh token; if it does not, keep ours.
        "refresh_token": token.get("refresh_token") or old.get("refresh_token"),
        "scope": token.get("scope") or old.get("scope") or " ".join(settings.scopes),
        "saved_at": now,
        "signed_in_at": old.get("signed_in_at", now),
    }


def signed_in(settings: OAuth2Settings, token: dict[str, Any], now: float) -> dict[str, Any]:
    """The token file's content right after ``forwarder login``."""
    return _merge({}, token, now, settings)


def _float(value: Any) -> float | None:
    return float(value) if value is not None else None


def _short(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= _DESCRIPTION_MAX else text[: _DESCRIPTION_MAX - 1] + "…"


_sources: dict[OAuth2Settings, TokenSource] = {}
_sources_lock = threading.Lock()


def source_for(settings: OAuth2Settings) -> TokenSource:
    """The one source of this process for ``settings`` (equal settings: the same source)."""
    with _sources_lock:
        source = _sources.get(settings)
        if source is None:
            kind = CommandTokenSource if settings.token_command else TokenSource
            source = _sources[settings] = kind(settings)
        return source


def forget_sources() -> None:
    """Drop every cached source (tests; a process that starts afresh)."""
    with _sources_lock:
        _sources.clear()
