"""An OAuth2 identity provider on 127.0.0.1, for tests: the part of Microsoft or Google that
forwarder talks to, and the token introspection that Dovecot's ``oauth2`` passdb asks.

It serves, over plain HTTP on a free loopback port:

- ``POST /devicecode``: the device authorization endpoint (RFC 8628 §3.1-3.2);
- ``GET|POST /device``: the page a person opens to type the user code (``user_code``, ``user``
  and optionally ``deny=1`` as query or form fields), in place of the person's browser;
- ``GET /authorize``: the authorization endpoint (RFC 6749 §4.1, PKCE RFC 7636 required):
  the "person" consents at once and is redirected to the loopback ``redirect_uri``;
- ``POST /token``: device_code, authorization_code and refresh_token grants, with
  ``authorization_pending``/``slow_down``/``expired_token``/``access_denied`` (RFC 8628 §3.5)
  and ``invalid_grant``/``invalid_client`` (RFC 6749 §5.2);
- ``POST /introspect``: RFC 7662 for Dovecot (``introspection_mode = post``).

Tokens can be expired and revoked at will, refresh tokens rotate on every use (the old one is
then refused, as with reuse detection), and every grant and introspection is recorded, so a test
asserts on what the client really did. No pytest here.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.servers import LOOPBACK

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
PUBLIC_CLIENT = "forwarder-test-public"
CONFIDENTIAL_CLIENT = "forwarder-test-confidential"
CONFIDENTIAL_SECRET = "client-SECRET-value"
DEFAULT_SCOPE = "mail offline_access"
WAIT_TIMEOUT = 10.0


@dataclass
class _Access:
    user: str
    client_id: str
    scope: str
    expires_at: float
    revoked: bool = False


@dataclass
class _Refresh:
    user: str
    client_id: str
    scope: str
    revoked: bool = False


@dataclass
class _Device:
    user_code: str
    client_id: str
    scope: str
    expires_at: float
    interval: float
    user: str | None = None
    denied: bool = False
    last_poll: float = 0.0
    done: bool = False


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    challenge: str
    user: str
    scope: str
    expires_at: float
    used: bool = False


@dataclass(frozen=True)
class Grant:
    """One request to the token endpoint, as the provider saw it."""

    grant_type: str
    client_id: str | None
    error: str | None  # None: tokens were issued
    params: dict[str, str] = field(repr=False)
    at: float = 0.0
    user: str | None = None  # whose tokens were asked for, when the provider could tell


@dataclass(frozen=True)
class Introspection:
    user: str | None
    active: bool
    at: float = 0.0


class IdentityProvider:
    """The simulator; a context manager. ``url(path)`` is where each endpoint lives."""

    host = LOOPBACK

    def __init__(
        self,
        *,
        access_ttl: float = 3600.0,
        rotate: bool = True,
        device_interval: float = 1.0,
        device_ttl: float = 600.0,
        clients: dict[str, str | None] | None = None,
        consent_user: str | None = None,
    ) -> None:
        self.access_ttl = access_ttl
        self.rotate = rotate
        self.device_interval = device_interval
        self.device_ttl = device_ttl
        self.clients = (
            dict(clients)
            if clients is not None
            else {PUBLIC_CLIENT: None, CONFIDENTIAL_CLIENT: CONFIDENTIAL_SECRET}
        )
        self.consent_user = consent_user  # who "signs in" at /authorize without login_hint
        self.deny_authorization = False
        self.grants: list[Grant] = []
        self.introspections: list[Introspection] = []
        self.authorize_requests: list[dict[str, str]] = []
        self.device_requests: list[dict[str, str]] = []
        self._access: dict[str, _Access] = {}
        self._refresh: dict[str, _Refresh] = {}
        self._devices: dict[str, _Device] = {}
        self._codes: dict[str, _Code] = {}
        self._fail_token: list[int] = []  # HTTP statuses for the next token requests
        self._cond = threading.Condition()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> IdentityProvider:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        provider = self

        class Handler(_Handler):
            idp = provider

        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="idp", kwargs={"poll_interval": 0.05}
        )
        self._thread.daemon = True
        self._thread.start()

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}/{path.lstrip('/')}"

    @property
    def token_url(self) -> str:
        return self.url("token")

    @property
    def device_url(self) -> str:
        return self.url("devicecode")

    @property
    def authorize_url(self) -> str:
        return self.url("authorize")

    @property
    def introspection_url(self) -> str:
        return self.url("introspect")

    # -- what tests arrange ------------------------------------------------------------------
    def issue(
        self,
        user: str,
        client_id: str = PUBLIC_CLIENT,
        scope: str = DEFAULT_SCOPE,
        *,
        access_ttl: float | None = None,
    ) -> dict[str, Any]:
        """Tokens for ``user`` as if they had signed in: the token endpoint's JSON answer."""
        with self._cond:
            return self._issue(user, client_id, scope, access_ttl=access_ttl)

    def expire_access_tokens(self, user: str | None = None) -> int:
        """Every access token (of ``user``) is refused from now on; refresh tokens still work."""
        with self._cond:
            hit = [a for a in self._access.values() if user is None or a.user == user]
            for access in hit:
                access.expires_at = min(access.expires_at, time.time() - 1)
            return len(hit)

    def revoke(self, user: str) -> None:
        """The person revoked consent (or changed the password): every token of ``user`` dies."""
        with self._cond:
            for token in (*self._access.values(), *self._refresh.values()):
                if token.user == user:
                    token.revoked = True

    def fail_next_token_requests(self, count: int = 1, status: int = 503) -> None:
        """The token endpoint answers ``status`` (no JSON) to the next ``count`` requests."""
        with self._cond:
            self._fail_token.extend([status] * count)

    def approve(self, user_code: str, user: str) -> None:
        """The person typed ``user_code`` at the verification page and signed in as ``user``."""
        with self._cond:
            device = self._device_by_code(user_code)
            if device is None:
                raise KeyError(f"no pending device authorization with user code {user_code!r}")
            device.user = user
            self._cond.notify_all()

    # -- what tests look at ------------------------------------------------------------------
    def valid_access_tokens(self, user: str | None = None) -> list[str]:
        now = time.time()
        with self._cond:
            return [
                token
                for token, a in self._access.items()
                if (user is None or a.user == user) and not a.revoked and a.expires_at > now
            ]

    def valid_refresh_tokens(self, user: str | None = None) -> list[str]:
        with self._cond:
            return [
                token
                for token, r in self._refresh.items()
                if (user is None or r.user == user) and not r.revoked
            ]

    def grants_of(
        self, grant_type: str, *, ok: bool | None = None, user: str | None = None
    ) -> list[Grant]:
        with self._cond:
            return [
                g
                for g in self.grants
                if g.grant_type == grant_type
                and (ok is None or (g.error is None) == ok)
                and (user is None or g.user == user)
            ]

    def introspections_of(self, user: str, *, active: bool | None = None) -> list[Introspection]:
        with self._cond:
            return [
                i
                for i in self.introspections
                if i.user == user and (active is None or i.active == active)
            ]

    def wait_for(
        self, condition: Callable[[], bool], what: str, timeout: float = WAIT_TIMEOUT
    ) -> None:
        """Until ``condition()`` holds (re-checked whenever the provider handles a request)."""
        with self._cond:
            if not self._cond.wait_for(condition, timeout):
                raise TimeoutError(f"timed out after {timeout:.1f} s waiting for {what}")

    # -- the endpoints (called on the server's threads) --------------------------------------
    def _issue(
        self, user: str, client_id: str, scope: str, *, access_ttl: float | None = None
    ) -> dict[str, Any]:
        ttl = self.access_ttl if access_ttl is None else access_ttl
        access = "at-" + secrets.token_urlsafe(24)
        refresh = "rt-" + secrets.token_urlsafe(24)
        self._access[access] = _Access(user, client_id, scope, time.time() + ttl)
        self._refresh[refresh] = _Refresh(user, client_id, scope)
        return {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": int(ttl),
            "scope": scope,
            "refresh_token": refresh,
        }

    def _device_by_code(self, user_code: str) -> _Device | None:
        wanted = user_code.replace("-", "").upper()
        for device in self._devices.values():
            if device.user_code.replace("-", "") == wanted and not device.done:
                return device
        return None

    def device_authorization(self, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        with self._cond:
            self.device_requests.append(params)
            client_id = params.get("client_id", "")
            if client_id not in self.clients:
                return 400, {"error": "invalid_client", "error_description": "unknown client"}
            device_code = "dc-" + secrets.token_urlsafe(24)
            letters = "BCDFGHJKLMNPQRSTVWXZ"
            raw = "".join(secrets.choice(letters) for _ in range(8))
            user_code = f"{raw[:4]}-{raw[4:]}"
            self._devices[device_code] = _Device(
                user_code=user_code,
                client_id=client_id,
                scope=params.get("scope", DEFAULT_SCOPE),
                expires_at=time.time() + self.device_ttl,
                interval=self.device_interval,
            )
            self._cond.notify_all()
            return 200, {
                "device_code": device_code,
                "user_code": user_code,
                "verification_uri": self.url("device"),
                "expires_in": int(self.device_ttl),
                "interval": self.device_interval,
                "message": f"To sign in, open {self.url('device')} and enter {user_code}.",
            }

    def device_page(self, params: dict[str, str]) -> tuple[int, str]:
        with self._cond:
            device = self._device_by_code(params.get("user_code", ""))
            if device is None:
                return 404, "unknown or expired code"
            if params.get("deny"):
                device.denied = True
            else:
                device.user = params.get("user") or self.consent_user or "nobody"
            self._cond.notify_all()
            return 200, "You may close this window."

    def authorize(self, params: dict[str, str]) -> tuple[int, str]:
        """The Location to redirect to (always a redirect, as a real provider does)."""
        with self._cond:
            self.authorize_requests.append(params)
            self._cond.notify_all()
            redirect_uri = params.get("redirect_uri", "")
            parts = urllib.parse.urlsplit(redirect_uri)
            if parts.scheme != "http" or parts.hostname not in ("127.0.0.1", "localhost", "::1"):
                return 400, "redirect_uri must be a loopback http URI"
            if params.get("client_id") not in self.clients:
                return 400, "unknown client"
            reply: dict[str, str] = {"state": params.get("state", "")}
            if self.deny_authorization:
                reply["error"] = "access_denied"
            elif params.get("response_type") != "code":
                reply["error"] = "unsupported_response_type"
            elif not params.get("code_challenge") or params.get("code_challenge_method") != "S256":
                reply["error"] = "invalid_request"
                reply["error_description"] = "PKCE with S256 is required"
            else:
                code = "code-" + secrets.token_urlsafe(16)
                self._codes[code] = _Code(
                    client_id=params["client_id"],
                    redirect_uri=redirect_uri,
                    challenge=params["code_challenge"],
                    user=params.get("login_hint") or self.consent_user or "nobody",
                    scope=params.get("scope", DEFAULT_SCOPE),
                    expires_at=time.time() + 600,
                )
                reply["code"] = code
            separator = "&" if parts.query else "?"
            return 302, redirect_uri + separator + urllib.parse.urlencode(reply)

    def token(self, params: dict[str, str], basic: tuple[str, str] | None) -> tuple[int, Any]:
        with self._cond:
            try:
                if self._fail_token:
                    return self._fail_token.pop(0), None
                status, body = self._token(params, basic)
            finally:
                self._cond.notify_all()
            client_id = basic[0] if basic else params.get("client_id")
            error = body.get("error") if isinstance(body, dict) else None
            user = self._grant_user(params)
            grant = Grant(
                params.get("grant_type", ""), client_id, error, dict(params), time.time(), user
            )
            self.grants.append(grant)
            return status, body

    def _grant_user(self, params: dict[str, str]) -> str | None:
        if (refresh := self._refresh.get(params.get("refresh_token", ""))) is not None:
            return refresh.user
        if (device := self._devices.get(params.get("device_code", ""))) is not None:
            return device.user
        if (code := self._codes.get(params.get("code", ""))) is not None:
            return code.user
        return None

    def _client_error(self, params: dict[str, str], basic: tuple[str, str] | None) -> str | None:
        client_id, secret = (
            basic if basic else (params.get("client_id"), params.get("client_secret"))
        )
        if client_id not in self.clients:
            return "unknown client"
        wanted = self.clients[client_id]
        if wanted is not None and secret != wanted:
            return "client authentication failed"
        return None

    def _token(self, params: dict[str, str], basic: tuple[str, str] | None) -> tuple[int, Any]:
        if problem := self._client_error(params, basic):
            return 401, {"error": "invalid_client", "error_description": problem}
        client_id = basic[0] if basic else params["client_id"]
        grant = params.get("grant_type")
        now = time.time()
        if grant == DEVICE_GRANT:
            device = self._devices.get(params.get("device_code", ""))
            if device is None or device.client_id != client_id or device.done:
                return 400, {"error": "invalid_grant"}
            if now > device.expires_at:
                return 400, {"error": "expired_token"}
            if device.denied:
                device.done = True
                return 400, {"error": "access_denied"}
            too_soon = now - device.last_poll < device.interval * 0.9
            device.last_poll = now
            if too_soon:
                device.interval += 5  # RFC 8628 §3.5: every later poll must wait 5 s more
                return 400, {"error": "slow_down"}
            if device.user is None:
                return 400, {"error": "authorization_pending"}
            device.done = True
            return 200, self._issue(device.user, client_id, device.scope)
        if grant == "authorization_code":
            code = self._codes.get(params.get("code", ""))
            if code is None or code.used or code.client_id != client_id or now > code.expires_at:
                return 400, {"error": "invalid_grant", "error_description": "unknown code"}
            code.used = True
            if params.get("redirect_uri") != code.redirect_uri:
                return 400, {"error": "invalid_grant", "error_description": "redirect_uri"}
            verifier = params.get("code_verifier", "")
            digest = hashlib.sha256(verifier.encode("ascii")).digest()
            if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != code.challenge:
                return 400, {"error": "invalid_grant", "error_description": "PKCE mismatch"}
            return 200, self._issue(code.user, client_id, code.scope)
        if grant == "refresh_token":
            old = self._refresh.get(params.get("refresh_token", ""))
            if old is None or old.revoked or old.client_id != client_id:
                return 400, {
                    "error": "invalid_grant",
                    "error_description": "The refresh token is invalid or was revoked",
                }
            issued = self._issue(old.user, client_id, old.scope)
            if self.rotate:
                old.revoked = True  # reuse of a rotated refresh token is refused
            else:
                del self._refresh[issued.pop("refresh_token")]
            return 200, issued
        return 400, {"error": "unsupported_grant_type"}

    def introspect(self, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        with self._cond:
            access = self._access.get(params.get("token", ""))
            active = access is not None and not access.revoked and access.expires_at > time.time()
            self.introspections.append(
                Introspection(access.user if access else None, active, time.time())
            )
            self._cond.notify_all()
            if not active or access is None:
                # What Dovecot 2.3 turns into "NO [AUTHENTICATIONFAILED]": a 4xx with an error
                # (RFC 7662's bare {"active": false} would be an internal failure to it).
                return 401, {"error": "invalid_token", "active": False}
            return 200, {
                "active": True,
                "email": access.user,
                "username": access.user,
                "scope": access.scope,
                "client_id": access.client_id,
                "exp": int(access.expires_at),
            }


class _Handler(BaseHTTPRequestHandler):
    idp: IdentityProvider
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # the test's output stays clean
        pass

    def _params(self) -> dict[str, str]:
        query = urllib.parse.urlsplit(self.path).query
        params = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            body = self.rfile.read(length).decode("utf-8")
            params.update(urllib.parse.parse_qsl(body, keep_blank_values=True))
        return params

    def _basic(self) -> tuple[str, str] | None:
        header = self.headers.get("Authorization", "")
        if not header.lower().startswith("basic "):
            return None
        decoded = base64.b64decode(header[6:]).decode("utf-8")
        user, _, password = decoded.partition(":")
        return urllib.parse.unquote(user), urllib.parse.unquote(password)

    def _send(
        self,
        status: int,
        body: Any,
        *,
        content_type: str = "application/json",
        location: str | None = None,
    ) -> None:
        if body is None:
            data = b"<html>upstream trouble</html>"
            content_type = "text/html"
        elif isinstance(body, str):
            data = body.encode("utf-8")
            content_type = "text/plain; charset=utf-8"
        else:
            data = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        if location is not None:
            self.send_header("Location", location)
        self.end_headers()
        self.wfile.write(data)

    def _route(self) -> None:
        path = urllib.parse.urlsplit(self.path).path.strip("/")
        params = self._params()
        if path == "devicecode" and self.command == "POST":
            self._send(*self.idp.device_authorization(params))
        elif path == "device":
            self._send(*self.idp.device_page(params))
        elif path == "authorize" and self.command == "GET":
            status, target = self.idp.authorize(params)
            if status == 302:
                self._send(302, "redirecting", location=target)
            else:
                self._send(status, target)
        elif path == "token" and self.command == "POST":
            self._send(*self.idp.token(params, self._basic()))
        elif path == "introspect" and self.command == "POST":
            self._send(*self.idp.introspect(params))
        else:
            self._send(404, {"error": "not_found"})

    do_GET = _route
    do_POST = _route
