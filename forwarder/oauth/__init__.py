"""OAuth2 for IMAP and SMTP: provider profiles, the token file, refreshing, and signing in.

- ``profiles``: pure: what Microsoft, Google or a custom provider need (endpoints, scopes,
  which sign-in flow), turned into one ``OAuth2Settings`` value per token set ("account").
- ``tokenfile``: the tokens on disk, beside the state file: 0600, written atomically.
- ``tokens``: ``TokenSource``: a valid access token on demand, refreshed before it expires
  and at once when a server refused it; rotated refresh tokens saved before use; or the
  output of a ``token_command``. ``LoginRequired`` when a person must sign in again.
- ``login``: ``forwarder login``: the device-code flow (RFC 8628) or the loopback redirect
  flow with PKCE (RFC 8252, RFC 7636).
- ``sasl``: pure: the XOAUTH2 string for SMTP, and reading an IMAP BYE that says the token
  expired.

The HTTP side is Authlib's requests client (``authlib.integrations.requests_client``); no
token request is written by hand.
"""
