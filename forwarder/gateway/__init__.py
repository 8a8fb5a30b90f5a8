"""The AlphaSMS Email2SMS gateway: how to address it, what to send it, what it answers.

Holds the account and its addressing modes a–e (``account``), the request e-mail for
one SMS (``request``), the parser of the gateway's error replies (``replies``) — all
three pure — and the reply tracker that records replies and acts on them (``tracker``).

May import: ``forwarder.mail``, ``forwarder.text``, ``forwarder.configfile``; the
tracker alone also ``forwarder.store``.
"""
