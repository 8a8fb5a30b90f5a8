"""The test harness itself: the real Dovecot and the gateway simulator do what tests rely on."""

from __future__ import annotations

import email
import email.policy
import email.utils
import smtplib
import socket
import ssl
import time
from email.message import EmailMessage

import pytest

from tests import conftest
from tests.support.servers.dovecot import ImapAccount
from tests.support.servers.gateway import (
    GATEWAY_DOMAIN,
    SMS_MAX_CHARS,
    GatewaySimulator,
    build_reply,
    parse_request,
)
from tests.support.servers.mails import make_mail

OWNER = "380501234567"  # the account's login: its own phone number
RECIPIENT = "380679876543"
ALPHA = "MyAlpha"
PASSWORD = "s3cret-Pa55"
API_KEY = "0123456789abcdef0123456789abcdef"
FROZEN_CLIENT_TIMEOUT = 1.0  # seconds: long enough for a live server, short for the test
FILL_COUNT = 50_000


def sms_request(
    phone: str = OWNER,
    subject: str = ALPHA,
    text: str = "Server down: disk full",
    *,
    domain: str = GATEWAY_DOMAIN,
) -> EmailMessage:
    """A request the way the forwarder should compose it: plain text with a charset."""
    message = EmailMessage()
    message["From"] = "forwarder@example.org"
    message["To"] = f"{phone}@{domain}"
    message["Subject"] = subject
    message["Message-ID"] = email.utils.make_msgid(domain="example.org")
    message.set_content(text, charset="utf-8")
    return message


def send(gateway: GatewaySimulator, message: EmailMessage) -> None:
    with gateway.connect() as client:
        client.send_message(message)


# -- gateway simulator -----------------------------------------------------------------------


def test_gateway_records_a_valid_mode_b_request(gateway: GatewaySimulator) -> None:
    request = sms_request(text="Привет: disk full")

    with smtplib.SMTP(gateway.host, gateway.port, timeout=10) as client:
        client.send_message(request)

    [sms] = gateway.wait_for(1)
    assert sms.problems == ()
    assert (sms.mode, sms.alpha_name, sms.phone) == ("b", ALPHA, OWNER)
    assert (sms.login, sms.password, sms.api_key, sms.list_id) == (None, None, None, None)
    assert sms.text == "Привет: disk full"
    assert sms.charset == "utf-8"
    assert sms.message_id == request["Message-ID"]
    assert sms.headers["from"] == "forwarder@example.org"
    assert sms.encrypted is False


@pytest.mark.parametrize(
    ("subject", "phone", "mode", "fields"),
    [
        (f"{ALPHA};{OWNER};{PASSWORD}", RECIPIENT, "a", {"login": OWNER, "password": PASSWORD}),
        (ALPHA, OWNER, "b", {}),
        (
            f"{ALPHA};{OWNER};{PASSWORD};12345",
            OWNER,
            "c",
            {"login": OWNER, "password": PASSWORD, "list_id": "12345"},
        ),
        (f"{ALPHA};{API_KEY}", RECIPIENT, "d", {"api_key": API_KEY}),
        (f"{ALPHA};{API_KEY};12345", OWNER, "e", {"api_key": API_KEY, "list_id": "12345"}),
    ],
)
def test_parse_request_infers_each_mode(
    subject: str, phone: str, mode: str, fields: dict[str, str]
) -> None:
    raw = sms_request(phone, subject).as_bytes()

    sms = parse_request(raw, rcpt_tos=[f"{phone}@{GATEWAY_DOMAIN}"], owner=OWNER, encrypted=True)

    assert sms.problems == ()
    assert sms.mode == mode
    assert sms.alpha_name == ALPHA
    for name in ("login", "password", "api_key", "list_id"):
        assert getattr(sms, name) == fields.get(name)


@pytest.mark.parametrize(("length", "flagged"), [(SMS_MAX_CHARS, False), (SMS_MAX_CHARS + 1, True)])
def test_gateway_flags_text_over_500_characters(
    gateway: GatewaySimulator, length: int, flagged: bool
) -> None:
    # Cyrillic: the limit is in characters, not in the bytes UTF-8 needs for them.
    send(gateway, sms_request(text="ж" * length))

    [sms] = gateway.wait_for(1)
    assert len(sms.text) == length
    assert any("characters" in problem for problem in sms.problems) is flagged


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            b"To: abc@" + GATEWAY_DOMAIN.encode() + b"\r\nSubject: A\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\n\r\nhi\r\n",
            "not a phone number",
        ),
        (
            b"To: 380501234567@example.com\r\nSubject: A\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\n\r\nhi\r\n",
            "is not mail.alphasms.com.ua",
        ),
        (b"To: 380501234567@mail.alphasms.com.ua\r\nSubject: A\r\n\r\n\xff\xfe\r\n", "UTF-8"),
        (make_mail(to="380501234567@mail.alphasms.com.ua", subject="A", html="<b>x</b>"), "multi"),
        (
            b"To: 380501234567@mail.alphasms.com.ua\r\nSubject: A;b;c;d;e\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\n\r\nhi\r\n",
            "5 ';'-separated fields",
        ),
        (
            b"To: 380501234567@mail.alphasms.com.ua\r\nSubject: A;key\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\n\r\nhi\r\n",
            "not encrypted",
        ),
    ],
    ids=["local-part", "domain", "charset", "multipart", "fields", "secret-in-clear"],
)
def test_parse_request_names_each_violation(raw: bytes, expected: str) -> None:
    to = email.message_from_bytes(raw)["To"]

    sms = parse_request(raw, rcpt_tos=[to])

    assert any(expected in problem for problem in sms.problems), sms.problems


def test_fail_next_451_reaches_the_client_then_the_gateway_recovers(
    gateway: GatewaySimulator,
) -> None:
    gateway.fail_next(451, "4.3.0 try again later", stage="data")

    with pytest.raises(smtplib.SMTPDataError) as failure:
        send(gateway, sms_request())
    send(gateway, sms_request())

    assert failure.value.smtp_code == 451
    assert len(gateway.wait_for(1)) == 1
    assert gateway.attempts == 2


@pytest.mark.parametrize("stage", ["mail", "rcpt", "data"])
def test_drop_next_closes_without_a_reply(gateway: GatewaySimulator, stage: str) -> None:
    gateway.drop_next(stage)  # type: ignore[arg-type]

    with pytest.raises(smtplib.SMTPServerDisconnected):
        send(gateway, sms_request())

    assert gateway.received == []


def test_drop_after_accepting_records_what_the_client_never_heard_of(
    gateway: GatewaySimulator,
) -> None:
    gateway.drop_next("data", accept=True)

    with pytest.raises(smtplib.SMTPServerDisconnected):
        send(gateway, sms_request())

    assert len(gateway.wait_for(1)) == 1


def test_gateway_down_refuses_then_serves_on_the_same_port(gateway: GatewaySimulator) -> None:
    port = gateway.port
    gateway.stop()

    with pytest.raises(ConnectionRefusedError):
        smtplib.SMTP(gateway.host, port, timeout=5)
    gateway.start()
    send(gateway, sms_request())

    assert gateway.port == port
    assert len(gateway.wait_for(1)) == 1


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
def test_secret_modes_over_tls_with_auth_have_no_problems(gateway_factory, tls: str) -> None:
    gateway = gateway_factory(tls=tls, username="relay", password="relay-pw")

    send(gateway, sms_request(RECIPIENT, f"{ALPHA};{API_KEY}"))

    [sms] = gateway.wait_for(1)
    assert sms.problems == ()
    assert (sms.mode, sms.encrypted, sms.auth_login) == ("d", True, "relay")


def test_gateway_with_auth_refuses_mail_before_login(gateway_factory) -> None:
    gateway = gateway_factory(tls="starttls", username="relay", password="relay-pw")

    with gateway.connect(login=False) as client, pytest.raises(smtplib.SMTPSenderRefused) as err:
        client.send_message(sms_request())

    assert err.value.smtp_code == 530


def test_quoted_reply_masks_every_secret() -> None:
    raw = sms_request(RECIPIENT, f"{ALPHA};{OWNER};{PASSWORD}").as_bytes()
    request = parse_request(raw, rcpt_tos=[f"{RECIPIENT}@{GATEWAY_DOMAIN}"], encrypted=True)

    reply = build_reply(request, "AUTH", tie="quote", charset="windows-1251", transfer="base64")

    text = email.message_from_bytes(reply, policy=email.policy.default).get_content()
    assert PASSWORD not in text
    assert PASSWORD.encode() not in reply
    assert request.message_id in text
    assert "AUTH" in text


@pytest.mark.parametrize("html", [False, True])
@pytest.mark.parametrize("transfer", ["8bit", "base64", "quoted-printable"])
@pytest.mark.parametrize("charset", ["utf-8", "windows-1251"])
def test_every_reply_encoding_still_says_its_code(charset: str, transfer: str, html: bool) -> None:
    raw = sms_request().as_bytes()
    request = parse_request(raw, rcpt_tos=[f"{OWNER}@{GATEWAY_DOMAIN}"])

    reply = build_reply(request, "MSG:123", charset=charset, transfer=transfer, html=html)  # type: ignore[arg-type]

    message = email.message_from_bytes(reply, policy=email.policy.default)
    assert message["Content-Transfer-Encoding"] == transfer
    assert message.get_content_charset() == charset
    assert message.get_content_type() == ("text/html" if html else "text/plain")
    assert "MSG:123" in message.get_content()
    assert message["In-Reply-To"] == request.message_id


def test_reply_with_auth_arrives_in_dovecot_tied_by_in_reply_to(
    gateway_factory, imap_user: ImapAccount
) -> None:
    def deliver(raw: bytes) -> None:
        imap_user.server.append(imap_user.user, "INBOX", raw)

    gateway = gateway_factory(deliver=deliver)
    gateway.reply_with("AUTH", tie="in-reply-to")
    request = sms_request()

    send(gateway, request)
    [sent] = gateway.wait_for_replies(1)

    assert sent.error is None
    [raw] = imap_user.server.fetch_raw(imap_user.user, "INBOX").values()
    reply = email.message_from_bytes(raw, policy=email.policy.default)
    assert reply["In-Reply-To"] == request["Message-ID"]
    assert "AUTH" in reply["Subject"]
    assert "AUTH" in reply.get_content()


# -- fixtures -------------------------------------------------------------------------------


def test_missing_dovecot_fails_in_ci_and_skips_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(conftest, "dovecot_installed", lambda: False)

    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="apt-get install dovecot-imapd"):
        conftest._require_dovecot()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="apt-get install dovecot-imapd"):
        conftest._require_dovecot()


# -- Dovecot ---------------------------------------------------------------------------------


def test_dovecot_append_and_flags_round_trip(imap_user: ImapAccount) -> None:
    server, user = imap_user.server, imap_user.user

    uid = server.append(user, "INBOX", make_mail(subject="hello"), flags=["\\Seen"])
    server.set_flags(user, "INBOX", [uid], ["\\Flagged", "$Forwarded"])

    assert server.list_uids(user, "INBOX") == [uid]
    assert server.fetch_flags(user, "INBOX") == {uid: frozenset({"\\Flagged", "$Forwarded"})}
    server.expunge(user, "INBOX", [uid])
    assert server.list_uids(user, "INBOX") == []


def test_recreated_folder_has_a_new_uidvalidity(imap_user: ImapAccount) -> None:
    server, user = imap_user.server, imap_user.user
    server.create_folder(user, "Alerts")
    before = server.uidvalidity(user, "Alerts")

    after = server.recreate_folder(user, "Alerts")

    assert after != before


def test_idle_reports_new_mail_at_once(imap_user: ImapAccount) -> None:
    server, user = imap_user.server, imap_user.user
    client = server.connect(user)
    try:
        client.select_folder("INBOX")
        client.idle()
        server.append(user, "INBOX", make_mail())
        responses = client.idle_check(timeout=5)
        client.idle_done()
    finally:
        client.logout()

    assert (1, b"EXISTS") in responses


@pytest.mark.parametrize("security", ["implicit", "starttls"])
def test_dovecot_tls_trusts_its_ca_and_refuses_another(
    imap_user: ImapAccount, security: str
) -> None:
    server = imap_user.server

    server.connect(imap_user.user, security=security, ca_file=imap_user.ca_file).logout()
    with pytest.raises(ssl.SSLCertVerificationError):
        server.connect(imap_user.user, security=security, ca_file=server.wrong_ca_file)


def test_restart_keeps_ports_and_mail(dovecot_factory) -> None:
    server = dovecot_factory(tls=False)
    uid = server.append("owner", "INBOX", make_mail())
    port, uidvalidity = server.port, server.uidvalidity("owner", "INBOX")

    server.restart()

    assert server.port == port
    assert server.uidvalidity("owner", "INBOX") == uidvalidity
    assert server.list_uids("owner", "INBOX") == [uid]


def test_frozen_server_times_out_and_thawed_server_answers(dovecot_factory) -> None:
    server = dovecot_factory(tls=False)
    client = server.connect("owner", timeout=FROZEN_CLIENT_TIMEOUT)
    client.select_folder("INBOX")

    server.freeze()
    try:
        with pytest.raises((TimeoutError, socket.timeout)):
            client.noop()
        with pytest.raises((TimeoutError, socket.timeout)):
            server.connect("owner", timeout=FROZEN_CLIENT_TIMEOUT)
    finally:
        client.shutdown()
        server.thaw()

    fresh = server.connect("owner", timeout=FROZEN_CLIENT_TIMEOUT)
    assert fresh.noop()
    fresh.logout()


def test_stop_ends_every_process_even_when_frozen(dovecot_factory) -> None:
    server = dovecot_factory(tls=False)
    pids = server.pids()
    server.freeze()

    server.stop(graceful=False)

    assert not server.running
    assert not [pid for pid in pids if _alive(pid)]


@pytest.mark.slow
def test_fill_puts_fifty_thousand_messages_fast(imap_user: ImapAccount) -> None:
    started = time.monotonic()
    imap_user.server.fill(imap_user.user, "Bulk", FILL_COUNT)
    elapsed = time.monotonic() - started
    print(f"fill({FILL_COUNT}) took {elapsed:.1f} s")

    assert len(imap_user.server.list_uids(imap_user.user, "Bulk")) == FILL_COUNT


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
