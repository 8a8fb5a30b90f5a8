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
from forwarder.imap.connection import AuthError, MailboxError, OAuthLoginRequired
from forwarder.oauth import tokens
from forwarder.oauth.tokens import AccessToken

logger = logging.getLogger(__name__)


def authenticate(client: imapclient.IMAPClient, config: ImapConfig) -> AccessToken | None:
    """Log ``client`` in; return the access token used (None for a password login).

    A password login's ``LoginError`` propagates (the caller words it); OAuth2 failures
    become ``OAuthLoginRequired``, ``AuthError`` or ``MailboxError`` here.
    """
    if config.oauth2 is None:
        client.login(config.username, config.password.reveal())
        return None
    settings = config.oauth2
    source = tokens.source_for(settings)
    while True:
        try:
            # Valid until the IDLE renewal after next at least, where an expiring token is
            # renewed (idle.py): a token that would not last that long is refreshed now.
            token = source.access_token(valid_for=config.idle_renew)
        except tokens.LoginRequired as exc:
            raise OAuthLoginRequired(str(exc), account=exc.account) from None
        except tokens.TokenRefused as exc:
            raise AuthError(str(exc)) from None
        except tokens.TokenError as exc:
            raise MailboxError(str(exc)) from None
        try:
            if settings.mechanism == "oauthbearer":
                client.oauthbearer_login(config.username, token.value.reveal())
            else:
                client.oauth2_login(config.username, token.value.reveal())
            return token
        except LoginError as exc:
            said = str(exc)
            if "UNAVAILABLE" in said.upper():  # RFC 5530: the server's own trouble
                raise MailboxError(
                    f"IMAP server {config.host} cannot log anybody in just now: {said}"
                ) from None
            source.invalidate(token)
            if token.fresh:
                raise AuthError(
                    f"IMAP server {config.host} refused the OAuth2 token for "
                    f"{config.username!r} ({settings.mechanism.upper()}: {said}): is "
                    f"imap.username the account you signed in as? ({settings.login_command})"
                ) from None
            logger.info("IMAP %s refused the saved access token for %s (%s); refreshing it",
                        config.host, config.username, said)  # fmt: skip
