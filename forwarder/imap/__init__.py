"""IMAP: the edge that reads the user's mailbox.

Holds one connection and its commands (``connection``), BODYSTRUCTURE reading and the
partial fetch it allows (``bodystructure``, pure), which mail is new — checkpoints,
UIDVALIDITY, baselines, late arrivals (``checkpoints``) — and push by IDLE (``idle``).

May import: imapclient, ``forwarder.mail``, ``forwarder.text``, ``forwarder.tls``,
``forwarder.backoff``, ``forwarder.store`` (checkpoints only). Never the rules or delivery.
"""
