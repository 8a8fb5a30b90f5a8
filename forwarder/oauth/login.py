"""``forwarder login``: get an account's first tokens, and save them beside the state file.

Two flows, chosen by the profile (``OAuth2Settings.flow``):

- **device** (RFC 8628; Microsoft): forwarder asks for a user code, prints the address to
  open and the code to type (on any device: the server running forwarder needs no browser),
  then polls the token endpoint every ``interval`` seconds (5 s more after each ``slow_down``)
  until the person has signed in, declined, or the code expired.
- **loopback** (RFC 8252 §7.3 with PKCE, RFC 7636; Google, which refuses the device flow for
  the Gmail scope): forwarder listens on 127.0.0.1, prints the authorization address, and the
  provider sends the browser back to ``http://127.0.0.1:PORT/`` with a one-time code, which
  is exchanged (with the PKCE verifier) for the tokens. A browser on another machine reaches
  that port through ``ssh -L PORT:127.0.0.1:PORT``; the text says so.

``out`` receives every line for the person; nothing printed contains a token.
"""

from __future__ import annotations

import html
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from forwarder.oauth import tokenfile
from forwarder.oauth.profiles import OAuth2Settings
from forwarder.oauth.tokens import describe_http_error, new_session, signed_in

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
DEFAULT_INTERVAL = 5.0  # RFC 8628 §3.2: when the server says nothing
SLOW_DOWN_STEP = 5.0  # RFC 8628 §3.5
LOOPBACK_WAIT = 600.0  # how long the loopback flow waits for the browser


class LoginFailed(Exception):
    """Signing in did not work; the text says why and what to try (never holds a token)."""


@dataclass(frozen=True)
class DeviceCode:
    device_code: str
    user_code: str
    verification_uri: str
    expires_in: float
    interval: float
    verification_uri_complete: str | None = None


def login(
    settings: OAuth2Settings,
    *,
    out: Callable[[str], None] = print,
    sleep: Callable[[float], None] = time.sleep,
    wait: float = LOOPBACK_WAIT,
) -> dict[str, Any]:
    """Sign in with the profile's flow, save the tokens, return what was saved."""
    if settings.token_command:
        raise LoginFailed(
            f"account {settings.account} gets its tokens from oauth2.token_command; "
            "sign in with that tool instead"
        )
    if settings.flow == "device":
        token = device_flow(settings, out=out, sleep=sleep)
    else:
        token = loopback_flow(settings, out=out, wait=wait)
    data = signed_in(settings, token, time.time())
    if not data.get("refresh_token"):
        out(
            "Note: the provider sent no refresh token, so forwarder must be signed in again "
            "when this access token expires (did the scopes include offline_access?)."
        )
    try:
        tokenfile.save(settings.token_file, data)
    except OSError as exc:
        raise LoginFailed(
            f"signed in, but cannot save the tokens to {settings.token_file}: "
            f"{exc.strerror or exc} (run as the user that may write the state directory)"
        ) from None
    out(f"Signed in. The tokens are saved in {settings.token_file} (readable by its owner only).")
    out(
        "If forwarder is already running, it uses them at its next try; to make it try at once:"
        " sudo systemctl reload forwarder"
    )
    return data


# -- device flow (RFC 8628) --------------------------------------------------------------------
def device_flow(
    settings: OAuth2Settings, *, out: Callable[[str], None], sleep: Callable[[float], None]
) -> dict[str, Any]:
    from authlib.common.errors import AuthlibBaseError

    session = new_session(settings)
    try:
        code = request_device_code(session, settings)
        out(f"To let forwarder read the mail of {settings.username}:")
        out(f"  1. open:   {code.verification_uri}")
        out(f"  2. enter:  {code.user_code}")
        out(f"  3. sign in as {settings.username} and allow access.")
        out(f"Waiting for you (the code expires in {_minutes(code.expires_in)})…")
        interval = code.interval
        deadline = time.monotonic() + code.expires_in
        while True:
            sleep(interval)
            try:
                return dict(
                    session.fetch_token(
                        settings.token_url,
                        grant_type=DEVICE_GRANT,
                        device_code=code.device_code,
                        timeout=settings.timeout,
                    )
                )
            except AuthlibBaseError as exc:
                error = exc.error
                if error == "authorization_pending":
                    pass
                elif error == "slow_down":
                    interval += SLOW_DOWN_STEP
                elif error == "expired_token":
                    raise LoginFailed(
                        "the code expired before you signed in; run forwarder login again"
                    ) from None
                elif error == "access_denied":
                    raise LoginFailed("sign-in was declined") from None
                else:
                    raise LoginFailed(f"the token endpoint refused: {_described(exc)}") from None
            except Exception as exc:
                raise LoginFailed(
                    f"cannot reach the token endpoint {settings.token_url}: "
                    f"{describe_http_error(exc)}"
                ) from None
            if time.monotonic() > deadline:
                raise LoginFailed(
                    "the code expired before you signed in; run forwarder login again"
                )
    finally:
        session.close()


def request_device_code(session: Any, settings: OAuth2Settings) -> DeviceCode:
    """RFC 8628 §3.1: POST client_id and scope to the device authorization endpoint."""
    url = settings.device_authorization_url
    assert url
    try:
        response = session.post(
            url,
            data={"scope": " ".join(settings.scopes)},
            auth=session.client_auth(settings.token_endpoint_auth_method),
            withhold_token=True,
            timeout=settings.timeout,
        )
    except Exception as exc:
        raise LoginFailed(f"cannot reach {url}: {describe_http_error(exc)}") from None
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise LoginFailed(f"{url} answered HTTP {response.status_code} without JSON")
    if response.status_code != 200 or "error" in body:
        error = body.get("error", f"HTTP {response.status_code}")
        description = _short(str(body.get("error_description", "")))
        raise LoginFailed(
            f"the provider refused to start the sign-in ({error}"
            f"{': ' + description if description else ''}): check oauth2.client_id (and, for "
            "Microsoft, that the app registration allows public client flows) and scopes"
        )
    try:
        return DeviceCode(
            device_code=str(body["device_code"]),
            user_code=str(body["user_code"]),
            # Google (and old drafts) say verification_url.
            verification_uri=str(body.get("verification_uri") or body["verification_url"]),
            expires_in=float(body.get("expires_in", 900)),
            interval=float(body.get("interval", DEFAULT_INTERVAL)),
            verification_uri_complete=body.get("verification_uri_complete"),
        )
    except (KeyError, TypeError, ValueError):
        raise LoginFailed(f"{url} answered without a device code (RFC 8628 §3.2)") from None


# -- loopback redirect flow (RFC 8252, PKCE) ---------------------------------------------------
class _Callback:
    """What the browser brought back to the loopback listener."""

    def __init__(self) -> None:
        self.url: str | None = None
        self.done = threading.Event()
        self.page = "forwarder: waiting…"


def loopback_flow(
    settings: OAuth2Settings, *, out: Callable[[str], None], wait: float
) -> dict[str, Any]:
    from authlib.common.errors import AuthlibBaseError
    from authlib.common.security import generate_token

    callback = _Callback()
    server = _listen(settings, callback)
    port = server.server_address[1]
    redirect_uri = f"http://{settings.redirect_host}:{port}/"
    session = new_session(
        settings,
        scope=" ".join(settings.scopes),
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
    )
    verifier = generate_token(64)  # RFC 7636 §4.1: 43-128 unreserved characters
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.1},
        name="login-callback",
        daemon=True,
    )
    thread.start()
    try:
        assert settings.authorization_url
        url, state = session.create_authorization_url(
            settings.authorization_url,
            code_verifier=verifier,
            login_hint=settings.username,
            **dict(settings.authorize_params),
        )
        out(f"To let forwarder read the mail of {settings.username}:")
        out(f"  1. open:   {url}")
        out(
            f"  2. sign in as {settings.username} and allow access; the browser is then sent "
            f"back to {redirect_uri} and this command finishes."
        )
        out(
            f"  If that browser runs on another computer, first forward the port there: "
            f"ssh -L {port}:127.0.0.1:{port} THIS-HOST"
        )
        out(f"Waiting for you ({_minutes(wait)} at most)…")
        if not callback.done.wait(wait):
            raise LoginFailed(f"no answer reached {redirect_uri} within {_minutes(wait)}")
        assert callback.url is not None
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(callback.url).query))
        if "error" in query:
            callback.page = "forwarder: sign-in was not completed. You may close this tab."
            described = query.get("error_description")
            detail = f": {_short(described)}" if described else ""
            raise LoginFailed(f"the provider did not sign you in: {query['error']}{detail}")
        try:
            token = session.fetch_token(
                settings.token_url,
                authorization_response=callback.url,
                state=state,
                code_verifier=verifier,
                timeout=settings.timeout,
            )
        except AuthlibBaseError as exc:
            callback.page = "forwarder: sign-in failed; see the terminal."
            raise LoginFailed(f"the token endpoint refused the code: {_described(exc)}") from None
        except Exception as exc:
            callback.page = "forwarder: sign-in failed; see the terminal."
            raise LoginFailed(
                f"cannot reach the token endpoint {settings.token_url}: {describe_http_error(exc)}"
            ) from None
        callback.page = "forwarder: signed in. You may close this tab."
        return dict(token)
    finally:
        callback.done.set()
        server.shutdown()
        server.server_close()
        session.close()


def _listen(settings: OAuth2Settings, callback: _Callback) -> HTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass  # the query holds the one-time code: not for the terminal

        def do_GET(self) -> None:
            query = urllib.parse.urlsplit(self.path).query
            fields = dict(urllib.parse.parse_qsl(query))
            if callback.url is None and ("code" in fields or "error" in fields):
                callback.url = f"http://127.0.0.1{self.path}"
                answer = "forwarder: signing in… you may close this tab."
                callback.done.set()
            else:
                answer = callback.page  # a favicon, a reload
            body = f"<!doctype html><title>forwarder</title><p>{html.escape(answer)}</p>"
            data = body.encode("utf-8")
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    try:
        return HTTPServer(("127.0.0.1", settings.redirect_port), Handler)
    except OSError as exc:
        raise LoginFailed(
            f"cannot listen on 127.0.0.1:{settings.redirect_port} for the "
            f"browser's answer: {exc.strerror or exc}"
        ) from None


def _described(exc: Any) -> str:
    description = _short(getattr(exc, "description", "") or "")
    return f"{exc.error}{': ' + description if description else ''}"


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:.0f} s"
