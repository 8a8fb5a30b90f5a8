"""TLS contexts for IMAP and SMTP: certificate and host name checks always on."""

from __future__ import annotations

import ssl


def client_context(ca_file: str | None = None) -> ssl.SSLContext:
    """A verifying client context; ``ca_file`` replaces the system CAs (a private CA).

    Both imaplib/imapclient and smtplib verify nothing unless handed a context
    like this one, so every connection forwarder opens goes through here.
    """
    context = ssl.create_default_context(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context
