"""`classify`: the one place that sorts SMTP failures into transient, permanent and halting.

smtplib's exceptions and ssl.SSLCertVerificationError are all OSError subclasses, so the
order of the checks is what this table pins down.
"""

from __future__ import annotations

import smtplib
import socket
import ssl

import pytest
from hypothesis import given
from hypothesis import strategies as st

from forwarder.delivery.sender import DeliveryError, _worth_retrying, classify


def cert_error() -> ssl.SSLCertVerificationError:
    error = ssl.SSLCertVerificationError(1, "certificate verify failed")
    error.verify_message = "unable to get local issuer certificate"
    error.verify_code = 20
    return error


def ssl_error() -> ssl.SSLError:
    error = ssl.SSLError(1, "wrong version number")
    error.reason = "WRONG_VERSION_NUMBER"
    return error


RECIPIENT = "380501234567@mail.alphasms.com.ua"

# (exception, transient, halts, code, words the message must contain)
TABLE = [
    # -- network: transient ------------------------------------------------------------------
    (ConnectionRefusedError(111, "Connection refused"), True, False, None, "cannot reach"),
    (ConnectionResetError(104, "Connection reset by peer"), True, False, None, "cannot reach"),
    (OSError(101, "Network is unreachable"), True, False, None, "cannot reach"),
    (TimeoutError("timed out"), True, False, None, "timed out"),
    (TimeoutError(), True, False, None, "timed out"),  # socket.timeout is an alias
    (socket.gaierror(-2, "Name or service not known"), True, False, None, "cannot resolve"),
    (
        smtplib.SMTPServerDisconnected("Connection unexpectedly closed"),
        True,
        False,
        None,
        "closed the connection",
    ),
    (ssl_error(), True, False, None, "TLS error"),
    # -- TLS certificate: permanent, and the settings are wrong ---------------------------------
    (cert_error(), False, True, None, "certificate rejected"),
    # -- replies by code ---------------------------------------------------------------------
    (smtplib.SMTPConnectError(421, b"too busy"), True, False, 421, "421"),
    # Refused before MAIL FROM (greeting, EHLO, STARTTLS): no SMS can go, so sending halts.
    (smtplib.SMTPConnectError(554, b"no SMTP service here"), False, True, 554, "554"),
    (smtplib.SMTPHeloError(501, b"bad HELO"), False, True, 501, "501"),
    (smtplib.SMTPSenderRefused(451, b"try later", "me@x"), True, False, 451, "MAIL 451"),
    (smtplib.SMTPSenderRefused(553, b"not allowed", "me@x"), False, True, 553, "MAIL 553"),
    (smtplib.SMTPRecipientsRefused({RECIPIENT: (450, b"busy")}), True, False, 450, "RCPT 450"),
    (smtplib.SMTPRecipientsRefused({RECIPIENT: (452, b"full")}), True, False, 452, "RCPT 452"),
    # RFC 5321 §4.5.3.1.10: 552 on RCPT means "too many recipients", to be treated as 452.
    (smtplib.SMTPRecipientsRefused({RECIPIENT: (552, b"too many")}), True, False, 552, "RCPT 552"),
    (smtplib.SMTPRecipientsRefused({RECIPIENT: (550, b"no such")}), False, False, 550, "RCPT 550"),
    (smtplib.SMTPRecipientsRefused({RECIPIENT: (554, b"rejected")}), False, False, 554, "RCPT 554"),
    (smtplib.SMTPDataError(451, b"local error"), True, False, 451, "DATA 451"),
    (smtplib.SMTPDataError(452, b"no storage"), True, False, 452, "DATA 452"),
    (smtplib.SMTPDataError(552, b"too big"), False, False, 552, "DATA 552"),
    (smtplib.SMTPDataError(554, b"spam"), False, False, 554, "DATA 554"),
    (smtplib.SMTPResponseException(421, b"shutting down"), True, False, 421, "421"),
    (smtplib.SMTPResponseException(500, b"what?"), False, True, 500, "500"),
    # -- login: permanent and halting, unless the server says "temporary" -----------------------
    (
        smtplib.SMTPAuthenticationError(535, b"bad credentials"),
        False,
        True,
        535,
        "check smtp.username",
    ),
    (smtplib.SMTPAuthenticationError(454, b"temporary failure"), True, False, 454, "AUTH 454"),
    (
        smtplib.SMTPNotSupportedError("STARTTLS extension not supported by server."),
        False,
        True,
        None,
        "smtp.security",
    ),
    # smtplib's own refusal to log in (no AUTH method both sides know): not a network error.
    (
        smtplib.SMTPException("No suitable authentication method found."),
        False,
        True,
        None,
        "smtp.username",
    ),
    # -- anything else is a bug: permanent, so it is looked at --------------------------------
    (ValueError("boom"), False, False, None, "unexpected ValueError"),
]


@pytest.mark.parametrize(
    ("exc", "transient", "halts", "code", "words"),
    TABLE,
    ids=[f"{type(row[0]).__name__}-{row[3]}" for row in TABLE],
)
def test_classify(exc: BaseException, transient: bool, halts: bool, code, words: str) -> None:
    error = classify(exc)
    assert isinstance(error, DeliveryError)
    assert (error.transient, error.halts, error.code) == (transient, halts, code)
    assert words in str(error)
    assert error.after_dot is False


def test_every_smtp_exception_is_an_oserror_so_order_matters() -> None:
    for cls in (smtplib.SMTPException, ssl.SSLCertVerificationError, ssl.SSLError):
        assert issubclass(cls, OSError)
    # ...and yet a rejected certificate is never treated like a network error:
    assert classify(cert_error()).transient is False


def test_a_delivery_error_passes_through_unchanged() -> None:
    error = DeliveryError("x", transient=True, code=451)
    assert classify(error) is error


def test_nothing_after_the_final_dot_is_retried_within_a_send() -> None:
    error = classify(smtplib.SMTPServerDisconnected("gone"))
    assert _worth_retrying(error)
    error.after_dot = True
    assert not _worth_retrying(error)
    assert not _worth_retrying(classify(smtplib.SMTPDataError(554, b"no")))
    assert not _worth_retrying(ValueError("not a DeliveryError"))


@given(code=st.integers(400, 599), stage=st.sampled_from(["MAIL", "RCPT", "DATA"]))
def test_by_code_4xx_is_transient_5xx_permanent_except_552_on_rcpt(code: int, stage: str) -> None:
    exc: smtplib.SMTPException
    if stage == "MAIL":
        exc = smtplib.SMTPSenderRefused(code, b"x", "me@x")
    elif stage == "RCPT":
        exc = smtplib.SMTPRecipientsRefused({RECIPIENT: (code, b"x")})
    else:
        exc = smtplib.SMTPDataError(code, b"x")
    error = classify(exc)
    expected = code < 500 or (code == 552 and stage == "RCPT")
    assert error.transient is expected
    assert error.code == code
    assert error.halts is (stage == "MAIL" and not expected)
