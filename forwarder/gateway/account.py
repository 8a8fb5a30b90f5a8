"""The AlphaSMS Email2SMS account: addressing modes a–e, and the values they accept.

Everything here follows ``shared/seed/alphasms-email2sms.md`` (v1.5 of the
provider's document). The Subject of a request carries the alpha-name and, in
four of the five modes, a password or API key: such subjects are built here,
masked here, and never leave this module unmasked except to the SMTP sender.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from forwarder.configfile.schema import Secret
from forwarder.text.smstext import SMS_MAX_CHARS  # seed §Limits: at most 500 characters

DEFAULT_DOMAIN = "mail.alphasms.com.ua"

#: Providers accept at most 11 Latin letters, digits, space, '-' and '.' as an alpha-name.
ALPHA_NAME = re.compile(r"^[A-Za-z0-9 .\-]{1,11}$")
#: A login, list id or API key is one token: no ';' (the Subject's field separator), no CR/LF.
SUBJECT_TOKEN = re.compile(r"^[A-Za-z0-9_\-.+=/]{1,128}$")
_PHONE_PUNCTUATION = re.compile(r"[\s\-().]")
MASK = "***"


class Mode(Enum):
    """Who receives the SMS (``gateway.mode``)."""

    OWN_NUMBER = "own_number"  # mode b: To <login>@…, Subject <alpha-name>
    PHONE = "phone"  # modes a, d: To <recipient>@…
    LIST = "list"  # modes c, e: To <login>@…, a saved recipient list


class Auth(Enum):
    """What proves the request (``gateway.auth``)."""

    NONE = "none"  # only mode b: the gateway trusts the registered From address
    PASSWORD = "password"  # modes a, c
    API_KEY = "api_key"  # modes d, e


def normalize_phone(text: str) -> str:
    """E.164 digits without '+': '+380 50 123-45-67' and '0501234567' → '380501234567'.

    A Ukrainian national number (0 and nine digits) gets the 380 country code,
    since that is what AlphaSMS users type. Raises ValueError with a sentence
    a person can act on.
    """
    digits = _PHONE_PUNCTUATION.sub("", str(text))
    international = digits.startswith(("+", "00"))
    digits = digits[1:] if digits.startswith("+") else digits[2:] if international else digits
    if not digits.isdigit():
        raise ValueError(f"{text!r} is not a phone number (digits only, e.g. 380501234567)")
    if len(digits) == 10 and digits.startswith("0") and not international:
        digits = "38" + digits
    if not 8 <= len(digits) <= 15 or digits.startswith("0"):
        raise ValueError(
            f"{text!r} is not an international number: want 8 to 15 digits with the country "
            "code, e.g. 380501234567"
        )
    return digits


def check_alpha_name(name: str) -> str | None:
    if not ALPHA_NAME.match(name):
        return (
            f"{name!r} is not a valid alpha-name: "
            "at most 11 Latin letters, digits, space, '-' or '.'"
        )
    return None


def check_token(value: str) -> str | None:
    if not SUBJECT_TOKEN.match(value):
        return (
            "must be a single token of letters, digits and _-.+=/ (no ';', spaces or line breaks)"
        )
    return None


@dataclass(frozen=True)
class Request:
    """One Email2SMS request to make: where it goes and the Subject that authorises it."""

    to: str
    subject: Secret
    masked_subject: str
    recipient: str  # the phone number or 'list:<id>' the SMS is for, for logs and blocking


@dataclass(frozen=True)
class Account:
    """``gateway:`` in the config, validated."""

    login: str
    sender: str
    domain: str = DEFAULT_DOMAIN
    mode: Mode = Mode.OWN_NUMBER
    auth: Auth = Auth.NONE
    recipients: tuple[str, ...] = ()
    list_id: str | None = None
    password: Secret | None = None
    api_key: Secret | None = None
    max_length: int = SMS_MAX_CHARS

    def requests(self, sender: str | None = None) -> list[Request]:
        """The requests that deliver one SMS, one per recipient (modes a and d take one number)."""
        alpha = sender or self.sender
        if self.mode is Mode.OWN_NUMBER:  # mode b
            return [Request(self._address(self.login), Secret(alpha), alpha, self.login)]
        if self.mode is Mode.PHONE:  # mode a or d
            return [
                Request(self._address(phone), *self._subject(alpha), recipient=phone)
                for phone in self.recipients
            ]
        assert self.list_id is not None  # mode c or e; validated in config
        return [
            Request(
                self._address(self.login),
                *self._subject(alpha, self.list_id),
                recipient=f"list:{self.list_id}",
            )
        ]

    def _address(self, number: str) -> str:
        return f"{number}@{self.domain}"

    def _subject(self, alpha: str, *extra: str) -> tuple[Secret, str]:
        if self.auth is Auth.PASSWORD:
            assert self.password is not None
            secret_fields = [self.login, self.password.reveal()]
            masked_fields = [self.login, MASK]
        else:
            assert self.api_key is not None
            secret_fields = [self.api_key.reveal()]
            masked_fields = [MASK]
        subject = ";".join([alpha, *secret_fields, *extra])
        masked = ";".join([alpha, *masked_fields, *extra])
        return Secret(subject), masked
