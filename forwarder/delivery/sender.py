"""The SMTP edge: hands queued SMS requests to the user's SMTP server, exactly once if SMTP allows.

Each outbox row moves ``pending → sending → in_doubt → sent`` and every step
is committed before the next byte goes out, so after a crash the row says
exactly how far it got:

* ``sending``: the final dot was never sent, so the server discarded the
  message (RFC 5321 §4.1.1.4): sending it again cannot duplicate it.
* ``in_doubt``: the dot went out, the 250 never came back. This is the one
  window SMTP cannot close (RFC 1047); ``forwarder.delivery.receipts`` finds out
  afterwards where the setup allows it (each attempt records what could prove
  it: a copy to the owner, added here as a second envelope recipient of the same
  transaction, or the Sent folder), and ``delivery.on_doubt`` settles the rest.
  To keep the window small, the DATA phase is driven by hand: the state is
  written just before the final ``.``, not before the whole body, and a server
  that already hung up by then (it can only have discarded the message) is
  noticed before the dot, so it is no doubt at all.

Failures are sorted once, in ``classify``: transient ones are retried inside
the send (tenacity, exponential backoff with full jitter), then the row waits
for a later round with a growing ``not_before`` (``forwarder.backoff.Policy``)
and the whole sender pauses as long, so a dead server is not hammered.
Permanent ones fail the row. A failure that says the *settings* are wrong
(certificate, SMTP login, MAIL FROM or the session refused) instead halts the
sender until a reload or restart: every queued SMS would fail the same way, so
they wait, the one that met the failure among them.

No secret leaves here: the real Subject exists only in the message handed to
smtplib (whose debug output stays off); every error text is scrubbed of the
gateway password, API key and SMTP password before it is logged or stored.
"""

from __future__ import annotations

import contextlib
import logging
import re
import select
import smtplib
import socket
import ssl
import time
from collections.abc import Callable

from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from forwarder import crashpoints
from forwarder.backoff import Policy
from forwarder.config import SmtpConfig
from forwarder.delivery.receipts import NO_PROOF, Receipts
from forwarder.delivery.states import State
from forwarder.gateway.account import MASK, Account, Request
from forwarder.gateway.request import compose
from forwarder.oauth import sasl, tokens
from forwarder.records import OutboxRow
from forwarder.store import StateUnwritable, Store
from forwarder.tls import client_context

logger = logging.getLogger(__name__)

#: The state file's record of a halted sender (the scrubbed reason; '' when sending goes).
HALT_KEY = "smtp_halted"

#: Between rounds, after a failed send: 30 s doubling to 15 min (delivery.retry_backoff*).
SMTP_RETRY = Policy("smtp retry", first=30.0, cap=900.0)


class DeliveryError(Exception):
    """A send failed; ``transient`` says whether trying again later can help, ``halts``
    whether the SMTP settings themselves are wrong (every SMS would fail the same way)."""

    def __init__(
        self, message: str, *, transient: bool, code: int | None = None, halts: bool = False
    ) -> None:
        super().__init__(message)
        self.transient = transient
        self.code = code
        self.halts = halts
        self.after_dot = False


def classify(exc: BaseException) -> DeliveryError:
    """The one place that decides transient vs permanent.

    smtplib's exceptions and ssl.SSLCertVerificationError are all OSError
    subclasses, so 'retry on OSError' would retry a rejected recipient or a
    forged certificate for ever. Order matters: most specific first.
    """
    if isinstance(exc, DeliveryError):
        return exc
    if isinstance(exc, ssl.SSLCertVerificationError):
        return DeliveryError(
            f"TLS certificate rejected: {exc.verify_message}; check smtp.host and smtp.ca_file",
            transient=False,
            halts=True,
        )
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        if 400 <= exc.smtp_code < 500:  # RFC 4954 §6: 454 temporary authentication failure
            return _by_code(exc.smtp_code, exc.smtp_error, "AUTH")
        return DeliveryError(
            f"SMTP login refused ({exc.smtp_code}): check smtp.username and smtp.password",
            transient=False,
            code=exc.smtp_code,
            halts=True,
        )
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return DeliveryError(
            f"SMTP server does not support it: {exc}; check smtp.security and smtp.port",
            transient=False,
            halts=True,
        )
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        code, reply = next(iter(exc.recipients.values()))
        return _by_code(code, reply, "RCPT")
    if isinstance(exc, smtplib.SMTPSenderRefused):
        return _by_code(exc.smtp_code, exc.smtp_error, "MAIL")
    if isinstance(exc, smtplib.SMTPDataError):
        return _by_code(exc.smtp_code, exc.smtp_error, "DATA")
    if isinstance(exc, smtplib.SMTPResponseException):
        return _by_code(exc.smtp_code, exc.smtp_error, "SMTP")
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return DeliveryError("SMTP server closed the connection", transient=True)
    if type(exc) is smtplib.SMTPException:  # smtplib's own refusal, e.g. no common AUTH method
        return DeliveryError(
            f"SMTP session refused: {exc}; check smtp.security, smtp.username and smtp.password",
            transient=False,
            halts=True,
        )
    if isinstance(exc, ssl.SSLError):
        return DeliveryError(f"TLS error: {exc.reason or exc}", transient=True)
    if isinstance(exc, socket.timeout | TimeoutError):
        return DeliveryError("SMTP server timed out", transient=True)
    if isinstance(exc, socket.gaierror):
        return DeliveryError(f"cannot resolve SMTP host: {exc.strerror}", transient=True)
    if isinstance(exc, OSError):
        return DeliveryError(f"cannot reach SMTP server: {exc.strerror or exc}", transient=True)
    return DeliveryError(f"unexpected {exc.__class__.__name__}: {exc}", transient=False)


def _worth_retrying(exc: BaseException) -> bool:
    """Retry transient failures, but never one after the final dot: that could send twice."""
    return isinstance(exc, DeliveryError) and exc.transient and not exc.after_dot


def _by_code(code: int, reply: bytes | str, stage: str) -> DeliveryError:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    # 4xx is transient by definition; 552 on RCPT is too (RFC 5321 §4.5.3.1.10: treat as 452).
    transient = 400 <= code < 500 or (code == 552 and stage == "RCPT")
    # A permanent refusal of MAIL FROM (or of a session that wants AUTH first) is about
    # smtp.from or the login, not about this SMS: every other one would be refused too.
    # So is one before MAIL ("SMTP": the greeting, EHLO, STARTTLS; RFC 5321 §3.1: a 554
    # greeting refuses every transaction).
    halts = not transient and stage in ("MAIL", "SMTP")
    return DeliveryError(f"{stage} {code} {text}", transient=transient, code=code, halts=halts)


class Sender:
    """Sends outbox rows over one reused SMTP connection (a burst is one session).

    ``attempts`` tries per send with ``max_wait`` the cap of the jittered wait
    between them; after a failed send the row and the sender wait ``backoff``.
    """

    def __init__(
        self,
        config: SmtpConfig,
        account: Account,
        store: Store,
        *,
        attempts: int = 3,
        max_wait: float = 10.0,
        backoff: Policy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        receipts: Receipts = Receipts.OFF,
        copy_to: str | None = None,
    ) -> None:
        self.config = config
        self.receipts = receipts  # resolved (never auto); the Delivery sets it on reload
        self.copy_to = copy_to  # receipts: copy — the owner's address, the copy's recipient
        self._copy_refused: str | None = None  # said once: the server refused copy_to
        self.account = account
        self._context: tuple[str | None, ssl.SSLContext] | None = None  # see _tls_context
        self.store = store
        self.attempts = attempts
        self.max_wait = max_wait
        self.backoff = backoff or SMTP_RETRY
        self.sleep = sleep
        self.retry_at = 0.0  # no send before this (store clock): the server just failed
        self.halted: str | None = None  # why the settings are wrong; nothing goes until reload
        self._failures = 0  # failed sends in a row
        self._conn: smtplib.SMTP | None = None
        self._secrets = tuple(
            secret.reveal()
            for secret in (account.password, account.api_key, config.password)
            if secret is not None and secret.reveal()
        )

    def resume(self, config: SmtpConfig) -> None:
        """Forget a halt (after a reload): the next send tries again."""
        self.config = config
        self.halted = None
        self.retry_at = 0.0
        self._record_halt("")

    def _record_halt(self, reason: str) -> None:
        """For 'forwarder status', which reads the state file, not this process: why sending
        stopped ('' when it goes). A disk too full for it costs only that line."""
        with contextlib.suppress(StateUnwritable):
            self.store.set_meta(HALT_KEY, reason)

    def ready(self, now: float) -> bool:
        """May a send be tried now (not halted, not backing off)?"""
        return self.halted is None and now >= self.retry_at

    def scrub(self, text: str) -> str:
        """``text`` with every secret masked: server replies may quote what they were sent."""
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text

    # -- connection ---------------------------------------------------------------------------
    def _connect(self) -> smtplib.SMTP:
        if self._conn is not None:
            try:
                if self._conn.noop()[0] == 250:
                    return self._conn
            except (smtplib.SMTPException, OSError):
                pass
            self.close()
        c = self.config
        context = self._tls_context() if c.security != "plain" else None
        if c.security == "tls":
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                c.host, c.port, timeout=c.timeout, context=context
            )
        else:
            smtp = smtplib.SMTP(c.host, c.port, timeout=c.timeout)
        try:
            # The DATA phase is two writes (body, then the final dot after the in_doubt
            # commit) followed by a read: with Nagle's algorithm the dot waits for the
            # server's delayed ACK of the body, 40 ms per SMS on Linux. Small writes go at once.
            if smtp.sock is not None:
                smtp.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            smtp.ehlo()
            if c.security == "starttls":
                smtp.starttls(context=context)
                smtp.ehlo()
            if c.oauth2 is not None:
                self._oauth2_login(smtp)
            elif c.username is not None and c.password is not None:
                smtp.login(c.username, c.password.reveal())
        except BaseException:
            _quietly_quit(smtp)
            raise
        self._conn = smtp
        return smtp

    def _tls_context(self) -> ssl.SSLContext:
        """One verifying context per settings, not one per connection: building it loads
        the system's CA certificates, ~50 ms of CPU that the delivery worker would take
        from intake at every burst."""
        key = self.config.ca_file
        if self._context is None or self._context[0] != key:
            self._context = (key, client_context(key))
        return self._context[1]

    def _oauth2_login(self, smtp: smtplib.SMTP) -> None:
        """AUTH XOAUTH2 with the account's token; a refused saved token gets one fresh retry.

        535 for a token that was just refreshed means the token is fine but not for this
        server or user (SMTP AUTH disabled for the mailbox, another account signed in): the
        sender halts, like for a refused password, and says what to check.
        """
        c = self.config
        settings = c.oauth2
        assert settings is not None
        user = c.username or settings.username
        source = tokens.source_for(settings)
        while True:
            try:
                token = source.access_token()
            except tokens.TokenRefused as exc:  # LoginRequired among them: a person must act
                raise DeliveryError(str(exc), transient=False, halts=True) from None
            except tokens.TokenError as exc:
                raise DeliveryError(str(exc), transient=True) from None
            try:
                smtp.auth("XOAUTH2", sasl.smtp_authobject(user, token.value.reveal()))
                return
            except smtplib.SMTPAuthenticationError as exc:
                if 400 <= exc.smtp_code < 500:
                    raise  # temporary (RFC 4954 §6: 454): classify() retries it
                source.invalidate(token)
                said = (
                    exc.smtp_error.decode("utf-8", "replace")
                    if isinstance(exc.smtp_error, bytes)
                    else str(exc.smtp_error)
                )
                if token.fresh:
                    raise DeliveryError(
                        f"SMTP login refused the OAuth2 token for {user!r} ({exc.smtp_code} "
                        f"{said}): is SMTP AUTH allowed for this mailbox, and is it the account "
                        f"you signed in as? ({settings.login_command})",
                        transient=False,
                        code=exc.smtp_code,
                        halts=True,
                    ) from None
                logger.info(
                    "SMTP %s refused the saved access token for %s (%s %s); refreshing it",
                    c.host,
                    user,
                    exc.smtp_code,
                    said,
                )

    def close(self) -> None:
        if self._conn is not None:
            _quietly_quit(self._conn)
            self._conn = None

    # -- sending ------------------------------------------------------------------------------
    def send(self, row: OutboxRow) -> State:
        """Deliver one row, retrying transient failures a few times with backoff and jitter.

        Waits between tries are random in [0, 0.5 s], [0, 1 s], [0, 2 s]... capped at
        ``max_wait`` (tenacity's full jitter). Never raises for an SMTP problem: the
        outcome is committed to the row, and the state it left the row in is returned
        (``sent``; ``pending`` to be tried again; ``failed``; ``in_doubt``).
        """
        retrying = Retrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait_random_exponential(multiplier=0.5, max=self.max_wait),
            retry=retry_if_exception(_worth_retrying),
            sleep=self.sleep,
            reraise=False,
        )
        try:
            retrying(self._send_once, row)
        except RetryError as exc:
            error = exc.last_attempt.exception()
            assert isinstance(error, DeliveryError)
            return self._after_failure(row, error)
        except DeliveryError as error:
            return self._after_failure(row, error)
        self._failures = 0
        return State.SENT

    def _after_failure(self, row: OutboxRow, error: DeliveryError) -> State:
        self.close()
        text = self.scrub(str(error))
        if error.after_dot:
            # Counts as a send for the limits (store.before_dot logged it): it may be billed.
            logger.error(
                "SMS %s for %s: connection lost after the final dot; it may or may not have "
                "been sent (%s)",
                row.message_id,
                row.source_message_id,
                text,
            )
            self.store.mark_in_doubt(row.id, error=text)
            return State.IN_DOUBT
        if error.transient:
            self._failures += 1
            now = self.store.clock()
            wait = self.backoff.delay(max(self._failures, row.retries + 1))
            self.retry_at = now + wait
            logger.warning(
                "SMS %s for %s not sent yet, will retry in %.0fs: %s",
                row.message_id,
                row.source_message_id,
                wait,
                text,
            )
            self.store.retry_later(row.id, error=text, not_before=now + wait)
            return State.PENDING
        if error.halts:
            # The settings are wrong, not this SMS: it waits with the queue (delivery.max_age
            # still applies), or an important mail would be lost to a fixable setting.
            self.halted = text
            self.store.wait(row.id, error=text)
            self._record_halt(text)
            logger.error(
                "sending stopped: %s. Queued SMS wait (%s among them); fix the smtp settings, "
                "then reload (SIGHUP) or restart forwarder",
                text,
                row.message_id,
            )
            return State.PENDING
        logger.error(
            "SMS %s for %s failed permanently: %s", row.message_id, row.source_message_id, text
        )
        self.store.fail(row.id, error=text)
        return State.FAILED

    def _send_once(self, row: OutboxRow) -> None:
        request = self._request_for(row)
        message = compose(
            request, row.text, from_addr=self.config.from_addr, message_id=row.message_id
        )
        payload = message.as_bytes(policy=message.policy.clone(linesep="\r\n"))
        self.store.start_attempt(row.id)
        try:
            smtp = self._connect()
            code, reply = smtp.mail(self.config.from_addr)
            if code != 250:
                raise _by_code(code, reply, "MAIL")
            code, reply = smtp.rcpt(request.to)
            if code not in (250, 251):
                raise _by_code(code, reply, "RCPT")
            proof = self._proof(smtp)
            self._data(smtp, payload, before_dot=lambda: self.store.before_dot(row.id, proof=proof))
        except StateUnwritable:
            # The step could not be committed, so it was not taken (the dot never goes out
            # before in_doubt is on disk): the SMS is not at fault, and must not be failed.
            self.close()
            raise
        except BaseException as exc:
            error = classify(exc)
            if not error.after_dot and error.transient:
                self.close()  # a fresh connection for the retry
            raise error from None
        crashpoints.reach(crashpoints.AFTER_250)
        self.store.mark_sent(row.id)
        logger.info(
            "SMS sent: %s → %s (%d chars) for %s, rule %s",
            row.message_id,
            row.recipient,
            len(row.text),
            row.source_message_id,
            row.rule,
            extra={"sms_id": row.id, "message_id": row.source_message_id, "rule": row.rule},
        )

    def _proof(self, smtp: smtplib.SMTP) -> str:
        """What will prove this attempt if its 250 is lost; adds the copy's recipient.

        The copy to the owner is a second RCPT of the same transaction, so one final dot
        and one 250 cover both (RFC 5321 §3.3). A refused copy recipient costs the receipt,
        never the SMS: the request goes on with the gateway's recipient alone.
        """
        if self.receipts is Receipts.SENT_FOLDER:
            return Receipts.SENT_FOLDER.value
        if self.receipts is not Receipts.COPY or not self.copy_to:
            return NO_PROOF
        code, reply = smtp.rcpt(self.copy_to)
        if code in (250, 251):
            self._copy_refused = None
            return Receipts.COPY.value
        text = self.scrub(reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply)
        if self._copy_refused != text:
            self._copy_refused = text
            logger.warning(
                "SMTP refused the receipt copy to %s (%d %s): SMS go out without receipts, "
                "so a crash at the wrong moment may send one twice (delivery.on_doubt)",
                self.copy_to,
                code,
                text,
            )
        return NO_PROOF

    def _request_for(self, row: OutboxRow) -> Request:
        for request in self.account.requests(row.sender):
            if request.recipient == row.recipient:
                return request
        raise DeliveryError(
            f"recipient {row.recipient} is no longer in the configuration", transient=False
        )

    @staticmethod
    def _data(smtp: smtplib.SMTP, payload: bytes, *, before_dot: Callable[[], None]) -> None:
        """DATA, by hand, so the state can be committed just before the final dot.

        The body is dot-stuffed (RFC 5321 §4.5.2) and ends with CRLF. A server that closed
        the connection (or spoke: it never does mid-DATA, unless to end the session) before
        the dot has not taken the message: that is a plain transient failure, not a doubt.
        """
        crashpoints.reach(crashpoints.AFTER_SENDING)
        smtp.putcmd("data")
        code, reply = smtp.getreply()
        if code != 354:
            raise _by_code(code, reply, "DATA")
        body = re.sub(rb"(?m)^\.", b"..", payload)
        if not body.endswith(b"\r\n"):
            body += b"\r\n"
        smtp.send(body)
        if _server_spoke(smtp):
            code, reply = smtp.getreply()  # it said something (a 421?), or it hung up: raises
            raise _by_code(code, b"the SMTP server ended DATA early: " + reply, "DATA")
        before_dot()
        crashpoints.reach(crashpoints.AFTER_IN_DOUBT)
        try:
            smtp.send(b".\r\n")
            crashpoints.reach(crashpoints.AFTER_DOT)
            code, reply = smtp.getreply()
        except (OSError, smtplib.SMTPException) as exc:
            error = classify(exc)
            error.after_dot = True
            raise error from None
        if code != 250:
            # The server answered: it did not take the message, so this is not in doubt.
            raise _by_code(code, reply, "DATA")


def _server_spoke(smtp: smtplib.SMTP) -> bool:
    """Whether the server sent anything (or hung up) while it should be reading the body.

    A server reading DATA sends nothing until the final dot; a readable socket here means
    end of file, a reset, a TLS close_notify or a 421 — in each case no 250 will come for
    this message. Only ever asked without waiting.
    """
    sock = smtp.sock
    if sock is None:
        return True
    reader = getattr(smtp, "file", None)  # smtplib's buffered reader: read ahead, not parsed
    if reader is not None:
        timeout = sock.gettimeout()
        try:
            sock.settimeout(0)  # peek() must not wait for the network
            if reader.peek(1):
                return True
        except (OSError, ValueError):
            pass
        finally:
            sock.settimeout(timeout)
    if isinstance(sock, ssl.SSLSocket) and sock.pending():  # TLS: decrypted, not yet read
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def _quietly_quit(smtp: smtplib.SMTP) -> None:
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        smtp.close()
