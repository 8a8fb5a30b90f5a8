"""`forwarder check` on the gateway/SMTP/delivery settings: every impossible combination is
refused with FILE:LINE and a sentence that says what to change; the five modes load."""

from __future__ import annotations

from pathlib import Path

import pytest

from forwarder import config as config_module
from forwarder.config import ConfigError
from forwarder.delivery.receipts import Receipts
from forwarder.gateway.account import Auth, Mode

LOGIN = "380501234567"
OTHER = "380671112233"


def write(
    tmp_path: Path, *, smtp: list[str] = (), gateway: list[str] = (), extra: list[str] = ()
) -> Path:
    """A complete config whose smtp and gateway sections end with the given lines."""
    lines = [
        "imap:",
        "  host: imap.example.com",
        "  username: me",
        "  password: x",
        "smtp:",
        *(smtp or ["  host: smtp.example.com"]),
        "  from: me@example.com",
        "gateway:",
        f'  login: "{LOGIN}"',
        "  sender: MyAlpha",
        *gateway,
        *extra,
        "rules: []",
    ]
    path = tmp_path / "forwarder.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def line_of(path: Path, text: str) -> int:
    """The 1-based line of the first line that is exactly ``text`` (stripped of the newline)."""
    return path.read_text().splitlines().index(text) + 1


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        config_module.load(path)
    return [str(p) for p in caught.value.problems]


# -- impossible combinations --------------------------------------------------------------------
# (smtp lines, gateway lines, the line the problem is reported at, the message)
IMPOSSIBLE = {
    "own_number with a secret": (
        [],
        ["  mode: own_number", "  auth: password", "  password: pw"],
        "  auth: password",
        "gateway.mode own_number (mode b) sends no secret: use auth: none",
    ),
    "phone without a secret": (
        [],
        ["  mode: phone", "  auth: none", f'  recipients: ["{OTHER}"]'],
        "  auth: none",
        "gateway.mode phone needs a secret (modes a, c, d, e): set auth: password or auth: api_key",
    ),
    "list without a secret": (
        [],
        ["  mode: list", "  auth: none", '  list_id: "12345"'],
        "  auth: none",
        "gateway.mode list needs a secret (modes a, c, d, e): set auth: password or auth: api_key",
    ),
    "phone without recipients": (
        [],
        ["  mode: phone", "  auth: api_key", "  api_key: k3y"],
        "  mode: phone",
        "gateway.mode phone needs gateway.recipients: [numbers]",
    ),
    "phone with an empty recipient list": (
        [],
        ["  mode: phone", "  auth: api_key", "  api_key: k3y", "  recipients: []"],
        "  recipients: []",
        "gateway.mode phone needs gateway.recipients: [numbers]",
    ),
    "recipients outside mode phone": (
        [],
        [f'  recipients: ["{OTHER}"]'],
        f'  recipients: ["{OTHER}"]',
        "gateway.recipients is only used with mode: phone",
    ),
    "the same recipient twice": (
        [],
        [
            "  mode: phone",
            "  auth: api_key",
            "  api_key: k3y",
            f'  recipients: ["{OTHER}", "+38 067 111-22-33"]',
        ],
        f'  recipients: ["{OTHER}", "+38 067 111-22-33"]',
        f"gateway.recipients names {OTHER} twice",
    ),
    "list without list_id": (
        [],
        ["  mode: list", "  auth: password", "  password: pw"],
        "  mode: list",
        "gateway.mode list needs gateway.list_id",
    ),
    "list_id outside mode list": (
        [],
        [
            "  mode: phone",
            "  auth: api_key",
            "  api_key: k3y",
            f'  recipients: ["{OTHER}"]',
            '  list_id: "12345"',
        ],
        '  list_id: "12345"',
        "gateway.list_id is only used with mode: list",
    ),
    "a password without auth: password": (
        [],
        [
            "  mode: phone",
            "  auth: api_key",
            "  api_key: k3y",
            f'  recipients: ["{OTHER}"]',
            "  password: pw",
        ],
        "  password: pw",
        "gateway.password is only used with auth: password (auth is api_key)",
    ),
    "an API key in mode b": (
        [],
        ["  api_key: k3y"],
        "  api_key: k3y",
        "gateway.api_key is only used with auth: api_key (auth is none)",
    ),
    "a password with the Subject separator": (
        [],
        ["  mode: list", '  list_id: "12345"', "  auth: password", '  password: "a;b"'],
        '  password: "a;b"',
        "gateway.password cannot contain ';' or line breaks (Subject syntax)",
    ),
    "an API key with a space": (
        [],
        ["  mode: list", '  list_id: "12345"', "  auth: api_key", '  api_key: "k3y extra"'],
        '  api_key: "k3y extra"',
        "gateway.api_key must be one token: no ';', spaces or line breaks",
    ),
    "a secret over plaintext SMTP to loopback, not allowed": (
        ["  host: 127.0.0.1", "  security: plain"],
        ["  mode: list", '  list_id: "12345"', "  auth: api_key", "  api_key: k3y"],
        "  auth: api_key",
        "this mode puts a password or API key in the Subject, which must not travel "
        "unencrypted: use smtp.security tls or starttls (or, to a loopback relay only, "
        "smtp.allow_plaintext_secrets: true)",
    ),
    "plaintext SMTP to a remote host, even when allowed": (
        ["  host: smtp.example.com", "  security: plain", "  allow_plaintext_secrets: true"],
        ["  mode: list", '  list_id: "12345"', "  auth: api_key", "  api_key: k3y"],
        "  security: plain",
        "smtp.security: plain (unencrypted) is only allowed to a loopback host, not "
        "'smtp.example.com'; use tls or starttls",
    ),
}


@pytest.mark.parametrize("case", list(IMPOSSIBLE))
def test_impossible_combination_is_refused_with_file_line_and_message(
    tmp_path: Path, case: str
) -> None:
    smtp, gateway, at, message = IMPOSSIBLE[case]
    path = write(tmp_path, smtp=smtp, gateway=gateway)
    assert f"{path}:{line_of(path, at)}: {message}" in problems(path)


def test_a_missing_password_names_both_ways_to_give_it(tmp_path: Path) -> None:
    path = write(tmp_path, gateway=["  mode: list", '  list_id: "12345"', "  auth: password"])
    found = problems(path)
    assert any(
        p.startswith(f"{path}:") and "gateway.password (or gateway.password_file) is required" in p
        for p in found
    ), found


def test_password_and_password_file_together_are_refused(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("pw\n")
    path = write(
        tmp_path,
        gateway=[
            "  mode: list",
            '  list_id: "12345"',
            "  auth: password",
            "  password: pw",
            f"  password_file: {secret}",
        ],
    )
    at = line_of(path, f"  password_file: {secret}")
    message = "give gateway.password or gateway.password_file, not both"
    assert f"{path}:{at}: {message}" in problems(path)


def test_the_check_command_prints_file_line_and_exits_78(tmp_path: Path, capsys) -> None:
    from forwarder.cli import main

    path = write(tmp_path, gateway=["  mode: own_number", "  auth: api_key", "  api_key: k3y"])
    assert main(["check", "--config", str(path)]) == 78
    err = capsys.readouterr().err
    at = line_of(path, "  auth: api_key")
    assert f"{path}:{at}: gateway.mode own_number (mode b) sends no secret: use auth: none" in err


# -- delivery settings -------------------------------------------------------------------------
def test_backoff_cap_below_the_first_wait_is_refused(tmp_path: Path) -> None:
    extra = ["delivery:", "  retry_backoff: 10m", "  retry_backoff_max: 1m"]
    path = write(tmp_path, extra=extra)
    at = line_of(path, "  retry_backoff_max: 1m")
    message = "delivery.retry_backoff_max (60s) is shorter than delivery.retry_backoff (600s)"
    assert f"{path}:{at}: {message}" in problems(path)


def test_on_doubt_must_be_alert_or_resend(tmp_path: Path) -> None:
    path = write(tmp_path, extra=["delivery:", "  on_doubt: retry"])
    found = problems(path)
    at = line_of(path, "  on_doubt: retry")
    assert any(p.startswith(f"{path}:{at}: delivery.on_doubt") for p in found), found


def test_delivery_and_limits_defaults(tmp_path: Path) -> None:
    config = config_module.load(write(tmp_path))
    d, limits = config.delivery, config.limits
    # Issue 11: a request in doubt that no receipt settles is sent again by default.
    assert (d.on_doubt, d.max_age, d.retry_attempts) == ("resend", 6 * 3600, 3)
    assert (d.receipts, d.receipt_wait, d.sent_folder, d.receipt_folder) == (
        "auto",
        120,
        None,
        None,
    )
    assert config.receipts == Receipts.COPY  # smtp.example.com: not a known Sent filer
    assert config.receipt_to == "me@example.com"  # smtp.from
    assert (d.retry_backoff, d.retry_backoff_max, d.unless_read_wait) == (30, 900, 900)
    assert (limits.per_minute, limits.per_hour, limits.per_day) == (5, 30, 100)
    assert limits.dedup_window == 600


# -- the five modes load, secrets from ${VAR} and *_file ----------------------------------------
def test_plaintext_to_loopback_is_allowed_only_when_asked(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        smtp=["  host: 127.0.0.1", "  security: plain", "  allow_plaintext_secrets: true"],
        gateway=["  mode: list", '  list_id: "12345"', "  auth: api_key", "  api_key: k3y"],
    )
    assert config_module.load(path).gateway.auth is Auth.API_KEY


@pytest.mark.parametrize(
    ("letter", "lines", "to", "subject"),
    [
        (
            "a",
            [
                "  mode: phone",
                "  auth: password",
                "  password: ${PW}",
                f'  recipients: ["{OTHER}"]',
            ],
            f"{OTHER}@mail.alphasms.com.ua",
            f"MyAlpha;{LOGIN};s3cret-pw",
        ),
        ("b", [], f"{LOGIN}@mail.alphasms.com.ua", "MyAlpha"),
        (
            "c",
            ["  mode: list", "  auth: password", "  password_file: {file}", '  list_id: "12345"'],
            f"{LOGIN}@mail.alphasms.com.ua",
            f"MyAlpha;{LOGIN};s3cret-pw;12345",
        ),
        (
            "d",
            ["  mode: phone", "  auth: api_key", "  api_key: ${KEY}", f'  recipients: ["{OTHER}"]'],
            f"{OTHER}@mail.alphasms.com.ua",
            "MyAlpha;k3y-SECRET",
        ),
        (
            "e",
            ["  mode: list", "  auth: api_key", "  api_key_file: {file}", '  list_id: "12345"'],
            f"{LOGIN}@mail.alphasms.com.ua",
            "MyAlpha;k3y-SECRET;12345",
        ),
    ],
)
def test_each_mode_loads_and_addresses_as_the_seed_table_says(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    letter: str,
    lines: list[str],
    to: str,
    subject: str,
) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(("s3cret-pw" if letter == "c" else "k3y-SECRET") + "\n")
    monkeypatch.setenv("PW", "s3cret-pw")
    monkeypatch.setenv("KEY", "k3y-SECRET")
    lines = [line.replace("{file}", str(secret_file)) for line in lines]
    config = config_module.load(write(tmp_path, gateway=lines))
    (request,) = config.gateway.requests()
    assert request.to == to
    assert request.subject.reveal() == subject
    assert "s3cret" not in request.masked_subject and "SECRET" not in request.masked_subject
    assert "s3cret" not in repr(config) and "SECRET" not in repr(config)
    expected_mode = {
        "a": Mode.PHONE,
        "b": Mode.OWN_NUMBER,
        "c": Mode.LIST,
        "d": Mode.PHONE,
        "e": Mode.LIST,
    }[letter]
    assert config.gateway.mode is expected_mode


def test_unquoted_numbers_keep_the_digits_as_written(tmp_path: Path) -> None:
    """YAML 1.1 reads 0501234567 as octal (84228471) and 0123 as 83: a national number or a
    digits-only password written without quotes must reach the gateway as the user typed it."""
    path = write(
        tmp_path,
        gateway=[
            "  mode: phone",
            "  auth: password",
            "  password: 0123",
            "  recipients: [0671112233]",
        ],
    )
    path.write_text(path.read_text().replace(f'login: "{LOGIN}"', "login: 0501234567"))
    loaded = config_module.load(path)
    assert loaded.gateway.login == LOGIN
    assert loaded.gateway.recipients == (OTHER,)
    assert loaded.gateway.password is not None and loaded.gateway.password.reveal() == "0123"


@pytest.mark.parametrize(
    ("section", "key"), [("gateway", "domain"), ("delivery", "message_id_domain")]
)
@pytest.mark.parametrize(
    "value", ['"mail.alphasms.com.ua, spy@example.com"', '"x.com\\r\\nBcc: a@b.c"', "a b"]
)
def test_a_domain_that_would_break_the_request_headers_is_refused(
    tmp_path: Path, section: str, key: str, value: str
) -> None:
    """The domain goes into To: (with the password in the Subject) and Message-ID:."""
    if section == "gateway":
        path = write(tmp_path, gateway=[f"  {key}: {value}"])
    else:
        path = write(tmp_path, extra=["delivery:", f"  {key}: {value}"])
    assert any(f"{section}.{key}:" in p and "not a domain name" in p for p in problems(path))


@pytest.mark.parametrize(
    "value",
    [
        '"Me <me@example.com>"',
        '"me@example.com, spy@example.com"',
        '"me@example.com\\r\\nBcc: x@y.z"',
    ],
)
def test_smtp_from_must_be_a_bare_address(tmp_path: Path, value: str) -> None:
    """smtp.from is the From: header, the envelope sender and what the own-mail guard compares
    incoming From addresses with: with a display name the guard never matched (a loop)."""
    path = write(tmp_path, smtp=["  host: smtp.example.com", f"  from: {value}"])
    path.write_text(path.read_text().replace("  from: me@example.com\n", "", 1))
    assert any("smtp.from must be an e-mail address alone" in p for p in problems(path))


# -- receipts (issue 11) -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("smtp_host", "imap_host", "expected"),
    [
        ("smtp.gmail.com", "imap.gmail.com", Receipts.SENT_FOLDER),
        ("smtp.office365.com", "outlook.office365.com", Receipts.SENT_FOLDER),
        ("smtp-mail.outlook.com", "imap-mail.outlook.com", Receipts.SENT_FOLDER),
        ("smtp.gmail.com", "imap.example.com", Receipts.COPY),  # Sent is in another account
        ("smtp.ukr.net", "imap.ukr.net", Receipts.COPY),
        ("smtp.mail.yahoo.com", "imap.mail.yahoo.com", Receipts.COPY),
    ],
)
def test_auto_receipts_search_sent_only_where_the_provider_files_there(
    tmp_path: Path, smtp_host: str, imap_host: str, expected: Receipts
) -> None:
    path = write(tmp_path, smtp=[f"  host: {smtp_host}"])
    path.write_text(path.read_text().replace("imap.example.com", imap_host))
    assert config_module.load(path).receipts == expected


def test_explicit_receipt_settings_load(tmp_path: Path) -> None:
    extra = [
        "delivery:",
        "  receipts: copy",
        "  receipt_wait: 5m",
        "  receipt_to: alerts-copy@example.com",
        "  receipt_folder: forwarder/receipts",
        "  on_doubt: alert",
    ]
    config = config_module.load(write(tmp_path, extra=extra))
    assert config.receipts == Receipts.COPY
    assert config.receipt_to == "alerts-copy@example.com"
    d = config.delivery
    assert (d.receipt_wait, d.receipt_folder, d.on_doubt) == (300, "forwarder/receipts", "alert")


@pytest.mark.parametrize(
    ("lines", "bad", "message"),
    [
        (["  receipts: bcc"], "  receipts: bcc", "delivery.receipts must be one of auto, "),
        (
            ["  receipt_to: Me <me@example.com>"],
            "  receipt_to: Me <me@example.com>",
            "delivery.receipt_to: must be an e-mail address alone",
        ),
        (["  receipt_wait: 0"], "  receipt_wait: 0", "delivery.receipt_wait must be at least 1"),
        (
            ["  receipt_folder: INBOX"],
            "  receipt_folder: INBOX",
            "delivery.receipt_folder 'INBOX' is a watched folder",
        ),
        (
            ["  receipts: copy", "  sent_folder: Sent"],
            "  sent_folder: Sent",
            "delivery.sent_folder is only used with receipts: sent_folder",
        ),
        (
            ["  receipts: sent_folder", "  receipt_folder: Receipts"],
            "  receipt_folder: Receipts",
            "delivery.receipt_folder is only used with receipts: copy",
        ),
        (
            ['  receipts: "off"', "  receipt_to: x@example.com"],
            "  receipt_to: x@example.com",
            "delivery.receipt_to is only used with receipts: copy",
        ),
    ],
)
def test_impossible_receipt_settings_name_file_and_line(
    tmp_path: Path, lines: list[str], bad: str, message: str
) -> None:
    path = write(tmp_path, extra=["delivery:", *lines])
    at = line_of(path, bad)
    found = problems(path)
    assert any(p.startswith(f"{path}:{at}: {message}") for p in found), found


def test_receipts_off_may_be_written_bare(tmp_path: Path) -> None:
    """YAML 1.1 reads `off` as false; the key means the word."""
    config = config_module.load(write(tmp_path, extra=["delivery:", "  receipts: off"]))
    assert config.receipts == Receipts.OFF
