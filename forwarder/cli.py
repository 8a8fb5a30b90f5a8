"""The command line: the only place that turns errors into exit codes.

Each verb imports what it needs when it runs (``--help`` needs argparse alone, ``check``
the config reader and the rules, not the daemon, the store or the transformer): a CLI
that took half a second to say its usage would be a slow ``ExecStartPre`` and a slow
habit. ``bench/bench_cli.py`` measures it.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from forwarder import __version__
from forwarder.configfile import LOG_FORMATS

if TYPE_CHECKING:
    from forwarder.config import Config
    from forwarder.oauth.profiles import OAuth2Settings
    from forwarder.store import Store

EX_OK = 0
EX_FAIL = 1
EX_USAGE = 64
EX_NOINPUT = 66
EX_TEMPFAIL = 75
EX_CONFIG = 78

DEFAULT_CONFIG = "/etc/forwarder/forwarder.yaml"

logger = logging.getLogger("forwarder")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EX_USAGE
    return int(args.func(args))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="forwarder",
        description="Forward the e-mail that matters to your phone as SMS, through the AlphaSMS "
        "Email2SMS gateway. Watches an IMAP mailbox, decides by the rules in a YAML file.",
        epilog="Exit codes: 0 ok, 1 failure (e.g. a rule test failed), 75 temporary failure, "
        "78 configuration error. See README.md for the config file.",
    )
    parser.add_argument("--version", action="version", version=f"forwarder {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, help: str, func) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.add_argument(
            "--config",
            "-c",
            default=DEFAULT_CONFIG,
            metavar="FILE",
            help=f"the YAML config file (default {DEFAULT_CONFIG})",
        )
        p.set_defaults(func=func)
        return p

    run = command("run", "Run the daemon: watch IMAP, forward important mail as SMS.", _run)
    run.add_argument(
        "--log-level",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="override log_level from the config",
    )
    run.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        help="override log_format from the config: plain lines (default, for journald) "
        "or one JSON object per line",
    )

    command("check", "Validate the config file without touching any server.", _check)
    command(
        "test",
        "Run the rule tests written in the config's tests: section (exit 1 on failure).",
        _test,
    )

    trial = command(
        "try", "Dry run on one saved mail: which rule decides, and the exact SMS.", _try
    )
    trial.add_argument(
        "mail", metavar="MAIL.eml", help="a message file (RFC 5322, e.g. saved .eml)"
    )
    trial.add_argument("--folder", default="INBOX", help="pretend the mail is in this folder")
    trial.add_argument("--json", action="store_true", help="one JSON object for scripts")
    trial.add_argument("--explain", action="store_true", help="show every rule tried and why")

    unblock = command(
        "unblock", "Allow SMS to a number the gateway reported as BANNED again.", _unblock
    )
    unblock.add_argument("number", help="the phone number (or list:ID), as shown by status")

    login = command(
        "login",
        "Sign in to the mail provider (OAuth2) once; the tokens are saved beside the state file.",
        _login,
    )
    login.add_argument(
        "--account",
        default="default",
        metavar="NAME",
        help="which sign-in: the account's name ('default' for imap:; smtp shares an "
        "account's unless smtp.oauth2 is given) or 'smtp' (smtp.oauth2)",
    )

    status = command("status", "What was forwarded lately, and the state of every SMS.", _status)
    status.add_argument("--json", action="store_true", help="one JSON object for scripts")
    status.add_argument("--limit", type=int, default=10, help="how many recent SMS to list")
    return parser


def _load(args: argparse.Namespace) -> Config | int:
    from forwarder import config as config_module
    from forwarder.config import ConfigError

    try:
        return config_module.load(args.config)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(
            f"{args.config}: {len(exc.problems)} problem(s); nothing was started", file=sys.stderr
        )
        return EX_CONFIG


def _run(args: argparse.Namespace) -> int:
    config = _load(args)
    if isinstance(config, int):
        return config

    from forwarder.ops import logs

    logs.SCRUBBER.update(logs.config_secrets(config))
    logs.configure_logging(args.log_level or config.log_level, args.log_format or config.log_format)
    for warning in config.warnings:
        logger.warning("%s", warning)
    import sqlite3

    from forwarder import crashpoints
    from forwarder.daemon import Daemon  # imports the I/O edges only when they are needed

    if crashpoints.armed():
        logger.warning(
            "%s=%s: this process kills itself there (a test); unset it in production",
            crashpoints.ENV,
            crashpoints.armed(),
        )

    try:
        daemon = Daemon(config)
    except sqlite3.DatabaseError as exc:
        # A corrupt file will not heal by restarting: say so and stop the restart loop.
        logger.error(
            "the state file %s is unusable (%s); move it aside to start afresh "
            "(forwarder then forwards only mail that arrives from now on)",
            config.state,
            exc,
        )
        return EX_CONFIG
    except RuntimeError as exc:  # a state file from a newer forwarder
        logger.error("%s", exc)
        return EX_CONFIG
    except OSError as exc:
        logger.error("cannot open the state file %s: %s", config.state, exc)
        return EX_TEMPFAIL
    return daemon.run()


def _check(args: argparse.Namespace) -> int:
    config = _load(args)
    if isinstance(config, int):
        return config
    for warning in config.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if len(config.accounts) == 1:
        where = f"folders {', '.join(config.imap.folders)}"
    else:
        where = "accounts " + ", ".join(
            f"{a.name} ({', '.join(a.folders)})" for a in config.accounts
        )
    print(
        f"{args.config}: OK — {len(config.ruleset.names)} rule(s), "
        f"{where}, SMS via {config.gateway.mode.value} mode"
    )
    for account in config.accounts:
        polled = [f for f in account.folders if f not in account.idle_folders]
        if account.idle and polled:
            name = "" if len(config.accounts) == 1 else f"{account.name}: "
            print(
                f"  {name}imap.max_connections {account.max_connections} allows IDLE on "
                f"{len(account.idle_folders)} folder(s); polled every "
                f"{account.poll_interval:g} s instead: {', '.join(polled)}"
            )
    for entry in oauth2_status(config):
        if entry["signed_in"] is False:  # a note, not an error: check never needs the tokens
            print(
                f"note: OAuth2 account {entry['account']} ({entry['username']}) is not "
                f"signed in yet: run {entry['login_command']}"
            )
    return EX_OK


def oauth2_accounts(config: Config) -> dict[str, OAuth2Settings]:
    """Every OAuth2 sign-in the config uses, by account name."""
    found: dict[str, OAuth2Settings] = {}
    for settings in (*(a.oauth2 for a in config.accounts), config.smtp.oauth2):
        if settings is not None:
            found.setdefault(settings.account, settings)
    return found


def _login(args: argparse.Namespace) -> int:
    config = _load(args)
    if isinstance(config, int):
        return config
    from forwarder.oauth.login import LoginFailed, login

    accounts = oauth2_accounts(config)
    settings = accounts.get(args.account)
    if settings is None:
        known = ", ".join(accounts) or "none: set imap.auth: oauth2 (or smtp.auth: oauth2)"
        print(
            f"forwarder login: {args.config} has no OAuth2 account {args.account!r} "
            f"(accounts: {known})",
            file=sys.stderr,
        )
        return EX_USAGE
    if settings.token_command:
        print(
            f"forwarder login: account {args.account} takes its tokens from token_command; "
            "sign in with that tool instead",
            file=sys.stderr,
        )
        return EX_USAGE
    try:
        login(settings, out=lambda line: print(line, flush=True))
    except LoginFailed as exc:
        print(f"forwarder login: {exc}", file=sys.stderr)
        return EX_FAIL
    except KeyboardInterrupt:
        print("forwarder login: interrupted; nothing was saved", file=sys.stderr)
        return EX_FAIL
    return EX_OK


def oauth2_status(config: Config) -> list[dict]:
    """Per OAuth2 account: signed in or not, and when its access token expires (no tokens)."""
    from forwarder.oauth import tokenfile

    out = []
    for name, settings in oauth2_accounts(config).items():
        entry: dict = {
            "account": name,
            "username": settings.username,
            "provider": settings.provider or "token_command",
            "token_file": str(settings.token_file),
        }
        if settings.token_command:
            entry["signed_in"] = None  # the command's business
        else:
            try:
                data = tokenfile.load(settings.token_file)
            except tokenfile.TokenFileError as exc:
                data, entry["error"] = None, str(exc)
            entry["signed_in"] = bool(data and data.get("refresh_token"))
            entry["access_token_expires_at"] = data.get("expires_at") if data else None
            entry["saved_at"] = data.get("saved_at") if data else None
            entry["signed_in_at"] = data.get("signed_in_at") if data else None
            entry["login_command"] = settings.login_command
        out.append(entry)
    return out


def _test(args: argparse.Namespace) -> int:
    config = _load(args)
    if isinstance(config, int):
        return config
    from forwarder.rules.ruletests import run_rule_tests

    results = run_rule_tests(config.ruleset)
    for result in results:
        print(result)
        if not result.passed:
            for line in result.details():
                print(f"    {line}")
    failed = sum(not r.passed for r in results)
    print(f"{len(results) - failed} passed, {failed} failed")
    if not results:
        print(f"{args.config}: no tests: section; add example mails to pin your rules")
    return EX_FAIL if failed else EX_OK


def _try(args: argparse.Namespace) -> int:
    config = _load(args)
    if isinstance(config, int):
        return config
    try:
        raw = Path(args.mail).read_bytes()
    except OSError as exc:
        print(f"{args.mail}: cannot read: {exc.strerror or exc}", file=sys.stderr)
        return EX_NOINPUT
    from forwarder.gateway.request import new_message_id
    from forwarder.mail import Mail
    from forwarder.pipeline import plan

    mail = Mail(raw, folder=args.folder, flags=frozenset())
    # The daemon's own plan, so try can never disagree with run about a mail.
    planned = plan(
        mail,
        config,
        datetime.now(UTC),
        explain=args.explain,
        new_message_id=lambda: new_message_id(config.delivery.message_id_domain),
    )
    decision = planned.decision
    forwarded = planned.sms is not None and bool(planned.outbox)
    result: dict = {
        "action": "forward"
        if forwarded
        else ("skip" if decision.action == "forward" else decision.action),
        "rule": decision.rule,
        "reason": planned.entry.reason,
        "sms": None,
    }
    if args.explain:
        result["trace"] = list(decision.trace)
    if forwarded and planned.sms is not None:
        sms, first = planned.sms, planned.outbox[0]
        result["sms"] = {
            "to": first.to_addr,
            "subject": first.subject_masked,
            "text": sms.text,
            "length": sms.length,
            "encoding": sms.encoding,
            "segments": sms.segments,
        }
        if len(planned.outbox) > 1:
            result["sms"]["also_to"] = [item.to_addr for item in planned.outbox[1:]]
        if decision.options.delay:
            result["sms"]["delay_seconds"] = decision.options.delay
        if decision.hold_until is not None:
            result["sms"]["hold_until"] = decision.hold_until.isoformat()
    if args.json:
        import json

        print(json.dumps(result, ensure_ascii=False, indent=2))
        return EX_OK
    print(f"decision: {result['action']} — {result['reason']}")
    for line in result.get("trace", []):
        print(f"  {line}")
    sms_info = result["sms"]
    if sms_info:
        print(
            f"to:       {sms_info['to']}" + "".join(f", {a}" for a in sms_info.get("also_to", []))
        )
        print(f"subject:  {sms_info['subject']}")
        print(
            f"length:   {sms_info['length']} characters, {sms_info['encoding']}, "
            f"{sms_info['segments']} SMS segment(s)"
        )
        print("text:")
        for line in sms_info["text"].splitlines() or [""]:
            print(f"  | {line}")
    return EX_OK


def _account_key(account: str, key: str) -> str:
    """A meta key as ``AccountStore`` writes it for ``account``."""
    from forwarder.store import DEFAULT_ACCOUNT

    return key if account == DEFAULT_ACCOUNT else f"{account}:{key}"


def _ago(timestamp: float | None) -> str:
    if not timestamp:
        return "never"
    when = datetime.fromtimestamp(timestamp).astimezone()
    delta = time.time() - timestamp
    relative = f"{_duration(delta)} ago" if delta >= 0 else f"in {_duration(-delta)}"
    return f"{when:%Y-%m-%d %H:%M:%S} ({relative})"


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _unblock(args: argparse.Namespace) -> int:
    config = _load(args)
    if isinstance(config, int):
        return config
    from forwarder.gateway.account import normalize_phone

    try:
        # Modes c and e send to a saved list, blocked as 'list:<id>' (status prints it so).
        listed = args.number.strip()
        number = listed if listed.startswith("list:") else normalize_phone(args.number)
    except ValueError as exc:
        print(f"forwarder unblock: {exc}", file=sys.stderr)
        return EX_USAGE
    from forwarder.store import Store

    store = Store(config.state)
    try:
        removed = store.unblock(number)
    finally:
        store.close()
    if not removed:
        print(f"{number} was not blocked")
        return EX_OK
    print(f"{number} unblocked; SMS held for it go out on the next round (reload to hurry it)")
    return EX_OK


def _gateway_errors(store: Store, limit: int) -> list[dict]:
    from forwarder.gateway.replies import ReplyCode, explain

    out = []
    for reply in store.replies(limit):
        code = ReplyCode(reply.code)
        row = (
            store.outbox_by_message_id(reply.request_message_id or "")
            if reply.request_message_id
            else None
        )
        label = f"MSG:{reply.msg_code}" if code is ReplyCode.MSG and reply.msg_code else code.value
        out.append(
            {
                "code": label,
                "explanation": explain(code),
                "detail": reply.detail,
                "received_at": reply.received_at,
                "message_id": row.source_message_id if row else None,
                "sms_message_id": reply.request_message_id,
                "tied_by": reply.tie,
            }
        )
    return out


def _daemon_alive(store: Store) -> bool:
    """Whether the process that last started on this state file still runs.

    Start and stop times alone say "up" after a crash; the PID settles it. A process
    of another user (the service's DynamicUser) answers EPERM, which still means alive.
    """
    started, stopped = store.get_meta("started_at"), store.get_meta("stopped_at")
    pid = store.get_meta("pid")
    if not started or (stopped and float(stopped) >= float(started)) or not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except PermissionError:
        return True
    except (ProcessLookupError, ValueError):
        return False
    return True


#: Below this much free space the state file's disk is reported as full: a batch with its
#: SMS, or one step of a send, needs a few pages (and the WAL may have to grow).
LOW_DISK = 1024 * 1024


def _state_disk(path: Path) -> dict:
    import shutil

    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        return {"free_bytes": None, "full": False}
    return {"free_bytes": free, "full": free < LOW_DISK}


def status_data(config: Config, store: Store, limit: int = 10) -> dict:
    """Everything ``status`` shows, as plain data (no secrets: subjects are stored masked)."""
    import dataclasses

    from forwarder.store import DEFAULT_ACCOUNT

    def meta_time(key: str) -> float | None:
        value = store.get_meta(key)
        return float(value) if value else None

    circuit = store.circuit()
    midnight = datetime.now().astimezone().replace(hour=0, minute=0, second=0, microsecond=0)

    return {
        "state_file": str(config.state),
        "oauth2": oauth2_status(config),
        "started_at": meta_time("started_at"),
        "running": _daemon_alive(store),
        "stopped_at": meta_time("stopped_at"),
        "last_poll": max(
            (t for a in config.accounts if (t := meta_time(_account_key(a.name, "last_poll")))),
            default=None,
        ),
        "last_poll_error": "; ".join(
            f"{a.name}: {e}" if len(config.accounts) > 1 else e
            for a in config.accounts
            if (e := store.get_meta(_account_key(a.name, "last_poll_error")))
        )
        or None,
        # Folders of the default account by name, others' as "account:folder".
        "folders": {
            (folder if account == DEFAULT_ACCOUNT else f"{account}:{folder}"): {
                "uidvalidity": cp.uidvalidity,
                "last_uid": cp.last_uid,
                "updated_at": at,
            }
            for (account, folder), (cp, at) in store.checkpoints().items()
        },
        "accounts": {
            account.name: {
                "host": account.host,
                "folders": list(account.folders),
                "idle_folders": list(account.idle_folders),
                "last_poll": meta_time(_account_key(account.name, "last_poll")),
                "last_poll_error": store.get_meta(_account_key(account.name, "last_poll_error"))
                or None,
            }
            for account in config.accounts
        },
        "state_disk": _state_disk(config.state),
        # Why the running daemon stopped sending (wrong smtp settings), until a reload.
        "smtp_halted": store.get_meta("smtp_halted") or None,
        "outbox": store.count_states(),
        # Requests whose 250 was never seen, by how each ended: receipt (confirmed by its
        # copy or its Sent entry, not sent again), resent (no proof: maybe a second SMS),
        # alerted (delivery.on_doubt: alert), open (still looking for the receipt).
        "receipts": config.receipts.value,
        "doubts": store.doubt_counts(),
        "waiting_for_read": store.waiting_for_read(),  # delay + unless_read, not yet decided
        "sent_last_24h": store.sent_since(time.time() - 86400),
        "sent_today": store.sent_since(midnight.timestamp()),
        # What the limits count: requests that reached the final dot, in sliding windows.
        "limit_counts": dataclasses.asdict(store.send_counts(time.time())),
        "limits": {
            "per_minute": config.limits.per_minute,
            "per_hour": config.limits.per_hour,
            "per_day": config.limits.per_day,
        },
        "circuit": None
        if circuit is None
        else {
            "code": circuit.code,
            "detail": circuit.detail,
            "opened_at": circuit.opened_at,
            "probe_at": circuit.probe_at,
            "probe_in_flight": circuit.probe_id,
        },
        "blocked": [
            {"recipient": number, "since": since, "reason": reason}
            for number, (since, reason) in store.blocked().items()
        ],
        "gateway_errors": _gateway_errors(store, limit),
        "recent": [
            {
                "id": row.id,
                "state": row.state,
                "rule": row.rule,
                "to": row.to_addr,
                "subject": row.subject_masked,
                "source_message_id": row.source_message_id,
                "message_id": row.message_id,
                "text": row.text,
                "created_at": row.created_at,
                "sent_at": row.sent_at,
                "attempts": row.attempts,
                "last_error": row.last_error,
                "reason": row.reason,  # why held, duplicate, cancelled or failed
            }
            for row in store.recent(limit)
        ],
    }


def _status(args: argparse.Namespace) -> int:
    config = _load(args)
    if isinstance(config, int):
        return config
    if not config.state.exists():
        print(f"no state yet: {config.state} does not exist (has forwarder run?)", file=sys.stderr)
        return EX_TEMPFAIL
    from forwarder.delivery.states import FINAL, State
    from forwarder.store import Store

    store = Store(config.state)
    try:
        data = status_data(config, store, args.limit)
    finally:
        store.close()
    if args.json:
        import json

        print(json.dumps(data, ensure_ascii=False, indent=2))
        return EX_OK
    running = data["running"]
    print(f"daemon:     {'up since ' + _ago(data['started_at']) if running else 'not running'}")
    disk = data["state_disk"]
    if disk["full"]:
        print(
            f"STATE FILE DISK FULL: {disk['free_bytes']} bytes free where {data['state_file']} "
            "lives. forwarder cannot record progress: new mail waits on the server (nothing is "
            "lost) and no SMS goes out until there is room again"
        )
    print(f"last poll:  {_ago(data['last_poll'])}")
    if data["last_poll_error"]:
        print(f"IMAP error: {data['last_poll_error']}")
    if data["smtp_halted"]:
        print(
            f"SENDING STOPPED: {data['smtp_halted']}; queued SMS wait. Fix the smtp settings, "
            "then reload (systemctl reload forwarder) or restart"
        )
    for entry in data["oauth2"]:
        who = f"{entry['account']} ({entry['provider']}, {entry['username']})"
        if entry["signed_in"] is None:
            print(f"oauth2:     {who}: tokens from token_command")
        elif entry["signed_in"]:
            print(
                f"oauth2:     {who}: signed in {_ago(entry['signed_in_at'])}; tokens saved "
                f"{_ago(entry['saved_at'])}"
            )
        else:
            print(f"oauth2:     {who}: NOT signed in: run {entry['login_command']}")
    for folder, cp in data["folders"].items():
        print(
            f"folder:     {folder}  UIDVALIDITY {cp['uidvalidity']}, "
            f"handled up to UID {cp['last_uid']}"
        )
    counts = ", ".join(f"{n} {state}" for state, n in sorted(data["outbox"].items())) or "empty"
    limits = data["limits"]
    if data["waiting_for_read"]:
        print(
            f"waiting:    {data['waiting_for_read']} SMS delayed, cancelled if the mail is read "
            "first (unless_read)"
        )
    used = data["limit_counts"]
    print(f"outbox:     {counts}; {data['sent_today']} sent today")
    doubts = data["doubts"]
    if doubts:
        print(
            f"in doubt:   {doubts.get('receipt', 0)} confirmed by a receipt, "
            f"{doubts.get('resent', 0)} resent without one (a second SMS possible), "
            f"{doubts.get('alerted', 0)} alerted, {doubts.get('open', 0)} open "
            f"(receipts: {data['receipts']})"
        )
    print(
        f"limits:     {used['minute']}/{limits['per_minute']} in the last minute, "
        f"{used['hour']}/{limits['per_hour']} in the last hour, "
        f"{used['day']}/{limits['per_day']} in the last 24 h"
    )
    if data["circuit"]:
        from forwarder.gateway.replies import ReplyCode, explain

        circuit = data["circuit"]
        base = circuit["code"].split(":")[0]
        code = ReplyCode(base) if base in ReplyCode._value2member_map_ else ReplyCode.UNKNOWN
        print(f"SENDING PAUSED: the gateway said {circuit['code']} — {explain(code)}")
        print(f"            next probe SMS: {_ago(circuit['probe_at'])}")
    for entry in data["blocked"]:
        print(
            f"blocked:    {entry['recipient']} ({entry['reason']}); "
            f"'forwarder unblock {entry['recipient']}' to allow it"
        )
    if data["gateway_errors"]:
        print("gateway replies:")
    for entry in data["gateway_errors"]:
        when = datetime.fromtimestamp(entry["received_at"]).astimezone()
        print(f"  {when:%m-%d %H:%M} {entry['code']:<9} {entry['explanation']}")
        source = entry["message_id"] or "an SMS not identified"
        print(f"      for {source} (tied by {entry['tied_by']})")
    if data["recent"]:
        print("recent SMS:")
    for item in data["recent"]:
        when = datetime.fromtimestamp(item["sent_at"] or item["created_at"]).astimezone()
        preview = " ".join(item["text"].split())
        preview = preview[:60] + ("…" if len(preview) > 60 else "")
        print(f"  {when:%m-%d %H:%M} {item['state']:<9} {item['rule'] or '-':<12} {preview}")
        if item.get("reason") and State(item["state"]) in FINAL:
            print(f"      {item['state']}: {item['reason']}")
        elif item["last_error"] and item["state"] != State.SENT:
            print(f"      last error: {item['last_error']}")
    return EX_OK


if __name__ == "__main__":
    sys.exit(main())
