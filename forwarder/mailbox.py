"""The IMAP edge: one connection to the user's mailbox, and nothing but I/O.

This module knows the protocol (RFC 3501, RFC 2177 IDLE) and how servers
differ; it does not know about checkpoints or rules. ``watcher`` decides what
to ask for, and turns the answers into work.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import imapclient
from imapclient.exceptions import IMAPClientError, LoginError

from forwarder.config import ImapConfig
from forwarder.mail import Mail
from forwarder.tls import client_context

logger = logging.getLogger(__name__)

#: UIDs per FETCH command: one round trip for a burst, but bounded line and response sizes.
FETCH_BATCH = 200


class MailboxError(Exception):
    """Something went wrong talking to the IMAP server; safe to show (never holds a secret)."""


class AuthError(MailboxError):
    """The server refused the login: retrying fast will not help, a person must act."""


class FolderMissing(MailboxError):
    """A configured folder does not exist: a configuration problem, not a network one."""


@dataclass(frozen=True)
class FolderState:
    uidvalidity: int
    uidnext: int | None
    exists: int


class Mailbox:
    """A connected, logged-in IMAP session; use as a context manager."""

    def __init__(self, config: ImapConfig) -> None:
        self.config = config
        self.client: imapclient.IMAPClient | None = None
        self.selected: str | None = None

    def __enter__(self) -> Mailbox:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
            if c.security == "starttls":
                client.starttls(context)
        except (OSError, IMAPClientError) as exc:
            raise MailboxError(
                f"cannot connect to IMAP {c.host}:{c.port}: {_describe(exc)}"
            ) from None
        try:
            client.login(c.username, c.password.reveal())
        except LoginError:
            _quietly_logout(client)
            raise AuthError(
                f"IMAP server {c.host} refused the login for {c.username!r}: "
                "check imap.username and imap.password"
            ) from None
        except (OSError, IMAPClientError) as exc:
            _quietly_logout(client)
            raise MailboxError(f"IMAP login to {c.host} failed: {_describe(exc)}") from None
        self.client = client
        self.selected = None
        logger.debug("connected to IMAP %s:%s as %s", c.host, c.port, c.username)

    def close(self) -> None:
        if self.client is not None:
            _quietly_logout(self.client)
            self.client = None
            self.selected = None

    @property
    def _client(self) -> imapclient.IMAPClient:
        if self.client is None:
            raise MailboxError("not connected")
        return self.client

    def select(self, folder: str) -> FolderState:
        """SELECT (read-only unless we must set a keyword) and report UIDVALIDITY/UIDNEXT.

        EXAMINE is used where possible so that nothing forwarder does can touch
        the user's flags; BODY.PEEK keeps \\Seen untouched in either case.
        """
        readonly = self.config.keyword is None
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
        )

    def highest_uid(self) -> int:
        """The highest UID in the selected folder, for servers that send no UIDNEXT."""
        uids = self._call(self._client.search, ["ALL"])
        return max(uids, default=0)

    def uids_after(self, last_uid: int) -> list[int]:
        """UIDs above ``last_uid``, ascending.

        ``UID SEARCH UID n:*`` returns the highest existing UID even when it is
        below n (RFC 3501 §6.4.8: '*' is the largest UID in use), so the
        result is filtered here rather than trusted.
        """
        found = self._call(self._client.search, ["UID", f"{last_uid + 1}:*"])
        return sorted(uid for uid in found if uid > last_uid)

    def fetch(self, uids: Sequence[int], folder: str, uidvalidity: int) -> Iterator[Mail]:
        """Headers and the start of the text of each mail, in batches; never the attachments."""
        limit = self.config.fetch_bytes
        items = [
            "RFC822.SIZE",
            "FLAGS",
            "INTERNALDATE",
            "BODY.PEEK[HEADER]",
            f"BODY.PEEK[TEXT]<0.{limit}>",
        ]
        for start in range(0, len(uids), FETCH_BATCH):
            batch = list(uids[start : start + FETCH_BATCH])
            response = self._call(self._client.fetch, batch, items)
            for uid in batch:
                data = response.get(uid)
                if data is None:  # expunged between SEARCH and FETCH
                    continue
                header = data.get(b"BODY[HEADER]") or b""
                text = data.get(b"BODY[TEXT]<0>") or data.get(b"BODY[TEXT]") or b""
                yield Mail(
                    raw=header + text,
                    folder=folder,
                    uid=uid,
                    uidvalidity=uidvalidity,
                    size=data.get(b"RFC822.SIZE"),
                    flags=frozenset(_flag(f) for f in data.get(b"FLAGS", ())),
                    internal_date=data.get(b"INTERNALDATE"),
                )

    def flags(self, uids: Sequence[int]) -> dict[int, frozenset[str]]:
        response = self._call(self._client.get_flags, list(uids))
        return {uid: frozenset(_flag(f) for f in flags) for uid, flags in response.items()}

    def noop(self) -> None:
        self._call(self._client.noop)

    def _call(self, method, *args):
        try:
            return method(*args)
        except (OSError, IMAPClientError) as exc:
            raise MailboxError(f"IMAP {method.__name__} failed: {_describe(exc)}") from None


def _flag(flag: bytes | str) -> str:
    return flag.decode("ascii", "replace") if isinstance(flag, bytes) else flag


def _describe(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout | TimeoutError):
        return "timed out"
    text = str(exc) or exc.__class__.__name__
    return f"{exc.__class__.__name__}: {text}"


def _quietly_logout(client: imapclient.IMAPClient) -> None:
    try:
        client.logout()
    except Exception:  # a dying connection has nothing more to tell us
        with contextlib.suppress(Exception):
            client.shutdown()
