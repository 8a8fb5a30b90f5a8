"""The state file: one SQLite database under every stage of forwarder.

What it must guarantee, and how:

* A mail is never forwarded twice and never skipped: per folder the
  ``(uidvalidity, last_uid)`` checkpoint advances in the same transaction that
  writes the outbox rows for the mails it covers (``record_batch``). A crash
  before the commit re-reads those mails; a crash after it finds them queued.
* Rows are keyed on ``(folder, uidvalidity, uid)``: RFC 3501 §2.3.1.1 says a
  UID means something only within one UIDVALIDITY.
* WAL with ``synchronous=FULL``: each commit is durable when it returns
  (about half a millisecond here), so there is no reason to risk less.
* No secret is ever written: the outbox keeps the *masked* Subject and the
  sender rebuilds the real one from the config at send time.
* Every outbox state change is its own commit (``pending → sending →
  in_doubt → sent``), and every request that reaches the final dot is logged
  in ``sends`` in the same commit as ``in_doubt``: that log, not the rows'
  states, is what ``limits`` count, since one row may go out more than once.
* A request whose 250 was never seen is a *doubt* (``doubts``): opened when it is
  found (a cut-off after the dot, a restart), settled by the move that takes the row
  out of ``in_doubt`` (a receipt, a resend) or by an alert; ``receipts`` keeps the
  evidence found over IMAP. ``status`` counts them by outcome.
* A write that fails because the disk is full (or will not write) raises
  ``StateUnwritable`` after the rollback: nothing half-written, the checkpoint where it
  was; the caller says so plainly and tries again later.
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from forwarder.delivery.policy import DAY, HOUR, MINUTE, Candidate, SendCounts
from forwarder.delivery.states import ANSWERABLE, DELIVERED, ORIGINALS, UNDER_WAY, State, check
from forwarder.records import Checkpoint, LedgerEntry, OutboxItem, OutboxRow, Receipt

#: 2: every folder-keyed row is keyed by account as well.
#: 3: outbox.proof, tables receipts and doubts (issue 11). Older files are brought up to it.
SCHEMA_VERSION = 3
DEFAULT_ACCOUNT = "default"

#: SQLite's primary result codes for "the disk is full" and "the disk would not write".
_SQLITE_FULL, _SQLITE_IOERR = 13, 10


class StateUnwritable(sqlite3.OperationalError):
    """The state file cannot be written: its disk is full, or failing. Nothing was written."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
-- Per folder: everything with UID <= last_uid in this UIDVALIDITY has been decided.
CREATE TABLE IF NOT EXISTS checkpoints (
    account     TEXT NOT NULL DEFAULT 'default',
    folder      TEXT NOT NULL,
    uidvalidity INTEGER NOT NULL,
    last_uid    INTEGER NOT NULL,
    updated_at  REAL NOT NULL,
    PRIMARY KEY (account, folder)
);
-- Every mail looked at and what was decided: the ledger behind 'never twice'.
CREATE TABLE IF NOT EXISTS handled (
    account     TEXT NOT NULL DEFAULT 'default',
    folder      TEXT NOT NULL,
    uidvalidity INTEGER NOT NULL,
    uid         INTEGER NOT NULL,
    message_id  TEXT NOT NULL,
    action      TEXT NOT NULL,      -- forward | skip | reply | error
    rule        TEXT,
    reason      TEXT NOT NULL,
    at          REAL NOT NULL,
    PRIMARY KEY (account, folder, uidvalidity, uid)
);
-- One row per SMS request: kind 'mail' (one per mail and recipient) or 'summary' (of held
-- mail; folder '' and a negative uid). state: pending → sending → in_doubt → sent, or
-- failed (permanent error, or max_age passed), cancelled (unless_read: the mail was read),
-- held (a limit was full; reported by the summary summary_id), duplicate (of duplicate_of).
CREATE TABLE IF NOT EXISTS outbox (
    id                INTEGER PRIMARY KEY,
    kind              TEXT NOT NULL DEFAULT 'mail',
    account           TEXT NOT NULL DEFAULT 'default',
    folder            TEXT NOT NULL,
    uidvalidity       INTEGER NOT NULL,
    uid               INTEGER NOT NULL,
    source_message_id TEXT NOT NULL,
    rule              TEXT,
    recipient         TEXT NOT NULL,
    to_addr           TEXT NOT NULL,
    sender            TEXT NOT NULL,  -- alpha-name used
    subject_masked    TEXT NOT NULL,  -- never the real Subject: the sender rebuilds it
    text              TEXT NOT NULL,
    mail_from         TEXT NOT NULL DEFAULT '',  -- the mail's sender and subject, for summaries
    mail_subject      TEXT NOT NULL DEFAULT '',
    message_id        TEXT NOT NULL UNIQUE,  -- ours, generated once, reused on every retry
    state             TEXT NOT NULL,
    reason            TEXT,  -- why held, duplicate, cancelled or failed, for status
    created_at        REAL NOT NULL,
    updated_at        REAL NOT NULL,
    due_at            REAL NOT NULL,  -- when it first came due (delay, quiet hours)
    not_before        REAL NOT NULL,  -- due_at, or later while retries back off
    unless_read       INTEGER NOT NULL DEFAULT 0,
    attempts          INTEGER NOT NULL DEFAULT 0,  -- SMTP tries
    retries           INTEGER NOT NULL DEFAULT 0,  -- rounds that ended in a transient failure
    attempted_at      REAL,
    last_error        TEXT,
    sent_at           REAL,
    dedup_key         TEXT,
    duplicate_of      INTEGER,
    summary_id        INTEGER,
    previous_ids      TEXT NOT NULL DEFAULT '',  -- Message-IDs of earlier tries (MSG:XXX resend)
    proof             TEXT NOT NULL DEFAULT '',  -- last attempt at the dot: copy | sent_folder | ''
    UNIQUE (account, folder, uidvalidity, uid, recipient)
);
CREATE INDEX IF NOT EXISTS outbox_state ON outbox (state, not_before);
-- One message in two watched folders (or delivered twice) must cost one SMS.
CREATE INDEX IF NOT EXISTS handled_message_id ON handled (message_id);
CREATE INDEX IF NOT EXISTS outbox_dedup ON outbox (dedup_key) WHERE dedup_key IS NOT NULL;
-- Every time a request reached the final dot (and so may be billed): what the limits count.
-- A separate log, because one row may go more than once (on_doubt: resend, MSG:XXX).
CREATE TABLE IF NOT EXISTS sends (
    id        INTEGER PRIMARY KEY,
    outbox_id INTEGER NOT NULL,
    at        REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS sends_at ON sends (at);
-- Gateway replies (BANNED, FORBIDDEN, NO LIST, MSG:XXX, AUTH, ...), kept 90 days.
CREATE TABLE IF NOT EXISTS replies (
    id                 INTEGER PRIMARY KEY,
    account            TEXT NOT NULL DEFAULT 'default',
    folder             TEXT NOT NULL,
    uidvalidity        INTEGER NOT NULL,
    uid                INTEGER NOT NULL,
    received_at        REAL NOT NULL,
    code               TEXT NOT NULL,
    msg_code           TEXT,
    detail             TEXT NOT NULL,
    request_message_id TEXT,
    tie                TEXT NOT NULL,
    UNIQUE (account, folder, uidvalidity, uid)
);
-- Evidence that the SMTP server accepted a request: its copy to the owner, or its entry
-- in the Sent folder (delivery.receipts), keyed on the request's Message-ID.
CREATE TABLE IF NOT EXISTS receipts (
    message_id TEXT PRIMARY KEY,
    how        TEXT NOT NULL,
    folder     TEXT NOT NULL DEFAULT '',
    uid        INTEGER NOT NULL DEFAULT 0,
    found_at   REAL NOT NULL
);
-- Every request found in doubt (no 250 seen after the final dot) and how it ended:
-- receipt (confirmed, not sent again), resent (sent again without proof), alerted.
CREATE TABLE IF NOT EXISTS doubts (
    id         INTEGER PRIMARY KEY,
    outbox_id  INTEGER NOT NULL,
    message_id TEXT NOT NULL,
    began_at   REAL NOT NULL,
    proof      TEXT NOT NULL DEFAULT '',
    settled_at REAL,
    outcome    TEXT
);
CREATE INDEX IF NOT EXISTS doubts_open ON doubts (outbox_id) WHERE settled_at IS NULL;
CREATE TABLE IF NOT EXISTS blocked (
    recipient TEXT PRIMARY KEY,
    since     REAL NOT NULL,
    reason    TEXT NOT NULL
);
-- An open circuit stops all sending (AUTH, FORBIDDEN, NO LIST) until a probe SMS gets through.
CREATE TABLE IF NOT EXISTS circuit (
    name         TEXT PRIMARY KEY,   -- 'gateway'
    code         TEXT NOT NULL,
    detail       TEXT NOT NULL,
    opened_at    REAL NOT NULL,
    probe_at     REAL NOT NULL,      -- when one probe SMS may go
    probe_id     TEXT,               -- Message-ID of the probe in flight
    probe_sent   REAL
);
"""


@dataclass(frozen=True)
class ReplyRow:
    id: int
    account: str
    folder: str
    uidvalidity: int
    uid: int
    received_at: float
    code: str
    msg_code: str | None
    detail: str
    request_message_id: str | None
    tie: str


@dataclass(frozen=True)
class Doubt:
    """An open doubt: the row ``outbox_id`` is ``in_doubt`` since ``began_at``."""

    outbox_id: int
    message_id: str
    began_at: float
    proof: str


@dataclass(frozen=True)
class Circuit:
    code: str
    detail: str
    opened_at: float
    probe_at: float
    probe_id: str | None
    probe_sent: float | None


def _create_private(path: Path) -> None:
    """A new state file is the owner's alone: its directory 0700, the file 0600.

    It holds what mail came from whom (never a secret, but private all the same).
    SQLite gives its -wal and -shm files the mode of the database, so creating the
    file first, with 0600, is enough. Existing files and directories are left as
    they are: the owner may have chosen their modes.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))


class Store:
    """Thread-safe access to the state file (one connection, one lock: the load is tiny)."""

    def __init__(self, path: str | Path, *, clock=time.time) -> None:
        self.path = Path(path)
        self.clock = clock
        if str(path) != ":memory:":
            _create_private(self.path)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            str(path), isolation_level=None, check_same_thread=False, timeout=30
        )
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        # 512 KiB of page cache instead of SQLite's 2 MiB: the working set (checkpoints, the
        # due rows, recent ledger pages) is small and the OS caches the file anyway; with the
        # default the daemon's RSS grew by the cache filling up over the first 10 000 mails.
        self._db.execute("PRAGMA cache_size=-512")
        with self._lock:
            version = self._schema_version()
            if version is not None and version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"{self.path} was written by a newer forwarder (schema {version}); "
                    "upgrade forwarder"
                )
            if version == 1:
                self._migrate_from_1()
            self._db.executescript(_SCHEMA)
        if version is not None and version < 3:
            self._migrate_to_3(version)
        elif version is None:
            self.set_meta("schema_version", str(SCHEMA_VERSION))
        # An up-to-date file is not written to here: status must open it on a full disk.

    def _schema_version(self) -> int | None:
        """The version a state file was written with; None for a new file."""
        found = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
        ).fetchone()
        if found is None:
            return None
        row = self._db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return int(row["value"]) if row else None

    def _migrate_from_1(self) -> None:
        """Schema 1 → 2: the folder-keyed tables get an ``account`` column (``default``).

        SQLite cannot change a primary key in place, so each table is rebuilt: renamed,
        created anew, copied, dropped; all in one transaction, so a crash midway leaves
        schema 1 as it was.
        """
        tables = ("checkpoints", "handled", "outbox", "replies")
        with self.transaction() as db:
            for index in ("outbox_state", "handled_message_id", "outbox_dedup"):
                db.execute(f"DROP INDEX IF EXISTS {index}")
            for table in tables:
                db.execute(f"ALTER TABLE {table} RENAME TO {table}_v1")
            for statement in _statements(_SCHEMA):
                db.execute(statement)
            for table in tables:
                columns = [r["name"] for r in db.execute(f"PRAGMA table_info({table}_v1)")]
                names = ", ".join(columns)
                db.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM {table}_v1")
                db.execute(f"DROP TABLE {table}_v1")
            db.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")

    def _migrate_to_3(self, version: int) -> None:
        """Schema 2 → 3: ``outbox.proof`` (old rows get '': nothing can prove their last
        attempt, so a row left ``in_doubt`` goes straight to ``delivery.on_doubt``); the
        tables ``receipts`` and ``doubts`` came from ``_SCHEMA``'s ``IF NOT EXISTS``. One
        commit; ``migrated_from`` remembers where the file came from."""
        with self.transaction() as db:
            columns = {r["name"] for r in db.execute("PRAGMA table_info(outbox)")}
            if "proof" not in columns:  # a schema-1 file was rebuilt with it already
                db.execute("ALTER TABLE outbox ADD COLUMN proof TEXT NOT NULL DEFAULT ''")
            for key, value in (("schema_version", SCHEMA_VERSION), ("migrated_from", version)):
                db.execute(
                    "INSERT INTO meta (key, value) VALUES (?, ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (key, str(value)),
                )

    def account(self, name: str) -> AccountStore:
        """This state file as one account's intake sees it (its checkpoints and ledger)."""
        return AccountStore(self, name)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE … COMMIT under the lock; ROLLBACK on any exception.

        A COMMIT that fails (disk full, I/O error, a deferred constraint) may leave the
        transaction open, and then every later BEGIN would fail for good: roll it back too.
        """
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.OperationalError) and _unwritable(exc):
                    raise StateUnwritable(
                        f"the state file {self.path} cannot be written: {exc}"
                    ) from exc
                raise

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    # -- meta ---------------------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0]["value"] if rows else None

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    # -- checkpoints --------------------------------------------------------------------------
    def checkpoint(self, folder: str, *, account: str = DEFAULT_ACCOUNT) -> Checkpoint | None:
        rows = self._query(
            "SELECT uidvalidity, last_uid FROM checkpoints WHERE account = ? AND folder = ?",
            (account, folder),
        )
        return Checkpoint(rows[0]["uidvalidity"], rows[0]["last_uid"]) if rows else None

    def checkpoints(self) -> dict[tuple[str, str], tuple[Checkpoint, float]]:
        """Every checkpoint: (account, folder) → (checkpoint, when it last moved)."""
        rows = self._query("SELECT * FROM checkpoints ORDER BY account, folder")
        return {
            (r["account"], r["folder"]): (
                Checkpoint(r["uidvalidity"], r["last_uid"]),
                r["updated_at"],
            )
            for r in rows
        }

    def baseline(
        self, folder: str, uidvalidity: int, last_uid: int, *, account: str = DEFAULT_ACCOUNT
    ) -> None:
        """Start (or restart, after a UIDVALIDITY change) a folder without forwarding its mail."""
        with self.transaction() as db:
            self._set_checkpoint(db, account, folder, uidvalidity, last_uid)

    def _set_checkpoint(
        self, db: sqlite3.Connection, account: str, folder: str, uidvalidity: int, last_uid: int
    ) -> None:
        db.execute(
            "INSERT INTO checkpoints (account, folder, uidvalidity, last_uid, updated_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (account, folder) DO UPDATE SET "
            "uidvalidity = excluded.uidvalidity, last_uid = excluded.last_uid, "
            "updated_at = excluded.updated_at",
            (account, folder, uidvalidity, last_uid, self.clock()),
        )

    def forwarded_as(self, message_id: str) -> str | None:
        """``folder/UID`` (``account:folder/UID`` beyond the default account) of a mail with
        this Message-ID that was forwarded, in any account: one message costs one SMS."""
        rows = self._query(
            "SELECT account, folder, uid FROM handled WHERE message_id = ? "
            "AND action = 'forward' LIMIT 1",
            (message_id,),
        )
        if not rows:
            return None
        r = rows[0]
        where = f"{r['folder']}/{r['uid']}"
        return where if r["account"] == DEFAULT_ACCOUNT else f"{r['account']}:{where}"

    def handled_uids(
        self, folder: str, uidvalidity: int, uids: Iterable[int], *, account: str = DEFAULT_ACCOUNT
    ) -> set[int]:
        wanted = list(uids)
        found: set[int] = set()
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._query(
                "SELECT uid FROM handled WHERE account = ? AND folder = ? AND uidvalidity = ? "
                f"AND uid IN ({marks})",
                (account, folder, uidvalidity, *chunk),
            )
            found.update(r["uid"] for r in rows)
        return found

    def record_batch(
        self,
        folder: str,
        uidvalidity: int,
        handled: Sequence[LedgerEntry],
        outbox: Sequence[OutboxItem],
        *,
        advance_to: int | None,
        account: str = DEFAULT_ACCOUNT,
        receipts: Sequence[Receipt] = (),
    ) -> None:
        """Write decisions, queue SMS, record receipts and advance the checkpoint: all or
        nothing.

        ``advance_to`` never moves the checkpoint backwards; None leaves it alone
        (used for late arrivals below the checkpoint).
        """
        now = self.clock()
        with self.transaction() as db:
            self._add_receipts(db, folder, receipts, now)
            db.executemany(
                "INSERT OR IGNORE INTO handled "
                "(account, folder, uidvalidity, uid, message_id, action, rule, reason, at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        account,
                        folder,
                        uidvalidity,
                        h.uid,
                        h.message_id,
                        h.action,
                        h.rule,
                        h.reason,
                        now,
                    )
                    for h in handled
                ],
            )
            db.executemany(
                _INSERT_OUTBOX,
                [_outbox_values(account, folder, uidvalidity, o, now) for o in outbox],
            )
            if advance_to is not None:
                current = db.execute(
                    "SELECT uidvalidity, last_uid FROM checkpoints "
                    "WHERE account = ? AND folder = ?",
                    (account, folder),
                ).fetchone()
                stale = current is None or current["uidvalidity"] != uidvalidity
                if stale or advance_to > current["last_uid"]:
                    self._set_checkpoint(db, account, folder, uidvalidity, advance_to)

    # -- outbox -------------------------------------------------------------------------------
    def due(self, now: float | None = None, limit: int = 100) -> list[OutboxRow]:
        """Pending SMS whose time has come: summaries first (they report what waited longest),
        then oldest first."""
        now = self.clock() if now is None else now
        rows = self._query(
            "SELECT * FROM outbox WHERE state = ? AND not_before <= ? "
            "ORDER BY kind = 'summary' DESC, not_before, id LIMIT ?",
            (State.PENDING.value, now, limit),
        )
        return [_outbox_row(r) for r in rows]

    def next_due(self) -> float | None:
        """When the next pending row comes due (``not_before``), or None if none is pending."""
        rows = self._query(
            "SELECT MIN(not_before) AS t FROM outbox WHERE state = ?", (State.PENDING.value,)
        )
        return rows[0]["t"]

    def outbox_in(self, *states: State) -> list[OutboxRow]:
        marks = ",".join("?" * len(states))
        rows = self._query(
            f"SELECT * FROM outbox WHERE state IN ({marks}) ORDER BY id", [s.value for s in states]
        )
        return [_outbox_row(r) for r in rows]

    def outbox_row(self, row_id: int) -> OutboxRow | None:
        rows = self._query("SELECT * FROM outbox WHERE id = ?", (row_id,))
        return _outbox_row(rows[0]) if rows else None

    # Named transitions: each is one commit, checked against ``delivery.states.TRANSITIONS``
    # in the same transaction, so an illegal move raises instead of being written.
    def _move(
        self,
        db: sqlite3.Connection,
        row_id: int,
        new: State,
        sets: str = "",
        params: Sequence[Any] = (),
    ) -> None:
        found = db.execute("SELECT state FROM outbox WHERE id = ?", (row_id,)).fetchone()
        if found is None:
            raise KeyError(f"no outbox row {row_id}")
        check(found["state"], new)
        db.execute(
            f"UPDATE outbox SET state = ?, updated_at = ?{sets} WHERE id = ?",
            (new.value, self.clock(), *params, row_id),
        )
        if found["state"] == State.IN_DOUBT and new is not State.IN_DOUBT:
            # Whatever takes a row out of doubt settles its open doubt, in the same commit.
            self._settle_doubt(db, row_id, _DOUBT_OUTCOMES.get(new, "gave up"))

    def start_attempt(self, row_id: int) -> None:
        """``sending``: one more SMTP attempt begins (nothing is sent before this commit)."""
        with self.transaction() as db:
            self._move(
                db,
                row_id,
                State.SENDING,
                ", attempts = attempts + 1, attempted_at = ?",
                (self.clock(),),
            )

    def before_dot(self, row_id: int, *, proof: str = "") -> None:
        """``in_doubt``, and one more entry in the sends log, in one commit: from the final
        dot on, the gateway may have the request (and bill it). ``proof``: what a receipt of
        this attempt would be (``delivery.receipts``), '' when none can come."""
        now = self.clock()
        with self.transaction() as db:
            self._move(db, row_id, State.IN_DOUBT, ", proof = ?", (proof,))
            db.execute("INSERT INTO sends (outbox_id, at) VALUES (?, ?)", (row_id, now))

    def mark_sent(self, row_id: int, *, how: str | None = None) -> None:
        """``sent``: the server said 250 after the final dot (or ``how`` a receipt proved it)."""
        with self.transaction() as db:
            self._move(
                db,
                row_id,
                State.SENT,
                ", sent_at = ?, reason = COALESCE(?, reason)",
                (self.clock(), how),
            )

    def mark_in_doubt(self, row_id: int, *, error: str) -> None:
        """Still ``in_doubt``, with the error that cut the send off after the final dot; the
        doubt is opened in the same commit."""
        with self.transaction() as db:
            self._move(db, row_id, State.IN_DOUBT, ", last_error = ?", (error,))
            self._open_doubt(db, row_id)

    # -- doubts and receipts ------------------------------------------------------------------
    def open_doubt(self, row_id: int) -> bool:
        """Open a doubt for an ``in_doubt`` row (after a restart); False if one is open, or
        if the row was alerted about already."""
        with self.transaction() as db:
            return self._open_doubt(db, row_id)

    def _open_doubt(self, db: sqlite3.Connection, row_id: int) -> bool:
        row = db.execute("SELECT message_id, proof FROM outbox WHERE id = ?", (row_id,)).fetchone()
        if (
            row is None
            or db.execute(
                "SELECT 1 FROM doubts WHERE outbox_id = ? "
                "AND (settled_at IS NULL OR outcome = 'alerted')",
                (row_id,),
            ).fetchone()
        ):
            return False  # one is open, or a person was told already (on_doubt: alert)
        db.execute(
            "INSERT INTO doubts (outbox_id, message_id, began_at, proof) VALUES (?, ?, ?, ?)",
            (row_id, row["message_id"], self.clock(), row["proof"]),
        )
        return True

    def open_doubts(self) -> dict[int, Doubt]:
        rows = self._query(
            "SELECT outbox_id, message_id, began_at, proof FROM doubts WHERE settled_at IS NULL"
        )
        return {r["outbox_id"]: Doubt(**dict(r)) for r in rows}

    def settle_doubt(self, row_id: int, outcome: str) -> None:
        """Close the row's open doubt without moving the row (``delivery.on_doubt: alert``)."""
        with self.transaction() as db:
            self._settle_doubt(db, row_id, outcome)

    def _settle_doubt(self, db: sqlite3.Connection, row_id: int, outcome: str) -> None:
        db.execute(
            "UPDATE doubts SET settled_at = ?, outcome = ? "
            "WHERE outbox_id = ? AND settled_at IS NULL",
            (self.clock(), outcome, row_id),
        )

    def doubt_counts(self) -> dict[str, int]:
        """Doubts by outcome ('open' for those not settled yet), for status and the log."""
        rows = self._query(
            "SELECT COALESCE(outcome, 'open') AS outcome, COUNT(*) AS n FROM doubts "
            "GROUP BY COALESCE(outcome, 'open')"
        )
        return {r["outcome"]: int(r["n"]) for r in rows}

    def add_receipt(self, receipt: Receipt) -> bool:
        """Record a receipt found outside a batch (a Sent-folder search); False if known."""
        with self.transaction() as db:
            return self._add_receipts(db, receipt.folder, [receipt], self.clock()) > 0

    def _add_receipts(
        self, db: sqlite3.Connection, folder: str, receipts: Sequence[Receipt], now: float
    ) -> int:
        added = 0
        for r in receipts:
            added += db.execute(
                "INSERT OR IGNORE INTO receipts (message_id, how, folder, uid, found_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (r.message_id, r.how, r.folder or folder, r.uid, now),
            ).rowcount
        return added

    def receipts_for(self, message_ids: Iterable[str]) -> dict[str, str]:
        """Message-ID → how its receipt was found, for those of ``message_ids`` that have one."""
        wanted = list(message_ids)
        found: dict[str, str] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._query(
                f"SELECT message_id, how FROM receipts WHERE message_id IN ({marks})", chunk
            )
            found.update((r["message_id"], r["how"]) for r in rows)
        return found

    def is_request(self, message_id: str) -> bool:
        """Whether ``message_id`` is (or was) one of our SMS requests' Message-IDs."""
        return self.outbox_by_message_id(message_id) is not None

    def prune_receipts(self, older_than: float) -> int:
        with self.transaction() as db:
            return db.execute("DELETE FROM receipts WHERE found_at < ?", (older_than,)).rowcount

    def retry_later(self, row_id: int, *, error: str, not_before: float) -> None:
        """Back to ``pending`` after a transient failure, not before ``not_before``."""
        with self.transaction() as db:
            self._move(
                db,
                row_id,
                State.PENDING,
                ", last_error = ?, retries = retries + 1, not_before = ?",
                (error, not_before),
            )

    def wait(self, row_id: int, *, error: str | None = None, reason: str | None = None) -> None:
        """``pending`` without a new backoff: the row waits (halted sender, unless_read, a
        restart after a send that never reached the final dot)."""
        with self.transaction() as db:
            self._move(
                db,
                row_id,
                State.PENDING,
                ", last_error = COALESCE(?, last_error), reason = COALESCE(?, reason)",
                (error, reason),
            )

    def fail(self, row_id: int, *, error: str) -> None:
        """``failed`` for good: a permanent error a person must look at."""
        with self.transaction() as db:
            self._move(db, row_id, State.FAILED, ", last_error = ?, reason = ?", (error, error))

    def settle(
        self, row_id: int, state: State, reason: str, *, duplicate_of: int | None = None
    ) -> None:
        """A final state reached without sending: held, duplicate or cancelled."""
        with self.transaction() as db:
            self._move(db, row_id, state, ", reason = ?, duplicate_of = ?", (reason, duplicate_of))

    def expire(self, due_before: float, reason: str) -> list[OutboxRow]:
        """Pending rows due before ``due_before`` become ``failed`` (delivery.max_age)."""
        with self.transaction() as db:
            rows = db.execute(
                "SELECT * FROM outbox WHERE state = ? AND due_at < ? ORDER BY id",
                (State.PENDING.value, due_before),
            ).fetchall()
            check(State.PENDING, State.FAILED)
            db.executemany(
                "UPDATE outbox SET state = ?, reason = ?, updated_at = ? WHERE id = ?",
                [(State.FAILED.value, reason, self.clock(), r["id"]) for r in rows],
            )
        return [_outbox_row(r) for r in rows]

    def send_counts(self, now: float | None = None) -> SendCounts:
        """Requests that reached the final dot in the last minute, hour and day."""
        now = self.clock() if now is None else now
        row = self._query(
            "SELECT COALESCE(SUM(at > ?), 0) AS minute, COALESCE(SUM(at > ?), 0) AS hour, "
            "COUNT(*) AS day FROM sends WHERE at > ? AND at <= ?",
            (now - MINUTE, now - HOUR, now - DAY, now),
        )[0]
        return SendCounts(minute=row["minute"], hour=row["hour"], day=row["day"])

    def prune_sends(self, older_than: float) -> int:
        with self.transaction() as db:
            return db.execute("DELETE FROM sends WHERE at < ?", (older_than,)).rowcount

    def dedup_candidates(self, dedup_key: str, recipient: str, exclude: int) -> list[Candidate]:
        """Other rows with this dedup key and recipient that went out or were held."""
        marks = ",".join("?" * len(ORIGINALS))
        rows = self._query(
            "SELECT id, state, created_at FROM outbox WHERE dedup_key = ? AND recipient = ? "
            f"AND id != ? AND state IN ({marks}) ORDER BY id",
            (dedup_key, recipient, exclude, *sorted(ORIGINALS)),
        )
        return [Candidate(r["id"], State(r["state"]), r["created_at"]) for r in rows]

    def held_unsummarised(self) -> list[OutboxRow]:
        rows = self._query(
            "SELECT * FROM outbox WHERE state = ? AND summary_id IS NULL ORDER BY id",
            (State.HELD.value,),
        )
        return [_outbox_row(r) for r in rows]

    def summary_pending(self) -> bool:
        marks = ",".join("?" * len(UNDER_WAY))
        rows = self._query(
            f"SELECT 1 FROM outbox WHERE kind = 'summary' AND state IN ({marks}) LIMIT 1",
            sorted(UNDER_WAY),
        )
        return bool(rows)

    def add_summary(
        self, item: OutboxItem, held_ids: Sequence[int] = (), *, kind: str = "summary"
    ) -> int:
        """Queue an SMS of forwarder's own (``kind`` summary, or alert) and mark the held rows
        it reports, in one commit."""
        now = self.clock()
        with self.transaction() as db:
            lowest = db.execute("SELECT MIN(uid) FROM outbox WHERE folder = ''").fetchone()[0]
            uid = min(lowest or 0, 0) - 1  # summaries: folder '' and a fresh negative uid
            summary = dataclasses.replace(item, uid=uid, kind=kind)
            cursor = db.execute(
                _INSERT_OUTBOX, _outbox_values(DEFAULT_ACCOUNT, "", 0, summary, now)
            )
            summary_id = int(cursor.lastrowid or 0)
            db.executemany(
                "UPDATE outbox SET summary_id = ?, updated_at = ? WHERE id = ?",
                [(summary_id, now, held) for held in held_ids],
            )
        return summary_id

    def reset_backoff(self) -> int:
        """Make rows waiting out a retry backoff due again (after a restart: try at once)."""
        with self.transaction() as db:
            return db.execute(
                "UPDATE outbox SET not_before = due_at WHERE state = ? "
                "AND not_before > due_at AND retries > 0",
                (State.PENDING.value,),
            ).rowcount

    def waiting_for_read(self) -> int:
        """unless_read SMS not sent yet: their delay runs, or IMAP has not answered yet."""
        rows = self._query(
            "SELECT COUNT(*) AS n FROM outbox WHERE state = ? AND unless_read = 1",
            (State.PENDING.value,),
        )
        return int(rows[0]["n"])

    def recent(self, limit: int = 20) -> list[OutboxRow]:
        rows = self._query("SELECT * FROM outbox ORDER BY id DESC LIMIT ?", (limit,))
        return [_outbox_row(r) for r in rows]

    def count_states(self) -> dict[State, int]:
        rows = self._query("SELECT state, COUNT(*) AS n FROM outbox GROUP BY state")
        return {State(r["state"]): r["n"] for r in rows}

    def sent_since(self, since: float) -> int:
        marks = ",".join("?" * len(DELIVERED))
        rows = self._query(
            f"SELECT COUNT(*) AS n FROM outbox WHERE state IN ({marks}) "
            "AND COALESCE(sent_at, updated_at) >= ?",
            (*sorted(DELIVERED), since),
        )
        return int(rows[0]["n"])

    # -- the reply tracker: replies, blocked recipients, the circuit ---------------------------
    def add_reply(
        self,
        folder: str,
        uidvalidity: int,
        uid: int,
        *,
        code: str,
        msg_code: str | None,
        detail: str,
        request_message_id: str | None,
        tie: str,
        received_at: float,
        account: str = DEFAULT_ACCOUNT,
    ) -> bool:
        """Record a reply once (keyed on account/folder/uidvalidity/uid); False if already."""
        with self.transaction() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO replies (account, folder, uidvalidity, uid, received_at, "
                "code, msg_code, detail, request_message_id, tie) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    account,
                    folder,
                    uidvalidity,
                    uid,
                    received_at,
                    code,
                    msg_code,
                    detail,
                    request_message_id,
                    tie,
                ),
            )
            return cursor.rowcount == 1

    def replies(self, limit: int = 20, *, request_message_id: str | None = None) -> list[ReplyRow]:
        if request_message_id is None:
            rows = self._query("SELECT * FROM replies ORDER BY id DESC LIMIT ?", (limit,))
        else:
            rows = self._query(
                "SELECT * FROM replies WHERE request_message_id = ? ORDER BY id DESC LIMIT ?",
                (request_message_id, limit),
            )
        return [ReplyRow(**dict(r)) for r in rows]

    def prune_replies(self, older_than: float) -> int:
        with self.transaction() as db:
            return db.execute("DELETE FROM replies WHERE received_at < ?", (older_than,)).rowcount

    def sent_requests(self, since: float) -> list[sqlite3.Row]:
        """Requests that reached the gateway (or may have) since ``since``, for tying replies."""
        marks = ",".join("?" * len(ANSWERABLE))
        return self._query(
            "SELECT o.*, EXISTS (SELECT 1 FROM replies r WHERE r.request_message_id = o.message_id)"
            f" AS answered FROM outbox o WHERE o.state IN ({marks}) "
            "AND COALESCE(o.sent_at, o.updated_at) >= ? ORDER BY o.id",
            (*sorted(ANSWERABLE), since),
        )

    def resend_as(self, row_id: int, message_id: str, not_before: float) -> None:
        """Queue a row again under a new Message-ID, remembering the old one."""
        with self.transaction() as db:
            self._move(
                db,
                row_id,
                State.PENDING,
                ", previous_ids = TRIM(previous_ids || ' ' || message_id), "
                "message_id = ?, not_before = ?",
                (message_id, not_before),
            )

    def outbox_by_message_id(self, message_id: str) -> OutboxRow | None:
        rows = self._query(
            "SELECT * FROM outbox WHERE message_id = ? "
            "OR ' ' || previous_ids || ' ' LIKE '% ' || ? || ' %'",
            (message_id, message_id),
        )
        return _outbox_row(rows[0]) if rows else None

    # -- blocked recipients (BANNED) ----------------------------------------------------------
    def block(self, recipient: str, reason: str) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO blocked (recipient, since, reason) VALUES (?, ?, ?)",
                (recipient, self.clock(), reason),
            )

    def unblock(self, recipient: str) -> bool:
        with self.transaction() as db:
            return db.execute("DELETE FROM blocked WHERE recipient = ?", (recipient,)).rowcount > 0

    def blocked(self) -> dict[str, tuple[float, str]]:
        rows = self._query("SELECT * FROM blocked ORDER BY since")
        return {r["recipient"]: (r["since"], r["reason"]) for r in rows}

    # -- the circuit (AUTH, FORBIDDEN, NO LIST) -------------------------------------------------
    def circuit(self) -> Circuit | None:
        rows = self._query("SELECT * FROM circuit WHERE name = 'gateway'")
        if not rows:
            return None
        values = dict(rows[0])
        del values["name"]
        return Circuit(**values)

    def open_circuit(self, code: str, detail: str, probe_at: float) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO circuit (name, code, detail, opened_at, probe_at) "
                "VALUES ('gateway', ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                "code = excluded.code, detail = excluded.detail, probe_at = excluded.probe_at, "
                "probe_id = NULL, probe_sent = NULL",
                (code, detail, self.clock(), probe_at),
            )

    def set_probe(self, probe_id: str | None, probe_at: float | None = None) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE circuit SET probe_id = ?, probe_sent = CASE WHEN ? IS NULL THEN NULL "
                "ELSE ? END, probe_at = COALESCE(?, probe_at) WHERE name = 'gateway'",
                (probe_id, probe_id, self.clock(), probe_at),
            )

    def close_circuit(self) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM circuit WHERE name = 'gateway'")


#: How a doubt ends when its row leaves ``in_doubt`` for each state.
_DOUBT_OUTCOMES = {State.SENT: "receipt", State.PENDING: "resent", State.SENDING: "resent"}


def _unwritable(exc: sqlite3.OperationalError) -> bool:
    """A full disk or a failing one (SQLITE_FULL, SQLITE_IOERR and its extended codes)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (_SQLITE_FULL, _SQLITE_IOERR)
    text = str(exc).lower()
    return "disk is full" in text or "disk i/o error" in text


_INSERT_OUTBOX = (
    "INSERT OR IGNORE INTO outbox (kind, account, folder, uidvalidity, uid, source_message_id, "
    "rule, recipient, to_addr, sender, subject_masked, text, mail_from, mail_subject, "
    "message_id, state, created_at, updated_at, due_at, not_before, unless_read, dedup_key) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _statements(script: str) -> Iterator[str]:
    """The SQL statements of a script, one at a time (executescript would COMMIT first)."""
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending.strip()
            pending = ""


class AccountStore:
    """One account's view of the state file: the calls intake and the checkpoints make,
    with the account filled in. Meta keys get the account's prefix beyond ``default``."""

    def __init__(self, store: Store, account: str) -> None:
        self.store = store
        self.name = account
        self._meta_prefix = "" if account == DEFAULT_ACCOUNT else f"{account}:"

    def checkpoint(self, folder: str) -> Checkpoint | None:
        return self.store.checkpoint(folder, account=self.name)

    def baseline(self, folder: str, uidvalidity: int, last_uid: int) -> None:
        self.store.baseline(folder, uidvalidity, last_uid, account=self.name)

    def handled_uids(self, folder: str, uidvalidity: int, uids: Iterable[int]) -> set[int]:
        return self.store.handled_uids(folder, uidvalidity, uids, account=self.name)

    def record_batch(
        self,
        folder: str,
        uidvalidity: int,
        handled: Sequence[LedgerEntry],
        outbox: Sequence[OutboxItem],
        *,
        advance_to: int | None,
        receipts: Sequence[Receipt] = (),
    ) -> None:
        self.store.record_batch(
            folder,
            uidvalidity,
            handled,
            outbox,
            advance_to=advance_to,
            account=self.name,
            receipts=receipts,
        )

    def is_request(self, message_id: str) -> bool:
        return self.store.is_request(message_id)  # a copy may land in any account's folder

    def forwarded_as(self, message_id: str) -> str | None:
        return self.store.forwarded_as(message_id)  # across accounts: one message, one SMS

    def get_meta(self, key: str) -> str | None:
        return self.store.get_meta(self._meta_prefix + key)

    def set_meta(self, key: str, value: str) -> None:
        self.store.set_meta(self._meta_prefix + key, value)


def _outbox_values(account: str, folder: str, uidvalidity: int, o: OutboxItem, now: float) -> tuple:
    return (
        o.kind,
        account,
        folder,
        uidvalidity,
        o.uid,
        o.source_message_id,
        o.rule,
        o.recipient,
        o.to_addr,
        o.sender,
        o.subject_masked,
        o.text,
        o.mail_from,
        o.mail_subject,
        o.message_id,
        o.state.value,
        now,
        now,
        o.not_before,
        o.not_before,
        int(o.unless_read),
        o.dedup_key,
    )


def _outbox_row(r: sqlite3.Row) -> OutboxRow:
    values = dict(r)
    values["unless_read"] = bool(values["unless_read"])
    values["state"] = State(values["state"])
    return OutboxRow(**values)
