"""An AlphaSMS Email2SMS gateway simulator: an SMTP server that checks each request.

Every accepted message is parsed the way the provider's document (shared/seed/, v1.5) describes
and recorded as a ``ReceivedSms`` whose ``problems`` list every way it breaks that document, so a
test asserts ``problems == ()``. Faults (error replies, dropped connections, the gateway being
down) and the gateway's e-mailed error replies can be injected.

The simulator also plays the user's own SMTP server in front of the gateway, the part that
receipts (``forwarder.delivery.receipts``) rely on: envelope recipients outside the gateway's
domain are the owner's own mailbox — a real server delivers them there, never to the gateway
— so they are left out of the request and handed to ``local`` (the owner's copy: "copy"
receipts); with ``sent`` every accepted message is also filed in the sender's Sent folder,
as Gmail and Microsoft 365 do ("sent_folder" receipts). Both happen before the 250 is sent.

The parsing and the reply building are pure functions (``parse_request``, ``build_reply``);
the aiosmtpd handler only routes SMTP events to them. No pytest here: ``make demo`` uses it too.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import codecs
import concurrent.futures
import contextlib
import email
import email.header
import email.policy
import email.utils
import html as html_lib
import json
import re
import shutil
import smtplib
import socket
import ssl
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage, Message
from pathlib import Path
from typing import Any, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.support.servers import LOOPBACK, TlsFiles, free_port

# The document's rules (Email2SMS v1.5, §2).
GATEWAY_DOMAIN = "mail.alphasms.com.ua"
SMS_MAX_CHARS = 500
SUBJECT_SEPARATOR = ";"
ASSUMED_CHARSET = "utf-8"  # "if no charset is given, the system assumes UTF-8"
SECRET_MODES = frozenset("acde")  # modes whose Subject carries a password or an API key

# The reply mail (its layout is not documented; see the seed summary, "Error replies").
REPLY_FROM = "AlphaSMS Email2SMS <noreply@alphasms.com.ua>"
REPLY_MESSAGE_ID_DOMAIN = "alphasms.com.ua"
SECRET_MASK = "***"
OK_CODE = "OK"
# §4 of the document: code -> (Russian as in the document, English summary).
ERROR_TEXTS = {
    "BANNED": ("номер заблокирован", "the number is blocked"),
    "FORBIDDEN": ("не активирован сервис email2sms", "Email2SMS is not activated"),
    "NO LIST": ("список не найден", "the recipient list was not found"),
    "MSG": ("код ошибки отправки sms", "SMS sending error code"),
    "AUTH": ("ошибка авторизации", "authorisation failed"),
    OK_CODE: ("сообщение принято", "the message was accepted"),
}
UNKNOWN_TEXTS = ("неизвестная ошибка", "unknown error")

# SMTP replies the simulator gives (named, as aiosmtpd's testing/statuscodes.py does).
SMTP_OK = "250 2.0.0 OK: queued as SMS"
SMTP_AUTH_REQUIRED = "530 5.7.0 Authentication required"
SMTP_NEVER_SENT = "421 4.4.2 connection dropped by the simulator"  # the client never sees it

WAIT_TIMEOUT = 10.0  # default seconds for wait_for() and wait_for_replies()
STOP_TIMEOUT = 5.0  # seconds for open connections to close when the gateway stops
PORT_CLASH_RETRIES = 3

Stage = Literal["mail", "rcpt", "data"]
Tie = Literal["in-reply-to", "quote", "none"]
Transfer = Literal["8bit", "base64", "quoted-printable"]
TlsMode = Literal["none", "starttls", "implicit"]
STAGES = ("mail", "rcpt", "data")
TIES = ("in-reply-to", "quote", "none")
TRANSFERS = ("8bit", "base64", "quoted-printable")
TLS_MODES = ("none", "starttls", "implicit")
_DIGITS = re.compile(r"\d+")


class Headers(Mapping[str, str]):
    """Read-only, case-insensitive view of a message's headers; ``[name]`` is the first value."""

    def __init__(self, items: Iterable[tuple[str, str]]) -> None:
        self._items = tuple((name, str(value)) for name, value in items)

    def __getitem__(self, name: str) -> str:
        for key, value in self._items:
            if key.lower() == name.lower():
                return value
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        seen: set[str] = set()
        for key, _value in self._items:
            if key.lower() not in seen:
                seen.add(key.lower())
                yield key

    def __len__(self) -> int:
        return len({key.lower() for key, _value in self._items})

    def get_all(self, name: str) -> list[str]:
        return [value for key, value in self._items if key.lower() == name.lower()]

    def __repr__(self) -> str:
        return f"Headers({dict(self)!r})"


@dataclass(frozen=True)
class ReceivedSms:
    """One request the gateway accepted, as the gateway understands it.

    ``mode`` is 'a'..'e' (seed table), None when the Subject fits no mode. Fields a mode
    does not carry are None. ``text`` is the decoded body with CRLF as LF and the one line
    break that ends a MIME body removed; it is what the 500-character limit is counted on.
    """

    to: str
    phone: str
    subject: str
    mode: str | None
    alpha_name: str | None
    login: str | None
    password: str | None
    api_key: str | None
    list_id: str | None
    text: str
    charset: str | None
    message_id: str | None
    headers: Headers
    problems: tuple[str, ...]
    mail_from: str = ""
    encrypted: bool = False
    auth_login: str | None = None
    raw: bytes = field(default=b"", repr=False)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class SentReply:
    """An error (or OK) reply the gateway e-mailed back for a request."""

    code: str
    tie: str
    request_message_id: str | None
    message_id: str
    raw: bytes = field(repr=False)
    delivered: bool = False
    error: str | None = None


@dataclass(frozen=True)
class _Reply:
    code: str
    tie: Tie
    charset: str
    transfer: Transfer
    html: bool


@dataclass(frozen=True)
class _Fault:
    drop: bool  # close the connection without a reply instead of answering
    status: str = ""
    accept: bool = False  # drop at "data" after recording: the client cannot know it arrived


# -- pure parsing ----------------------------------------------------------------------------


def _decode_subject(value: str | None) -> tuple[str, list[str]]:
    if value is None:
        return "", []
    try:
        return str(email.header.make_header(email.header.decode_header(value))), []
    except (UnicodeError, LookupError, ValueError) as error:
        return value, [f"Subject cannot be decoded ({error})"]


def _subject_fields(subject: str, problems: list[str]) -> dict[str, str | None]:
    """Split the Subject into the mode's fields; see the seed table for the layouts.

    1 field is mode b, 2 is d, 4 is c. 3 fields are a (alpha;login;password) or e
    (alpha;key;list id): the login is a phone number, so an all-digit second field means a.
    """
    fields = subject.split(SUBJECT_SEPARATOR)
    for number, value in enumerate(fields, start=1):
        if not value.strip():
            problems.append(f"Subject field {number} of {len(fields)} is empty")
        elif value != value.strip():
            problems.append(f"Subject field {number} has spaces around it")
    fields = [value.strip() for value in fields]
    names: tuple[str, ...]
    if len(fields) == 1:
        mode, names = "b", ("alpha_name",)
    elif len(fields) == 2:
        mode, names = "d", ("alpha_name", "api_key")
    elif len(fields) == 3 and _DIGITS.fullmatch(fields[1]):
        mode, names = "a", ("alpha_name", "login", "password")
    elif len(fields) == 3:
        mode, names = "e", ("alpha_name", "api_key", "list_id")
    elif len(fields) == 4:
        mode, names = "c", ("alpha_name", "login", "password", "list_id")
    else:
        problems.append(f"Subject has {len(fields)} ';'-separated fields; modes a-e use 1 to 4")
        return {"mode": None, "alpha_name": fields[0] or None}
    found: dict[str, str | None] = {"mode": mode}
    found.update(zip(names, (value or None for value in fields), strict=True))
    return found


def _body(message: Message, problems: list[str]) -> tuple[str, str | None]:
    """(SMS text, declared charset) of the message; problems for anything but one text part."""
    part: Message | None = message
    if message.is_multipart():
        problems.append(
            f"body is {message.get_content_type()}: the gateway sends the body as the SMS, "
            "so it must be one text/plain part"
        )
        part = next(
            (p for p in message.walk() if p.get_content_type() == "text/plain"),
            None,
        )
        if part is None:
            return "", None
    elif message.get_content_type() != "text/plain":
        problems.append(f"body is {message.get_content_type()}, not text/plain")
    transfer = (part.get("Content-Transfer-Encoding") or "7bit").strip().lower()
    if transfer not in ("7bit", "8bit", "binary", "base64", "quoted-printable"):
        problems.append(f"unknown Content-Transfer-Encoding {transfer!r}")
    payload = part.get_payload(decode=True) or b""
    charset = part.get_content_charset()
    if charset is None:
        problems.append("no charset declared in Content-Type (the document requires one)")
    encoding = charset or ASSUMED_CHARSET
    try:
        codecs.lookup(encoding)
    except LookupError:
        problems.append(f"unknown charset {charset!r}")
        encoding = ASSUMED_CHARSET
    try:
        text = payload.decode(encoding)
    except UnicodeDecodeError:
        what = f"declared charset {charset}" if charset else "UTF-8, which the gateway assumes"
        problems.append(f"body is not valid {what}")
        text = payload.decode(encoding, errors="replace")
    text = text.replace("\r\n", "\n")
    return text.removesuffix("\n"), charset


def parse_request(
    raw: bytes,
    *,
    rcpt_tos: list[str],
    mail_from: str = "",
    domain: str = GATEWAY_DOMAIN,
    owner: str | None = None,
    encrypted: bool = False,
    auth_login: str | None = None,
) -> ReceivedSms:
    """Read one Email2SMS request as the gateway would and list what breaks the document.

    ``owner`` is the account's login (its phone number) when the test knows it: then modes
    b, c and e must be addressed to it and modes a and c must name it in the Subject.
    ``encrypted`` says whether the SMTP session used TLS, which secrets require.
    """
    problems: list[str] = []
    message = email.message_from_bytes(raw, policy=email.policy.compat32)

    if len(rcpt_tos) != 1:
        problems.append(f"{len(rcpt_tos)} envelope recipients; one request has exactly one")
    to = rcpt_tos[0] if rcpt_tos else ""
    phone, _at, to_domain = to.rpartition("@")
    if not _DIGITS.fullmatch(phone):
        problems.append(f"recipient local part {phone!r} is not a phone number (digits only)")
    if to_domain.lower() != domain.lower():
        problems.append(f"recipient domain {to_domain!r} is not {domain}")
    header_to = email.utils.getaddresses(message.get_all("To", []))
    if to and to.lower() not in [addr.lower() for _name, addr in header_to]:
        problems.append(f"To header does not name the envelope recipient {to}")

    subject, subject_problems = _decode_subject(message.get("Subject"))
    problems += subject_problems
    if message.get("Subject") is None:
        problems.append("no Subject: the alpha-name goes there")
    fields = _subject_fields(subject, problems)
    mode = fields.get("mode")
    login, list_id = fields.get("login"), fields.get("list_id")
    if login is not None and not _DIGITS.fullmatch(login):
        problems.append("login in the Subject is not a phone number (digits only)")
    if list_id is not None and not _DIGITS.fullmatch(list_id):
        problems.append("list id in the Subject is not numeric")
    if mode == "c" and login and phone != login:
        problems.append("mode c must be sent to <login>@ (the login in the Subject)")
    if owner is not None:
        if mode in ("b", "c", "e") and phone != owner:
            problems.append(f"mode {mode} must be sent to the account's own number {owner}")
        if mode in ("a", "c") and login != owner:
            problems.append("login in the Subject is not the account's")
    if mode in SECRET_MODES and not encrypted:
        problems.append(
            f"mode {mode} carries a secret in the Subject but the SMTP session was not "
            "encrypted (such mail must only travel over TLS)"
        )

    text, charset = _body(message, problems)
    if len(text) > SMS_MAX_CHARS:
        problems.append(f"SMS text is {len(text)} characters; the gateway takes {SMS_MAX_CHARS}")
    if not text.strip():
        problems.append("SMS text is empty")

    message_id = (message.get("Message-ID") or "").strip() or None
    return ReceivedSms(
        to=to,
        phone=phone,
        subject=subject,
        mode=mode,
        alpha_name=fields.get("alpha_name"),
        login=login,
        password=fields.get("password"),
        api_key=fields.get("api_key"),
        list_id=list_id,
        text=text,
        charset=charset,
        message_id=message_id,
        headers=Headers(message.items()),
        problems=tuple(problems),
        mail_from=mail_from,
        encrypted=encrypted,
        auth_login=auth_login,
        raw=raw,
    )


# -- pure reply building ---------------------------------------------------------------------


def mask_subject(subject: str) -> str:
    """The Subject with every field after the alpha-name masked: secrets never reach a reply."""
    alpha, *rest = subject.split(SUBJECT_SEPARATOR)
    return SUBJECT_SEPARATOR.join([alpha, *(SECRET_MASK for _ in rest)])


def _explain(code: str) -> tuple[str, str]:
    key = "MSG" if code.upper().startswith("MSG:") else code.upper()
    return ERROR_TEXTS.get(key, UNKNOWN_TEXTS)


def build_reply(
    request: ReceivedSms,
    code: str,
    *,
    tie: Tie = "in-reply-to",
    charset: str = "utf-8",
    transfer: Transfer = "8bit",
    html: bool = False,
) -> bytes:
    """The e-mail the gateway sends back to a request's sender, mentioning ``code``.

    ``tie`` says how it points at the request: In-Reply-To/References headers, the request's
    Message-ID and (masked) Subject quoted in the body, or nothing at all.
    """
    russian, english = _explain(code)
    lines = [
        f"{code} - {russian}",
        f"{code} - {english}",
    ]
    if tie == "quote":
        lines += [
            "",
            "Ваше сообщение / your message:",
            f"> Message-ID: {request.message_id or '(none)'}",
            f"> Subject: {mask_subject(request.subject)}",
        ]
    body = "\n".join(lines) + "\n"
    if html:
        paragraphs = "".join(f"<p>{html_lib.escape(line)}</p>" for line in lines if line)
        body = f"<html><body>{paragraphs}</body></html>\n"

    reply = EmailMessage(policy=email.policy.SMTP)
    reply["From"] = REPLY_FROM
    reply["To"] = request.headers.get("From") or request.mail_from
    reply["Subject"] = f"Email2SMS: {code}"
    reply["Date"] = email.utils.formatdate(localtime=True)
    reply["Message-ID"] = email.utils.make_msgid(domain=REPLY_MESSAGE_ID_DOMAIN)
    if tie == "in-reply-to" and request.message_id:
        reply["In-Reply-To"] = request.message_id
        reply["References"] = request.message_id
    reply.set_content(body, subtype="html" if html else "plain", charset=charset, cte=transfer)
    return reply.as_bytes()


# -- the SMTP side ---------------------------------------------------------------------------


class _GatewaySMTP(SMTP):
    """aiosmtpd's SMTP, plus: knows implicit TLS, and sends replies after the 250 is out."""

    def __init__(self, handler: _GatewayHandler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.gateway = handler.gateway
        self.implicit_tls = False
        self.pending_replies: list[tuple[_Reply, ReceivedSms]] = []

    @property
    def encrypted(self) -> bool:
        # aiosmtpd sets session.ssl only after STARTTLS; implicit TLS we see on the transport.
        return self.implicit_tls or (self.session is not None and self.session.ssl is not None)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        first = self.transport is None
        super().connection_made(transport)
        if first:
            self.implicit_tls = transport.get_extra_info("ssl_object") is not None
            self.gateway._connections.add(self)

    def connection_lost(self, error: Exception | None) -> None:
        super().connection_lost(error)
        self.gateway._connection_closed(self)

    async def smtp_DATA(self, arg: str) -> None:
        if self.envelope is not None and self.envelope.rcpt_tos and self.gateway._take_hangup():
            assert self.transport is not None
            # The 354, then at once (one write, so one segment: before the client can send
            # its body) the 421 a server that must shut down may send at any time (RFC 5321
            # §3.8), then the FIN. push() would yield in drain(); close() alone sends the FIN
            # one loop iteration later.
            self.transport.write(
                b"354 End data with <CR><LF>.<CR><LF>\r\n421 4.3.2 shutting down, try later\r\n"
            )
            with contextlib.suppress(OSError):
                self.transport.get_extra_info("socket").shutdown(socket.SHUT_WR)
            self.transport.close()
            return
        await super().smtp_DATA(arg)
        # The client has its 250 now; a real gateway's reply can only come after it.
        pending, self.pending_replies = self.pending_replies, []
        for reply, request in pending:
            self.gateway._send_reply(reply, request)


class _GatewayHandler:
    """aiosmtpd handler hooks: fault injection, authentication, recording."""

    def __init__(self, gateway: GatewaySimulator) -> None:
        self.gateway = gateway

    async def handle_MAIL(
        self,
        server: _GatewaySMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        options: list[str],
    ) -> str:
        self.gateway._count_attempt()
        if self.gateway.requires_auth and not session.authenticated:
            return SMTP_AUTH_REQUIRED
        if status := self._fault(server, "mail"):
            return status
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self,
        server: _GatewaySMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        options: list[str],
    ) -> str:
        if status := self._fault(server, "rcpt"):
            return status
        if self.gateway.refuse_owners and not address.lower().endswith(
            f"@{self.gateway.domain}".lower()
        ):
            return "550 5.7.1 relaying to that address is not allowed here"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: _GatewaySMTP, session: Session, envelope: Envelope) -> str:
        fault = self.gateway._take_fault("data")
        if fault is not None and not fault.drop:
            return fault.status
        auth_data = session.auth_data
        raw = envelope.original_content or b""
        suffix = f"@{self.gateway.domain}".lower()
        to_gateway = [r for r in envelope.rcpt_tos if r.lower().endswith(suffix)]
        owners = [r for r in envelope.rcpt_tos if not r.lower().endswith(suffix)]
        request = None
        if to_gateway or not owners:
            request = parse_request(
                raw,
                rcpt_tos=to_gateway,
                mail_from=envelope.mail_from or "",
                domain=self.gateway.domain,
                owner=self.gateway.owner,
                encrypted=server.encrypted,
                auth_login=(
                    auth_data.login.decode() if isinstance(auth_data, LoginPassword) else None
                ),
            )
        if fault is not None and not fault.accept:
            return self._drop(server)
        # Once the final dot is in, the message is the server's whether or not the client
        # stays for the 250 (a real MTA has queued it): a client that hangs up now makes
        # aiosmtpd cancel this coroutine, so the acceptance runs shielded from that.
        acceptance = asyncio.ensure_future(self.gateway._accepted(request, owners, raw))
        self.gateway._accepting.add(acceptance)  # a strong reference while it runs
        acceptance.add_done_callback(self.gateway._accepting.discard)
        await asyncio.shield(acceptance)
        if fault is not None:
            return self._drop(server)
        if request is not None and (reply := self.gateway._take_reply()) is not None:
            server.pending_replies.append((reply, request))
        return SMTP_OK

    def _fault(self, server: _GatewaySMTP, stage: Stage) -> str | None:
        fault = self.gateway._take_fault(stage)
        if fault is None:
            return None
        return self._drop(server) if fault.drop else fault.status

    @staticmethod
    def _drop(server: _GatewaySMTP) -> str:
        """Abort the connection: no reply reaches the client.

        abort() marks the transport lost at once, so the status aiosmtpd then pushes is
        discarded, and connection_lost() cancels the session's task.
        """
        assert server.transport is not None
        server.transport.abort()
        return SMTP_NEVER_SENT


class _OAuthGatewayHandler(_GatewayHandler):
    """Adds AUTH XOAUTH2 (Google's and Microsoft's SMTP exchange), checked by the gateway's
    ``oauth2_check(user, token)``; a refusal is a 334 with a JSON error, then 535."""

    async def auth_XOAUTH2(self, server: _GatewaySMTP, args: list[str]) -> AuthResult:
        if len(args) > 1:
            try:
                blob = base64.b64decode(args[1], validate=True)
            except (binascii.Error, ValueError):
                await server.push("501 5.5.2 Can't decode base64")
                return AuthResult(success=False, handled=True)
        else:
            answer = await server.challenge_auth("", encode_to_b64=False)
            if not isinstance(answer, bytes):
                return AuthResult(success=False, handled=True)
            blob = answer
        fields = dict(
            part.split("=", 1)
            for part in blob.decode("utf-8", "replace").split("\x01")
            if "=" in part
        )
        user = fields.get("user", "")
        token = fields.get("auth", "").removeprefix("Bearer ")
        check = self.gateway.oauth2_check
        ok = check is not None and bool(user) and check(user, token)
        self.gateway._record_auth(user, "XOAUTH2", ok)
        if ok:
            return AuthResult(success=True, auth_data=LoginPassword(user.encode(), b""))
        error = json.dumps({"status": "401", "schemes": "bearer", "scope": "mail"})
        await server.challenge_auth(error)  # the client answers with an empty line
        return AuthResult(
            success=False, handled=False, message="535 5.7.8 Username and Password not accepted"
        )


class _GatewayController(Controller):
    def factory(self) -> _GatewaySMTP:
        # Pass the loop: aiosmtpd would otherwise look it up with get_event_loop().
        return _GatewaySMTP(self.handler, loop=self.loop, **self.SMTP_kwargs)


class GatewaySimulator:
    """The Email2SMS gateway on 127.0.0.1: records requests, injects faults, sends replies.

    ``tls``: "none", "starttls" (offered on the port) or "implicit" (SMTPS); clients trust
    ``ca_file``. With ``username``/``password`` every MAIL needs AUTH first (offered only over
    TLS unless ``auth_require_tls=False``). ``deliver`` receives each reply mail's bytes, e.g.
    ``lambda raw: dovecot.append(user, "INBOX", raw)``; it runs on a worker thread.
    ``local(recipient, raw)`` receives each accepted message once per recipient outside the
    gateway's domain (the owner's copy); ``sent(raw)`` each accepted message (its Sent-folder
    filing); ``refuse_owners`` answers RCPT for those recipients with 550 instead.
    """

    host = LOOPBACK

    def __init__(
        self,
        *,
        tls: TlsMode = "none",
        username: str | None = None,
        password: str | None = None,
        auth_require_tls: bool = True,
        require_starttls: bool = False,
        domain: str = GATEWAY_DOMAIN,
        owner: str | None = None,
        deliver: Callable[[bytes], None] | None = None,
        local: Callable[[str, bytes], None] | None = None,
        sent: Callable[[bytes], None] | None = None,
        refuse_owners: bool = False,
        port: int | None = None,
        oauth2_check: Callable[[str, str], bool] | None = None,
    ) -> None:
        if tls not in TLS_MODES:
            raise ValueError(f"tls must be one of {TLS_MODES}, not {tls!r}")
        if (username is None) != (password is None):
            raise ValueError("give both username and password, or neither")
        self.tls = tls
        self.username = username
        self.password = password
        self.auth_require_tls = auth_require_tls
        self.require_starttls = require_starttls
        self.domain = domain
        self.owner = owner
        self.deliver = deliver
        # AUTH XOAUTH2 (besides PLAIN/LOGIN when username is set): oauth2_check(user, token)
        # says whether the bearer token is good, e.g. an IdentityProvider's valid tokens.
        self.oauth2_check = oauth2_check
        self.auth_attempts: list[tuple[str, str, bool]] = []  # (user, mechanism, accepted)
        self.local = local
        self.sent = sent
        self.refuse_owners = refuse_owners  # RCPT outside the gateway's domain: 550
        self._fixed_port = port is not None
        self.port = port or free_port()
        self._files_dir: Path | None = None
        self.ca_file: Path | None = None
        self.wrong_ca_file: Path | None = None
        self._tls_files: TlsFiles | None = None
        if tls != "none":
            self._files_dir = Path(tempfile.mkdtemp(prefix="forwarder-gateway-"))
            self._tls_files = TlsFiles.create(self._files_dir)
            self.ca_file = self._tls_files.ca_file
            self.wrong_ca_file = self._tls_files.wrong_ca_file

        self._lock = threading.Condition()
        self._received: list[ReceivedSms] = []
        self._replies_sent: list[SentReply] = []
        self._faults: dict[str, deque[_Fault]] = {stage: deque() for stage in STAGES}
        self._replies: deque[_Reply] = deque()
        self._copies: list[tuple[str, bytes]] = []  # (owner's recipient, message) accepted
        self._filed: list[bytes] = []  # messages filed in Sent
        self._hangups = 0  # DATA commands to answer with 354 and then hang up on
        self._accepting: set[asyncio.Future[None]] = set()  # on the server's loop only
        self._attempts = 0
        self._controller: _GatewayController | None = None
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._connections: set[_GatewaySMTP] = set()  # touched on the server's loop only
        self._all_closed: asyncio.Event | None = None

    @property
    def requires_auth(self) -> bool:
        return self.username is not None or self.oauth2_check is not None

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> GatewaySimulator:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def running(self) -> bool:
        return self._controller is not None

    def start(self) -> None:
        """Listen on ``port`` (the same one after a stop(), so clients find it again)."""
        if self._controller is not None:
            raise RuntimeError("the gateway simulator is already running")
        attempts = 1 if self._fixed_port else PORT_CLASH_RETRIES
        for attempt in range(1, attempts + 1):
            controller = self._make_controller()
            try:
                controller.start()
            except OSError:
                controller.stop(no_assert=True)
                if attempt == attempts:
                    raise
                self.port = free_port()
                continue
            break
        self._fixed_port = True  # from now on the port is the gateway's address
        self._controller = controller
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="gateway-replies"
        )

    def stop(self) -> None:
        """Close every connection and stop listening: the gateway is down until start().

        Replies already accepted for delivery are still delivered before this returns.
        """
        controller, self._controller = self._controller, None
        if controller is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._close_connections(), controller.loop).result(
                STOP_TIMEOUT
            )
        finally:
            controller.stop()
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None

    def close(self) -> None:
        """Stop and remove the certificate files."""
        self.stop()
        if self._files_dir is not None:
            shutil.rmtree(self._files_dir, ignore_errors=True)

    # -- what tests look at ------------------------------------------------------------------

    @property
    def received(self) -> list[ReceivedSms]:
        with self._lock:
            return list(self._received)

    @property
    def replies_sent(self) -> list[SentReply]:
        with self._lock:
            return list(self._replies_sent)

    @property
    def copies(self) -> list[tuple[str, bytes]]:
        """(recipient, message) of every accepted message's other recipients: the owner's."""
        with self._lock:
            return list(self._copies)

    @property
    def filed(self) -> list[bytes]:
        """Every accepted message filed in the Sent folder (``sent``)."""
        with self._lock:
            return list(self._filed)

    @property
    def attempts(self) -> int:
        """MAIL commands seen, accepted or not: how often a client tried to send."""
        with self._lock:
            return self._attempts

    def wait_for(self, count: int, timeout: float = WAIT_TIMEOUT) -> list[ReceivedSms]:
        """Block until ``count`` requests were accepted; return them all."""
        with self._lock:
            if not self._lock.wait_for(lambda: len(self._received) >= count, timeout):
                raise TimeoutError(
                    f"the gateway accepted {len(self._received)} of {count} requests "
                    f"within {timeout:.1f} s"
                )
            return list(self._received)

    def wait_for_replies(self, count: int, timeout: float = WAIT_TIMEOUT) -> list[SentReply]:
        """Block until ``count`` replies were delivered (or failed to be); return them all."""
        with self._lock:
            if not self._lock.wait_for(lambda: len(self._replies_sent) >= count, timeout):
                raise TimeoutError(
                    f"the gateway sent {len(self._replies_sent)} of {count} replies "
                    f"within {timeout:.1f} s"
                )
            return list(self._replies_sent)

    def clear(self) -> None:
        """Forget what was received and sent, and every queued fault and reply."""
        with self._lock:
            self._received.clear()
            self._replies_sent.clear()
            self._replies.clear()
            self._copies.clear()
            self._filed.clear()
            self._hangups = 0
            for queue in self._faults.values():
                queue.clear()
            self._attempts = 0

    # -- what tests arrange ------------------------------------------------------------------

    def fail_next(
        self, code: int, message: str = "simulated failure", stage: Stage = "data", count: int = 1
    ) -> None:
        """Answer the next ``count`` commands of ``stage`` with ``code`` (451, 550, 552...)."""
        self._check_stage(stage)
        if not 400 <= code <= 599:
            raise ValueError(f"an SMTP failure code is 4xx or 5xx, not {code}")
        self._add_faults(stage, _Fault(drop=False, status=f"{code} {message}"), count)

    def drop_next(self, stage: Stage = "data", count: int = 1, *, accept: bool = False) -> None:
        """Close the connection instead of answering the next ``count`` commands of ``stage``.

        ``accept=True`` (stage "data" only) records the request first: the gateway got it,
        but the client cannot know, the case that tempts a client into a duplicate SMS.
        """
        self._check_stage(stage)
        if accept and stage != "data":
            raise ValueError("accept=True only makes sense at the data stage")
        self._add_faults(stage, _Fault(drop=True, accept=accept), count)

    def hang_up_in_data(self, count: int = 1) -> None:
        """Answer the next ``count`` DATA commands with 354 and, at once, 421 and a closed
        connection while the body is still coming: the message is never accepted."""
        if count < 1:
            raise ValueError("count must be at least 1")
        with self._lock:
            self._hangups += count

    def reply_with(
        self,
        code: str,
        *,
        tie: Tie = "in-reply-to",
        charset: str = "utf-8",
        transfer: Transfer = "8bit",
        html: bool = False,
        count: int = 1,
    ) -> None:
        """E-mail a reply mentioning ``code`` after each of the next ``count`` accepted requests.

        Codes of the document: BANNED, FORBIDDEN, NO LIST, MSG:<n>, AUTH; OK for success;
        anything else plays an unknown code.
        """
        if tie not in TIES:
            raise ValueError(f"tie must be one of {TIES}, not {tie!r}")
        if transfer not in TRANSFERS:
            raise ValueError(f"transfer must be one of {TRANSFERS}, not {transfer!r}")
        codecs.lookup(charset)
        with self._lock:
            self._replies.extend([_Reply(code, tie, charset, transfer, html)] * count)

    # -- clients -----------------------------------------------------------------------------

    def ssl_context(self, ca_file: Path | None = None) -> ssl.SSLContext:
        """A client context trusting ``ca_file`` (default: this gateway's CA)."""
        cafile = ca_file or self.ca_file
        if cafile is None:
            raise RuntimeError("this gateway runs without TLS")
        return ssl.create_default_context(cafile=str(cafile))

    def connect(self, *, timeout: float = WAIT_TIMEOUT, login: bool = True) -> smtplib.SMTP:
        """An smtplib client speaking this gateway's TLS mode, logged in if AUTH is on."""
        client: smtplib.SMTP
        if self.tls == "implicit":
            client = smtplib.SMTP_SSL(
                self.host, self.port, timeout=timeout, context=self.ssl_context()
            )
        else:
            client = smtplib.SMTP(self.host, self.port, timeout=timeout)
        try:
            if self.tls == "starttls":
                client.starttls(context=self.ssl_context())
            if login and self.username is not None and self.password is not None:
                client.login(self.username, self.password)
        except BaseException:
            client.close()
            raise
        return client

    # -- internals (called from the server's thread) -----------------------------------------

    def _make_controller(self) -> _GatewayController:
        smtp_options: dict[str, Any] = {"server_hostname": self.domain}
        ssl_context = None
        if self._tls_files is not None:
            server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            server_context.load_cert_chain(self._tls_files.cert_file, self._tls_files.key_file)
            if self.tls == "implicit":
                ssl_context = server_context
            else:
                smtp_options["tls_context"] = server_context
                smtp_options["require_starttls"] = self.require_starttls
        if self.requires_auth:
            smtp_options["authenticator"] = self._authenticate
        # aiosmtpd cannot see implicit TLS (it only tracks STARTTLS), so there AUTH must not
        # wait for a STARTTLS that will never come.
        smtp_options["auth_require_tls"] = self.auth_require_tls and self.tls != "implicit"
        handler = _OAuthGatewayHandler if self.oauth2_check is not None else _GatewayHandler
        return _GatewayController(
            handler(self),
            hostname=self.host,
            port=self.port,
            ssl_context=ssl_context,
            **smtp_options,
        )

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == self.username
            and auth_data.password.decode() == self.password
        )
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    async def _close_connections(self) -> None:
        if not self._connections:
            return
        self._all_closed = asyncio.Event()
        for connection in list(self._connections):
            if connection.transport is not None:
                connection.transport.abort()
        await asyncio.wait_for(self._all_closed.wait(), STOP_TIMEOUT)

    def _connection_closed(self, connection: _GatewaySMTP) -> None:
        self._connections.discard(connection)
        if not self._connections and self._all_closed is not None:
            self._all_closed.set()

    def _record_auth(self, user: str, mechanism: str, ok: bool) -> None:
        with self._lock:
            self.auth_attempts.append((user, mechanism, ok))
            self._lock.notify_all()

    def _count_attempt(self) -> None:
        with self._lock:
            self._attempts += 1

    def _record(self, request: ReceivedSms) -> None:
        with self._lock:
            self._received.append(request)
            self._lock.notify_all()

    async def _accepted(self, request: ReceivedSms | None, owners: list[str], raw: bytes) -> None:
        """What the server does with a message it accepts, before its 250: file it in Sent,
        deliver the owner's copies, record the gateway's request (in that order, so that a
        test that saw the request finds the receipts in place)."""
        loop = asyncio.get_running_loop()
        if self.sent is not None:
            await loop.run_in_executor(None, self.sent, raw)
        for rcpt in owners:
            if self.local is not None:
                await loop.run_in_executor(None, self.local, rcpt, raw)
        with self._lock:
            if self.sent is not None:
                self._filed.append(raw)
            self._copies.extend((rcpt, raw) for rcpt in owners)
        if request is not None:
            self._record(request)

    def _take_hangup(self) -> bool:
        with self._lock:
            if self._hangups:
                self._hangups -= 1
                return True
            return False

    def _take_fault(self, stage: Stage) -> _Fault | None:
        with self._lock:
            queue = self._faults[stage]
            return queue.popleft() if queue else None

    def _take_reply(self) -> _Reply | None:
        with self._lock:
            return self._replies.popleft() if self._replies else None

    def _add_faults(self, stage: Stage, fault: _Fault, count: int) -> None:
        if count < 1:
            raise ValueError("count must be at least 1")
        with self._lock:
            self._faults[stage].extend([fault] * count)

    @staticmethod
    def _check_stage(stage: str) -> None:
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, not {stage!r}")

    def _send_reply(self, reply: _Reply, request: ReceivedSms) -> None:
        raw = build_reply(
            request,
            reply.code,
            tie=reply.tie,
            charset=reply.charset,
            transfer=reply.transfer,
            html=reply.html,
        )
        assert self._executor is not None
        self._executor.submit(self._deliver, reply, request, raw)

    def _deliver(self, reply: _Reply, request: ReceivedSms, raw: bytes) -> None:
        error = None
        if self.deliver is not None:
            try:
                self.deliver(raw)
            except Exception as exc:  # recorded for the test to see; the gateway goes on
                error = f"{type(exc).__name__}: {exc}"
        message_id = email.message_from_bytes(raw)["Message-ID"]
        sent = SentReply(
            code=reply.code,
            tie=reply.tie,
            request_message_id=request.message_id,
            message_id=message_id,
            raw=raw,
            delivered=self.deliver is not None and error is None,
            error=error,
        )
        with self._lock:
            self._replies_sent.append(sent)
            self._lock.notify_all()
