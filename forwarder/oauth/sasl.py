"""Pure SASL pieces: the XOAUTH2 client response, and what a server's words about a token mean.

IMAP uses imapclient's own ``oauth2_login`` / ``oauthbearer_login``; SMTP gets its XOAUTH2
string here (smtplib base64-encodes what the authobject returns).
"""

from __future__ import annotations

import re
from collections.abc import Callable

#: Servers that end a session because its token ran out say so in the BYE text, e.g.
#: Microsoft's "BYE Session invalidated - AccessTokenExpired".
_EXPIRED = re.compile(
    r"AccessTokenExpired|token\W+(?:has\W+)?expired|expired\W+token|session\W+invalidated",
    re.IGNORECASE,
)


def xoauth2(user: str, access_token: str) -> str:
    """The XOAUTH2 initial client response (before base64), as Google and Microsoft define it."""
    return f"user={user}\x01auth=Bearer {access_token}\x01\x01"


def smtp_authobject(user: str, access_token: str) -> Callable[[bytes | None], str]:
    """smtplib's ``authobject``: the response first, then an empty line to any challenge.

    After a refused token the server sends a 334 with a JSON error and waits for an empty
    response before its 535 (Google's documented exchange); answering the token again
    would only be refused again.
    """

    def respond(challenge: bytes | None = None) -> str:
        return xoauth2(user, access_token) if challenge is None else ""

    return respond


def says_token_expired(text: str) -> bool:
    """Does a BYE (or a NO) text say that the session's token expired or was invalidated?"""
    return bool(_EXPIRED.search(text))
