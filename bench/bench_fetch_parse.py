"""Benchmark the parse of FETCH responses: imapclient's parser against a regex tokenizer.

Run by hand::

    .venv/bin/python bench/bench_fetch_parse.py [--mails 1000] [--rounds 5]

``--mails`` realistic mails (bench/common.py) are put in a private Dovecot, and one UID FETCH
of them is recorded as imaplib hands it to imapclient (the list of lines and literals), for
two sets of items:

* ``summary``: what forwarder fetched for every new mail before issue 12: size, flags, date,
  BODYSTRUCTURE and the whole header;
* ``fields``: size and the header fields a rule set reads (``BODY.PEEK[HEADER.FIELDS (…)]``).

Timed per mail, from the recorded data (no network): imapclient's
``response_parser.parse_fetch_response`` (what ``IMAPClient.fetch`` runs), and a candidate
written here, a tokenizer built on one compiled regular expression that yields the same
values (checked for equality on every mail first). Also timed: a whole ``IMAPClient.fetch``
round trip (server work, socket, imaplib's line reader and the parse), to show what share of
a FETCH the parse is.
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

from common import USER, DovecotServer, append_many, realistic_mail
from imapclient.response_parser import parse_fetch_response
from imapclient.response_types import BodyData

SUMMARY = [
    "UID",
    "RFC822.SIZE",
    "FLAGS",
    "INTERNALDATE",
    "BODYSTRUCTURE",
    "BODY.PEEK[HEADER]<0.65536>",
]
FIELDS = [
    "UID",
    "RFC822.SIZE",
    "BODY.PEEK[HEADER.FIELDS (FROM TO CC REPLY-TO SUBJECT MESSAGE-ID CONTENT-TYPE "
    "AUTO-SUBMITTED X-AUTOREPLY X-AUTORESPOND PRECEDENCE)]<0.65536>",
]

# -- the candidate: one regex finds every token outside literals --------------------------
_TOKEN = re.compile(
    rb'\s*(?:(?P<open>\()|(?P<close>\))|"(?P<quoted>(?:[^"\\]|\\.)*)"'
    rb"|(?P<atom>(?:[^\s()\"\[\]]+(?:\[[^\]]*\])?(?:<\d+>)?)))"
)
_LITERAL_END = re.compile(rb"\{\d+\}$")


def _tokens(data: list[Any]) -> list[Any]:
    """Flat tokens: b'(' / b')' markers as ints, bytes for atoms, literals as (bytes,)."""
    out: list[Any] = []
    for item in data:
        if isinstance(item, tuple):
            line, literal = item
            line = _LITERAL_END.sub(b"", line)
            _scan(line, out)
            out.append((literal,))
        else:
            _scan(item, out)
    return out


_OPEN, _CLOSE = 0, 1


def _scan(line: bytes, out: list[Any]) -> None:
    for match in _TOKEN.finditer(line):
        kind = match.lastgroup
        if kind == "open":
            out.append(_OPEN)
        elif kind == "close":
            out.append(_CLOSE)
        elif kind == "quoted":
            out.append((re.sub(rb"\\(.)", rb"\1", match.group("quoted")),))
        else:
            out.append(match.group("atom"))


def _value(tokens: list[Any], i: int) -> tuple[Any, int]:
    token = tokens[i]
    if token == _OPEN:
        items = []
        i += 1
        while tokens[i] != _CLOSE:
            value, i = _value(tokens, i)
            items.append(value)
        return tuple(items), i + 1
    if isinstance(token, tuple):
        return token[0], i + 1
    if token.isdigit():
        return int(token), i + 1
    if token == b"NIL":
        return None, i + 1
    return token, i + 1


def regex_parse(data: list[Any]) -> dict[int, dict[bytes, Any]]:
    tokens = _tokens(data)
    found: dict[int, dict[bytes, Any]] = {}
    i = 0
    while i < len(tokens):
        seq = int(tokens[i])  # imaplib took the word FETCH out already
        items, i = _value(tokens, i + 1)
        entry: dict[bytes, Any] = {b"SEQ": seq}
        uid = seq
        for k in range(0, len(items), 2):
            key, value = items[k].upper(), items[k + 1]
            if key == b"UID":
                uid = value
            elif key == b"BODYSTRUCTURE":
                entry[key] = BodyData.create(value)
            elif key == b"INTERNALDATE":
                entry[key] = value  # a datetime in imapclient: left out of the comparison
            else:
                entry[key] = value
        found[uid] = entry
    return found


# -- measuring ------------------------------------------------------------------------------
def record(client: Any, uids: list[int], items: list[str]) -> list[Any]:
    """The untagged FETCH data exactly as ``IMAPClient.fetch`` passes it to its parser."""
    imap = client._imap
    tag = imap._command("UID", "FETCH", ",".join(map(str, uids)), "(" + " ".join(items) + ")")
    typ, data = imap._command_complete("FETCH", tag)
    assert typ == "OK", data
    typ, data = imap._untagged_response(typ, data, "FETCH")
    return data


def per_mail_us(
    parse: Callable[[list[Any]], Any], data: list[Any], mails: int, rounds: int
) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        parse(data)
        times.append(time.perf_counter() - started)
    return statistics.median(times) / mails * 1e6


def same(a: dict, b: dict) -> bool:
    for uid, entry in a.items():
        other = b.get(uid)
        if other is None:
            return False
        for key, value in entry.items():
            if key in (b"INTERNALDATE", b"SEQ"):
                continue
            got = other.get(key)
            if key == b"FLAGS":
                value, got = tuple(value), tuple(got)
            if key == b"BODYSTRUCTURE":
                value, got = repr(value), repr(got)
            if value != got:
                print("differs:", uid, key, repr(value)[:80], repr(got)[:80])
                return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mails", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(), DovecotServer(tls=False) as server:
        server.create_folder(USER, "Parse")
        append_many(
            server, "Parse", (realistic_mail(n, f"Report {n}", "p") for n in range(args.mails))
        )
        client = server.connect(USER)
        client.select_folder("Parse", readonly=True)
        uids = sorted(client.search("ALL"))
        print(f"FETCH of {len(uids)} mails, per mail (median of {args.rounds} rounds):")
        for name, items in (("summary", SUMMARY), ("fields", FIELDS)):
            data = record(client, uids, items)
            size = sum(len(x[1]) + len(x[0]) if isinstance(x, tuple) else len(x) for x in data)
            reference = parse_fetch_response(data, True, True)
            candidate = regex_parse(data)
            equal = same(reference, candidate)
            started = time.perf_counter()
            client.fetch(uids, items)  # warm-up
            trips = []
            for _ in range(args.rounds):
                started = time.perf_counter()
                client.fetch(uids, items)
                trips.append(time.perf_counter() - started)
            trip = statistics.median(trips) / len(uids) * 1e6
            imapclient_us = per_mail_us(
                lambda d: parse_fetch_response(d, True, True), data, len(uids), args.rounds
            )
            regex_us = per_mail_us(regex_parse, data, len(uids), args.rounds)
            print(
                f"  {name:8} {size / len(uids):6.0f} bytes/mail: whole IMAPClient.fetch "
                f"{trip:6.1f} µs; imapclient parser {imapclient_us:6.1f} µs; regex tokenizer "
                f"{regex_us:6.1f} µs (same values: {'yes' if equal else 'NO'})"
            )
        client.logout()


if __name__ == "__main__":
    main()
