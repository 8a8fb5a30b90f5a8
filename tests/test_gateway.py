"""Email2SMS addressing (seed doc modes a–e), phone numbers, alpha-names, the request mail."""

from __future__ import annotations

import email
import email.policy

import pytest

from forwarder.configfile.schema import Secret
from forwarder.gateway.account import (
    Account,
    Auth,
    Mode,
    check_alpha_name,
    check_token,
    normalize_phone,
)
from forwarder.gateway.request import compose, new_message_id


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("380501234567", "380501234567"),
        ("+380 50 123-45-67", "380501234567"),
        ("0501234567", "380501234567"),  # Ukrainian national form
        ("(050) 123 45 67", "380501234567"),
        ("00380501234567", "380501234567"),
        ("+1 415 555 0100", "14155550100"),
    ],
)
def test_phone_numbers_are_normalised_to_e164_digits(given: str, expected: str) -> None:
    assert normalize_phone(given) == expected


@pytest.mark.parametrize("bad", ["12345", "abc", "0501234", "+0501234567", "3805012345678901", ""])
def test_bad_phone_numbers_say_what_is_wanted(bad: str) -> None:
    with pytest.raises(ValueError, match=r"digits|international"):
        normalize_phone(bad)


@pytest.mark.parametrize("name", ["MyAlpha", "Shop.UA", "A-1 b", "ABCDEFGHIJK"])
def test_valid_alpha_names(name: str) -> None:
    assert check_alpha_name(name) is None


@pytest.mark.parametrize("name", ["ABCDEFGHIJKL", "Мой", "a;b", "x\ny", "", "a_b"])
def test_invalid_alpha_names(name: str) -> None:
    assert check_alpha_name(name) == (
        f"{name!r} is not a valid alpha-name: at most 11 Latin letters, digits, space, '-' or '.'"
    )


@pytest.mark.parametrize("token", ["a;b", "a b", "x\r\ny", ""])
def test_subject_tokens_cannot_smuggle_separators(token: str) -> None:
    assert check_token(token) == (
        "must be a single token of letters, digits and _-.+=/ (no ';', spaces or line breaks)"
    )


@pytest.mark.parametrize("token", ["k3yABCDEF0123456789", "Pa55-w0rd.x", "a_b+c=d/e"])
def test_subject_tokens_of_the_allowed_characters_pass(token: str) -> None:
    assert check_token(token) is None


LOGIN = "380501234567"


@pytest.mark.parametrize(
    ("account", "to", "subject", "masked"),
    [
        # b: the owner's own number, no secret
        (Account(LOGIN, "MyAlpha"), f"{LOGIN}@mail.alphasms.com.ua", "MyAlpha", "MyAlpha"),
        # a: one recipient, login + password
        (
            Account(
                LOGIN,
                "MyAlpha",
                mode=Mode.PHONE,
                auth=Auth.PASSWORD,
                recipients=("380671112233",),
                password=Secret("pw"),
            ),
            "380671112233@mail.alphasms.com.ua",
            f"MyAlpha;{LOGIN};pw",
            f"MyAlpha;{LOGIN};***",
        ),
        # c: a saved list, login + password
        (
            Account(
                LOGIN,
                "MyAlpha",
                mode=Mode.LIST,
                auth=Auth.PASSWORD,
                list_id="42",
                password=Secret("pw"),
            ),
            f"{LOGIN}@mail.alphasms.com.ua",
            f"MyAlpha;{LOGIN};pw;42",
            f"MyAlpha;{LOGIN};***;42",
        ),
        # d: one recipient, API key
        (
            Account(
                LOGIN,
                "MyAlpha",
                mode=Mode.PHONE,
                auth=Auth.API_KEY,
                recipients=("380671112233",),
                api_key=Secret("KEY123"),
            ),
            "380671112233@mail.alphasms.com.ua",
            "MyAlpha;KEY123",
            "MyAlpha;***",
        ),
        # e: a saved list, API key
        (
            Account(
                LOGIN,
                "MyAlpha",
                mode=Mode.LIST,
                auth=Auth.API_KEY,
                list_id="42",
                api_key=Secret("KEY123"),
            ),
            f"{LOGIN}@mail.alphasms.com.ua",
            "MyAlpha;KEY123;42",
            "MyAlpha;***;42",
        ),
    ],
)
def test_each_mode_addresses_the_gateway_as_the_seed_document_says(
    account: Account, to: str, subject: str, masked: str
) -> None:
    (request,) = account.requests()
    assert request.to == to
    assert request.subject.reveal() == subject
    assert request.masked_subject == masked
    assert "pw" not in repr(request) and "KEY123" not in repr(request)


def test_phone_mode_makes_one_request_per_recipient_and_sender_override_applies() -> None:
    account = Account(
        LOGIN,
        "MyAlpha",
        mode=Mode.PHONE,
        auth=Auth.API_KEY,
        recipients=("380671112233", "380931112233"),
        api_key=Secret("K"),
    )
    requests = account.requests("Other")
    assert [r.recipient for r in requests] == ["380671112233", "380931112233"]
    assert all(r.masked_subject == "Other;***" for r in requests)


def test_request_mail_declares_utf8_and_carries_the_text_and_loop_markers() -> None:
    (request,) = Account(LOGIN, "MyAlpha").requests()
    message_id = new_message_id("forwarder.invalid")
    text = "Банк: платіж 100 грн\nдругий рядок"
    message = compose(request, text, from_addr="me@example.com", message_id=message_id)
    parsed = email.message_from_bytes(message.as_bytes(), policy=email.policy.default)
    assert parsed["To"] == f"{LOGIN}@mail.alphasms.com.ua"
    assert parsed["Subject"] == "MyAlpha"
    assert parsed["Message-ID"] == message_id
    assert message_id.endswith("@forwarder.invalid>")
    assert parsed["Auto-Submitted"] == "auto-generated"
    assert parsed.get_content_type() == "text/plain"
    assert parsed.get_content_charset() == "utf-8"
    assert parsed.get_content().rstrip("\n") == text
