"""Logging in to IMAP: LOGIN with the password, or SASL XOAUTH2 / OAUTHBEARER with a token.

With OAuth2 the token comes from the account's ``TokenSource``. A server that refuses a
saved token (``NO [AUTHENTICATIONFAILED]``: it expired early, or was revoked server-side)
gets one more try with a freshly refreshed one, on the same connection, before the login
counts as refused; a refusal of a token just refreshed is reported (a wrong username, IMAP
disabled for the account), and not retried with another refresh.
"""

from __future__ import annotations

import logging

import imapclient
from imapclient.exceptions import LoginError

from forwarder.config import ImapConfig
from forwarder.oauth import tokens
from forwarder.oauth.tokens import AccessToken

logger = logging.getLogger(__name__)


class Refused(Exception):
    """The server refused a token just refreshed: a person must look (``connection`` makes
    it an ``AuthError``)."""


class Unavailable(Exception):
    """The server cannot log anybody in just now (RFC 5530 ``[UNAVAILABLE]``): retry soon."""


def authenticate(client: imapclient.IMAPClient, config: ImapConfig) -> AccessToken | None:
    """Log ``client`` in; return the access token used (None for a password login).

    A password login's ``LoginError`` propagates (the caller words it). OAuth2 failures
    raise ``tokens.TokenError`` (``LoginRequired``, ``TokenRefused``, ``TokenUnavailable``),
    ``Refused`` or ``Unavailable``; ``connection`` turns them into its own errors.
    """
    if config.oauth2 is None:
        client.login(config.username, config.password.reveal())
        return None
    settings = config.oauth2
    source = tokens.source_for(settings)
    while True:
        # Valid until the IDLE renewal after next at least, where an expiring token is
        # renewed (idle.py): a token that would not last that long is refreshed now.
        token = source.access_token(valid_for=config.idle_renew)
        try:
            if settings.mechanism == "oauthbearer":
                client.oauthbearer_login(config.username, token.value.reveal())
            else:
                client.oauth2_login(config.username, token.value.reveal())
            return token
        except LoginError as exc:
            said = str(exc)
            if "UNAVAILABLE" in said.upper():  # RFC 5530: the server's own trouble
                raise Unavailable(
                    f"IMAP server {config.host} cannot log anybody in just now: {said}"
                ) from None
            source.invalidate(token)
            if token.fresh:
                raise Refused(
                    f"IMAP server {config.host} refused the OAuth2 token for "
                    f"{config.username!r} ({settings.mechanism.upper()}: {said}): is "
                    f"imap.username the account you signed in as? ({settings.login_command})"
                ) from None
            logger.info(
                "IMAP %s refused the saved access token for %s (%s); refreshing it",
                config.host,
                config.username,
                said,
            )
