"""The IMAP edge: one connection to the user's mailbox, and nothing but I/O.

This module knows the protocol (RFC 3501, RFC 2177 IDLE) and how servers
differ; it does not know about checkpoints or rules. ``watcher`` decides what
to ask for, and turns the answers into work; ``idle`` keeps a connection in IDLE.

Nothing here may block for ever: every socket has ``imap.timeout`` (imapclient
applies it to connect, TLS handshake, greeting and every read), TCP keepalive is
on, and IDLE waits are sliced (``idle_wait``) and watch for a dead connection.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
import socket
import ssl
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import imapclient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError, LoginError

from forwarder.config import ImapConfig
from forwarder.imap import auth
from forwarder.imap import bodystructure as partial
from forwarder.imap.bodystructure import Part, Section
from forwarder.mail import Likely, Mail, Reads
from forwarder.oauth import sasl, tokens
from forwarder.tls import client_context

logger = logging.getLogger(__name__)

#: UIDs per FETCH command: one round trip for a burst, but bounded line and response sizes.
FETCH_BATCH = 200

#: The header of a mail is fetched up to this size; a longer one (a spam run's thousand
#: Received lines) is cut at its last whole line.
HEADER_LIMIT = 64 * 1024

#: The whole summary of a mail: enough to decide and to fetch its text, never the body.
SUMMARY_ITEMS = (
    "RFC822.SIZE",
    "FLAGS",
    "INTERNALDATE",
    "BODYSTRUCTURE",
    f"BODY.PEEK[HEADER]<0.{HEADER_LIMIT}>",
)

#: Header fields every summary carries, whatever the rules read: Message-ID names the mail
#: in the ledger and the log; Content-Type holds the MIME boundary.
ALWAYS_FIELDS = ("Message-ID", "Content-Type")

#: Fetches of at most this many UIDs get the whole summary at once (what a mail pushed by
#: IDLE meets): parsing a few is cheap, and the mail that is forwarded then costs one round
#: trip fewer. Larger ones (a backlog, a burst) get only what the rules read (``Reads``).
WHOLE_UP_TO = 10

# RFC 3501 §9: ATOM-CHAR is any CHAR except atom-specials; a field name may hold any
# printable character but the colon (RFC 5322 §2.2), so some must be quoted.
_ATOM = re.compile(r'[^(){ %*"\\\]\x00-\x1f\x7f]+')

#: IDLE: after the server closes the connection, imapclient's ``idle_check`` returns []
#: at once, for ever (~75 000 calls/s measured). This many empty answers in a row, each
#: in less than half its timeout, mean the connection is gone. One alone can be harmless
#: (a TLS record with no IMAP data in it).
EMPTY_WAKEUPS = 3

#: Waits shorter than this are too short to tell an early return from a normal one.
_EARLY_MIN = 0.05

#: RFC 6154's attribute of the folder sent mail is filed in (imapclient's SENT).
SENT_FLAG = rb"\Sent"

#: TCP keepalive (idle seconds, probe interval, probes): a peer that vanished without a
#: FIN (NAT timeout, a dead host) breaks the socket in about 90 s even in a long IDLE.
KEEPALIVE = (60, 10, 3)


class MailboxError(Exception):
    """Something went wrong talking to the IMAP server; safe to show (never holds a secret).

    Temporary unless it is a ``PermanentError``: reconnect with backoff.
    """


class PermanentError(MailboxError):
    """Retrying soon will not help: a person must act. Reported once, retried slowly."""


class AuthError(PermanentError):
    """The server refused the login."""


class OAuthLoginRequired(AuthError):
    """The account's OAuth2 sign-in is gone (no tokens, refresh refused): a person must run
    ``forwarder login --account <account>``; the text says exactly what to run."""

    def __init__(self, message: str, *, account: str) -> None:
        super().__init__(message)
        self.account = account


class CertificateError(PermanentError):
    """The server's TLS certificate was refused (wrong CA, wrong host name, expired)."""


class FolderMissing(PermanentError):
    """A configured folder does not exist: a configuration problem, not a network one."""


class CommandRefused(MailboxError):
    """The server answered one command with NO or BAD (or a reply imapclient cannot read);
    the connection itself is fine. Some servers refuse, for good, to FETCH one particular
    message (Gmail "Some messages could not be FETCHed (Failure)", Yahoo, Exchange)."""


class ConnectionLost(MailboxError):
    """The server ended the session (BYE) or closed the connection."""


class CredentialsExpired(ConnectionLost):
    """The server ended the session because its access token expired: log in again now."""


@dataclass(frozen=True)
class FolderState:
    uidvalidity: int
    uidnext: int | None
    exists: int
    permanent_flags: frozenset[str] = frozenset()
    readonly: bool = True

    def can_store(self, keyword: str) -> bool:
        """RFC 3501 §7.1: a keyword sticks if PERMANENTFLAGS lists it, or lists ``\\*``."""
        return not self.readonly and (
            keyword in self.permanent_flags or "\\*" in self.permanent_flags
        )


@dataclass(frozen=True)
class Summary:
    """What the first FETCH tells about a mail: enough to decide, and to fetch its text.

    ``complete``: the whole header, BODYSTRUCTURE, flags and date were fetched. Otherwise
    (a large fetch with ``Reads``) only the header fields the rules read, the size, and
    the structure if the rules read it: ``Mailbox.fetch_text`` completes it first.
    """

    mail: Mail  # its header and MIME skeleton (no text yet); size and attachments known
    header: bytes
    structure: Part | None  # None when the server's BODYSTRUCTURE could not be read
    complete: bool = True


class Mailbox:
    """A connected, logged-in IMAP session; use as a context manager.

    ``commands`` and ``fetched_bytes`` count what this session cost, for tests and
    benchmarks.
    """

    def __init__(self, config: ImapConfig) -> None:
        self.config = config
        self.client: imapclient.IMAPClient | None = None
        self.selected: str | None = None
        self.commands = 0
        self.fetched_bytes = 0
        self.said: set[str] = set()  # notes already logged on this connection (say once)
        self._empty_wakeups = 0
        self.credentials: tokens.AccessToken | None = None  # the OAuth2 token it logged in with

    def __enter__(self) -> Mailbox:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- connection -----------------------------------------------------------------------
    def connect(self) -> None:
        c = self.config
        context = client_context(c.ca_file) if c.security != "plain" else None
        try:
            client = imapclient.IMAPClient(
                c.host,
                port=c.port,
                ssl=c.security == "tls",
                ssl_context=context,
                timeout=c.timeout,
            )
        except (OSError, IMAPClientError) as exc:
            raise _connect_error(c, exc) from None
        _keepalive(client)
        try:
            if c.security == "starttls":
                client.starttls(context)
            credentials = auth.authenticate(client, c)
        except (tokens.TokenError, auth.Refused, auth.Unavailable) as exc:  # OAuth2: worded
            _abort(client)
            if isinstance(exc, tokens.LoginRequired):
                raise OAuthLoginRequired(str(exc), account=exc.account) from None
            if isinstance(exc, tokens.TokenRefused | auth.Refused):
                raise AuthError(str(exc)) from None
            raise MailboxError(str(exc)) from None
        except LoginError as exc:
            _abort(client)
            # RFC 5530: [UNAVAILABLE] is the server's own trouble, worth retrying soon.
            if "UNAVAILABLE" in str(exc).upper():
                raise MailboxError(
                    f"IMAP server {c.host} cannot log anybody in just now: {_describe(exc)}"
                ) from None
            raise AuthError(
                f"IMAP server {c.host} refused the login for {c.username!r}: "
                "check imap.username and imap.password"
            ) from None
        except (OSError, IMAPClientError) as exc:
            _abort(client)
            if isinstance(exc, OSError):
                raise _connect_error(c, exc) from None
            raise MailboxError(f"IMAP login to {c.host} failed: {_describe(exc)}") from None
        self.client = client
        self.selected = None
        self.credentials = credentials
        logger.debug("connected to IMAP %s:%s as %s", c.host, c.port, c.username)

    def credentials_expiring(self, within: float) -> bool:
        """Will the access token this session logged in with expire within ``within`` s
        (plus the refresh margin)? Servers like Microsoft end a session when it does."""
        token = self.credentials
        return token is not None and token.valid_for(time.time()) < within + tokens.REFRESH_MARGIN

    def _token_expired(self, said: str) -> bool:
        """The server says this session's token expired: the next login must refresh it."""
        if (
            self.credentials is None
            or self.config.oauth2 is None
            or not sasl.says_token_expired(said)
        ):
            return False
        tokens.source_for(self.config.oauth2).invalidate(self.credentials)
        return True

    def close(self) -> None:
        """LOGOUT politely (bounded by the timeout) and close."""
        if self.client is not None:
            client, self.client, self.selected = self.client, None, None
            try:
                client.logout()
            except Exception:  # a dying connection has nothing more to tell us
                _abort(client)

    def abort(self) -> None:
        """Close at once without a word: for a connection that already failed or hangs."""
        if self.client is not None:
            client, self.client, self.selected = self.client, None, None
            _abort(client)

    def interrupt(self) -> None:
        """From another thread: make a blocked read return now (used to stop IDLE)."""
        client = self.client
        if client is None:
            return
        with contextlib.suppress(Exception):
            # The plain socket method: SSLSocket.shutdown would also drop the TLS object
            # under the feet of the thread still reading from it.
            socket.socket.shutdown(client.socket(), socket.SHUT_RDWR)

    @property
    def _client(self) -> imapclient.IMAPClient:
        if self.client is None:
            raise MailboxError("not connected")
        return self.client

    # -- folders --------------------------------------------------------------------------
    def select(self, folder: str, *, readonly: bool | None = None) -> FolderState:
        """SELECT (EXAMINE unless we must set a keyword) and report UIDVALIDITY/UIDNEXT.

        EXAMINE is used where possible so that nothing forwarder does can touch
        the user's flags; BODY.PEEK keeps \\Seen untouched in either case.
        """
        if readonly is None:
            readonly = self.config.keyword is None
        self.commands += 1
        try:
            info = self._client.select_folder(folder, readonly=readonly)
        except IMAPClientError as exc:
            if "NONEXISTENT" in str(exc).upper() or "doesn't exist" in str(exc).lower():
                raise FolderMissing(f"IMAP folder {folder!r} does not exist") from None
            raise MailboxError(f"cannot select {folder!r}: {_describe(exc)}") from None
        except OSError as exc:
            raise MailboxError(f"cannot select {folder!r}: {_describe(exc)}") from None
        self.selected = folder
        uidnext = info.get(b"UIDNEXT")
        return FolderState(
            uidvalidity=int(info[b"UIDVALIDITY"]),
            uidnext=int(uidnext) if uidnext is not None else None,
            exists=int(info.get(b"EXISTS", 0)),
            permanent_flags=frozenset(_flag(f) for f in info.get(b"PERMANENTFLAGS", ())),
            readonly=readonly or b"READ-ONLY" in info,
        )

    def highest_uid(self) -> int:
        """The highest UID in the selected folder, for servers that send no UIDNEXT."""
        uids = self._call(self._client.search, ["ALL"])
        return max(uids, default=0)

    def uids_from(self, first: int) -> list[int]:
        """UIDs from ``first`` up, ascending.

        ``UID SEARCH UID n:*`` returns the highest existing UID even when it is
        below n (RFC 3501 §6.4.8: '*' is the largest UID in use), so the
        result is filtered here rather than trusted.
        """
        found = self._call(self._client.search, ["UID", f"{max(first, 1)}:*"])
        return sorted(uid for uid in found if uid >= first)

    def search_likely(self, first: int, likely: Likely) -> list[int]:
        """UIDs from ``first`` up whose header holds one of ``likely``'s terms, ascending.

        ``UID n:* OR OR HEADER a x HEADER b y HEADER c z``: the ORs in prefix form, flat,
        since imapclient quotes nested lists without the charset. CHARSET UTF-8 only when
        a term needs it (US-ASCII is the only one every server must know).
        """
        terms = likely.terms
        criteria: list[str] = ["UID", f"{max(first, 1)}:*", *["OR"] * (len(terms) - 1)]
        for header, text in terms:
            criteria += ["HEADER", header, text]
        charset = None if all(text.isascii() for _, text in terms) else "UTF-8"
        found = self._call(self._client.search, criteria, charset)
        return sorted(uid for uid in found if uid >= first)

    # -- fetching -------------------------------------------------------------------------
    def fetch_summaries(
        self, uids: Sequence[int], folder: str, uidvalidity: int, reads: Reads | None = None
    ) -> list[Summary]:
        """What deciding about each mail needs, one FETCH per batch.

        Without ``reads``, or for a few UIDs, or when the rules read the body: the whole
        summary (size, flags, date, BODYSTRUCTURE, header). Otherwise only the size, the
        header fields in ``reads`` (and ``ALWAYS_FIELDS``), and BODYSTRUCTURE if the rules
        read it: in a backlog most mail is skipped on those, and parsing the rest of every
        summary was most of a catch-up's time. A mail whose fields hold 8-bit bytes gets
        the whole summary after all: how such a header is decoded depends on the charset
        declared elsewhere in the mail (``mime.parse_message``).
        """
        whole = reads is None or reads.body or len(uids) <= WHOLE_UP_TO
        found: list[Summary] = []
        for batch in _chunks(uids, FETCH_BATCH):
            if whole:
                response = self._fetch(batch, SUMMARY_ITEMS)
                found += _summaries(response, batch, folder, uidvalidity)
                continue
            assert reads is not None
            response = self._fetch(batch, field_items(reads))
            partial_ones: dict[int, Summary] = {}
            redo = []
            for uid in batch:
                data = response.get(uid)
                if data is None:  # expunged between SEARCH and FETCH
                    continue
                fields = _fields_value(data)
                if fields is None or not fields.isascii():
                    redo.append(uid)
                else:
                    partial_ones[uid] = _partial_summary(data, fields, folder, uid, uidvalidity)
            if redo:
                response = self._fetch(redo, SUMMARY_ITEMS)
                partial_ones.update(
                    (s.mail.uid, s) for s in _summaries(response, redo, folder, uidvalidity)
                )
            found += [partial_ones[uid] for uid in batch if uid in partial_ones]
        return found

    def fetch_text(self, summaries: Sequence[Summary]) -> list[Mail]:
        """The mails of ``summaries`` with the start of every readable text part.

        A summary that is not ``complete`` gets its whole header, structure, flags and
        date first (one FETCH for all of them). Mails whose text sits in the same sections
        (the usual case: a burst of alerts from one sender) share one FETCH. Attachments
        are never fetched.
        """
        incomplete = [s for s in summaries if not s.complete]
        if incomplete:
            mail = incomplete[0].mail
            uids = [s.mail.uid for s in incomplete]
            done = {
                s.mail.uid: s
                for batch in _chunks(uids, FETCH_BATCH)
                for s in _summaries(
                    self._fetch(batch, SUMMARY_ITEMS), batch, mail.folder, mail.uidvalidity
                )
            }
            summaries = [done.get(s.mail.uid, s) for s in summaries]
        limit = self.config.fetch_bytes
        groups: dict[tuple[Section, ...], list[Summary]] = {}
        for summary in summaries:
            groups.setdefault(partial.text_sections(summary.structure), []).append(summary)
        complete: dict[int, Mail] = {}
        for sections, members in groups.items():
            if not sections:  # nothing readable: the skeleton is all there is
                continue
            items = [
                f"BODY.PEEK[{s.name}]<0.{limit}>" if s.partial else f"BODY.PEEK[{s.name}]"
                for s in sections
            ]
            for batch in _chunks(members, FETCH_BATCH):
                response = self._fetch([s.mail.uid for s in batch], items)
                for summary in batch:
                    data = response.get(summary.mail.uid)
                    if data is None:  # expunged meanwhile: decide on what we have
                        continue
                    fetched = {s.name: _section_value(data, s) for s in sections}
                    raw = partial.rebuild(summary.header, summary.structure, fetched)
                    complete[summary.mail.uid] = dataclasses.replace(summary.mail, raw=raw)
        return [complete.get(s.mail.uid, s.mail) for s in summaries]

    def fetch(self, uids: Sequence[int], folder: str, uidvalidity: int) -> list[Mail]:
        """Both steps at once: each mail with its header and the start of its text."""
        return self.fetch_text(self.fetch_summaries(uids, folder, uidvalidity))

    def flags(self, uids: Sequence[int]) -> dict[int, frozenset[str]]:
        """Current flags of ``uids`` in the selected folder (for ``unless_read``)."""
        if not uids:
            return {}
        response = self._call(self._client.get_flags, list(uids))
        return {uid: frozenset(_flag(f) for f in flags) for uid, flags in response.items()}

    def add_keyword(self, uids: Sequence[int], keyword: str) -> None:
        """UID STORE +FLAGS.SILENT (keyword): never \\Seen or any other system flag."""
        if uids:
            self._call(self._client.add_flags, list(uids), [keyword], True)

    def noop(self) -> None:
        self._call(self._client.noop)

    # -- receipts (forwarder.delivery.receipts) --------------------------------------------
    def find_sent_folder(self) -> str | None:
        """The folder the server files sent mail in, or None.

        RFC 6154 ``\\Sent`` in a plain LIST (the RFC lets servers put the special-use
        attributes there, and Dovecot and Gmail do), then Gmail's older XLIST, then the
        usual names (imapclient's list: Sent, Sent Items, Sent Messages, under the personal
        namespace).
        """
        for flags, _delim, name in self._call(self._client.list_folders):
            if any(_flag(f).lower() == "\\sent" for f in flags):
                return str(name)
        if self._call(self._client.has_capability, "XLIST"):
            for flags, _delim, name in self._call(self._client.xlist_folders):
                if any(_flag(f).lower() == "\\sent" for f in flags):
                    return str(name)
        found = self._call(self._client.find_special_folder, SENT_FLAG)
        return str(found) if found else None

    def search_message_id(self, message_id: str) -> list[int]:
        """UIDs in the selected folder whose Message-ID (or the header Outlook.com moves a
        replaced one to) is ``message_id``."""
        criteria = ["OR", "HEADER", "Message-ID", message_id]
        criteria += ["HEADER", "X-Microsoft-Original-Message-ID", message_id]
        return sorted(self._call(self._client.search, criteria))

    def mark_seen(self, uids: Sequence[int]) -> None:
        """UID STORE +FLAGS.SILENT (\\Seen): needs the folder selected read-write."""
        if uids:
            self._call(self._client.add_flags, list(uids), [imapclient.SEEN], True)

    def ensure_folder(self, folder: str) -> None:
        """CREATE ``folder`` unless it exists."""
        if not self._call(self._client.folder_exists, folder):
            self._call(self._client.create_folder, folder)

    def move(self, uids: Sequence[int], folder: str) -> None:
        """UID MOVE (RFC 6851), else UID COPY + \\Deleted + UID EXPUNGE (RFC 4315), else
        COPY + \\Deleted (the server expunges when it likes)."""
        if not uids:
            return
        client = self._client
        if self._call(client.has_capability, "MOVE"):
            self._call(client.move, list(uids), folder)
            return
        self._call(client.copy, list(uids), folder)
        self._call(client.add_flags, list(uids), [imapclient.DELETED], True)
        if self._call(client.has_capability, "UIDPLUS"):
            self._call(client.uid_expunge, list(uids))

    # -- IDLE (RFC 2177) ------------------------------------------------------------------
    def supports_idle(self) -> bool:
        return bool(self._call(self._client.has_capability, "IDLE"))

    def idle_start(self) -> None:
        self._empty_wakeups = 0
        self._call(self._client.idle)

    def idle_wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s in IDLE; True if the server announced new mail.

        EXISTS carries a message count, not a UID: the caller must look with a UID
        SEARCH, which the round does anyway. Raises ``ConnectionLost`` on BYE or on a
        closed connection instead of returning [] in a busy loop.
        """
        started = time.monotonic()
        responses = self._call(self._client.idle_check, timeout)
        if bye := next((r for r in responses if _untagged(r, b"BYE")), None):
            said = b" ".join(p for p in bye[1:] if isinstance(p, bytes)).decode("ascii", "replace")
            if self._token_expired(said):
                raise CredentialsExpired(f"the IMAP server ended the session: {said}")
            raise ConnectionLost("the IMAP server ended the session (BYE)")
        if responses:
            self._empty_wakeups = 0
            return any(_untagged(r, b"EXISTS") for r in responses)
        if timeout >= _EARLY_MIN and time.monotonic() - started < timeout / 2:
            self._empty_wakeups += 1
            if self._empty_wakeups >= EMPTY_WAKEUPS:
                raise ConnectionLost("the IMAP server closed the connection")
        else:
            self._empty_wakeups = 0
        return False

    def idle_done(self) -> bool:
        """Leave IDLE; True if new mail was announced meanwhile.

        Servers flush pending notices before the tagged OK of DONE (Dovecot holds them
        about 0.5 s), so they must be read here too, not only in ``idle_wait``.
        """
        _text, responses = self._call(self._client.idle_done)
        return any(_untagged(r, b"EXISTS") for r in responses)

    # -- internals ------------------------------------------------------------------------
    def _fetch(self, uids: Sequence[int], items: Sequence[str]) -> dict[int, dict[bytes, Any]]:
        # A list, not a '3:7' range: imapclient keeps only the answers for the UIDs it
        # can read from the argument. Still one command and one round trip per batch.
        response = self._call(self._client.fetch, list(uids), list(items))
        for data in response.values():
            self.fetched_bytes += sum(len(v) for v in data.values() if isinstance(v, bytes))
        return response

    def _call(self, method: Callable[..., Any], *args: Any) -> Any:
        self.commands += 1
        try:
            return method(*args)
        except (OSError, IMAPClientAbortError) as exc:  # abort: the connection is unusable
            self._token_expired(str(exc))  # a BYE's words arrive as the abort's text
            raise MailboxError(f"IMAP {method.__name__} failed: {_describe(exc)}") from None
        except IMAPClientError as exc:
            raise CommandRefused(f"IMAP {method.__name__} failed: {_describe(exc)}") from None


def field_items(reads: Reads) -> list[str]:
    """The FETCH items of a summary limited to what the rules read (see ``fetch_summaries``)."""
    names = sorted({*reads.header_fields, *(name.lower() for name in ALWAYS_FIELDS)})
    listed = " ".join(_astring(name.upper()) for name in names)
    items = ["RFC822.SIZE", f"BODY.PEEK[HEADER.FIELDS ({listed})]<0.{HEADER_LIMIT}>"]
    if reads.structure:
        items.insert(1, "BODYSTRUCTURE")
    return items


def _astring(name: str) -> str:
    if _ATOM.fullmatch(name):
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _fields_value(data: dict[bytes, Any]) -> bytes | None:
    """The BODY[HEADER.FIELDS (…)] answer, whatever spelling of the list the server echoes;
    None if there is none (then the mail is fetched whole rather than decided on nothing)."""
    for key, value in data.items():
        if isinstance(key, bytes) and key.startswith(b"BODY[HEADER.FIELDS"):
            return value if isinstance(value, bytes) else None
    return None


def _summaries(
    response: dict[int, dict[bytes, Any]], uids: Sequence[int], folder: str, uidvalidity: int
) -> list[Summary]:
    found = []
    for uid in uids:
        data = response.get(uid)
        if data is not None:  # else expunged between SEARCH and FETCH
            found.append(_summary(data, folder, uid, uidvalidity))
    return found


def _partial_summary(
    data: dict[bytes, Any], fields: bytes, folder: str, uid: int, uidvalidity: int
) -> Summary:
    """A summary of the header fields the rules read (and the structure, if they read it)."""
    header = _cut(fields)
    structure = _structure(data, folder, uid)
    mail = Mail(
        raw=partial.rebuild(header, structure, {}),
        folder=folder,
        uid=uid,
        uidvalidity=uidvalidity,
        size=data.get(b"RFC822.SIZE"),
        attachment_hint=partial.has_attachment(structure) if structure is not None else None,
    )
    return Summary(mail, header, structure, complete=False)


def _cut(header: bytes) -> bytes:
    if len(header) >= HEADER_LIMIT:  # cut short: drop the broken last line
        header = header[: header.rfind(b"\n") + 1]
    return header


def _structure(data: dict[bytes, Any], folder: str, uid: int) -> Part | None:
    raw_structure = data.get(b"BODYSTRUCTURE")
    try:
        if raw_structure is not None:
            return partial.parse_bodystructure(raw_structure)
    except partial.StructureError as exc:
        logger.warning(
            "%s/%d: unreadable BODYSTRUCTURE (%s); fetching its text whole", folder, uid, exc
        )
    return None


def _summary(data: dict[bytes, Any], folder: str, uid: int, uidvalidity: int) -> Summary:
    header = _cut(data.get(b"BODY[HEADER]<0>") or data.get(b"BODY[HEADER]") or b"")
    structure = _structure(data, folder, uid)
    mail = Mail(
        raw=partial.rebuild(header, structure, {}),
        folder=folder,
        uid=uid,
        uidvalidity=uidvalidity,
        size=data.get(b"RFC822.SIZE"),
        flags=frozenset(_flag(f) for f in data.get(b"FLAGS", ())),
        internal_date=data.get(b"INTERNALDATE"),
        attachment_hint=partial.has_attachment(structure) if structure is not None else None,
    )
    return Summary(mail, header, structure)


def _section_value(data: dict[bytes, Any], section: Section) -> bytes:
    name = section.name.encode("ascii")
    keys = (b"BODY[%s]<0>" % name, b"BODY[%s]" % name)
    if not section.partial:
        keys = keys[::-1]
    for key in keys:
        value = data.get(key)
        if isinstance(value, bytes):
            return value
    return b""


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _untagged(response: object, name: bytes) -> bool:
    """``(b'BYE', …)`` or ``(3, b'EXISTS')`` as imapclient parses untagged responses."""
    if not isinstance(response, tuple) or not response:
        return False
    return response[0] == name or (len(response) > 1 and response[1] == name)


def _flag(flag: bytes | str) -> str:
    return flag.decode("ascii", "replace") if isinstance(flag, bytes) else flag


def _describe(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    text = str(exc) or exc.__class__.__name__
    return f"{exc.__class__.__name__}: {text}"


def _connect_error(c: ImapConfig, exc: BaseException) -> MailboxError:
    """One place that sorts connection failures by what the operator must do."""
    where = f"IMAP {c.host}:{c.port}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return CertificateError(
            f"{where}: the server's TLS certificate was refused ({exc.verify_message}): "
            "check imap.host and imap.ca_file"
        )
    if isinstance(exc, socket.gaierror):
        return MailboxError(f"cannot resolve the IMAP host {c.host!r}: {exc.strerror}")
    if isinstance(exc, ssl.SSLError):
        return MailboxError(
            f"TLS with {where} failed ({_describe(exc)}): does imap.security "
            f"({c.security}) match what port {c.port} speaks?"
        )
    return MailboxError(f"cannot connect to {where}: {_describe(exc)}")


def _keepalive(client: imapclient.IMAPClient) -> None:
    idle, interval, count = KEEPALIVE
    with contextlib.suppress(OSError, AttributeError):
        sock = client.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, interval)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, count)


def _abort(client: imapclient.IMAPClient) -> None:
    with contextlib.suppress(Exception):
        client.shutdown()
