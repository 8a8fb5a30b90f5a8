"""Delivery: from a queued SMS request to the gateway, at most once where SMTP allows.

Holds the delivery policy — limits, dedup, summaries, read checks (``policy``, pure) —,
what settles a request in doubt (``receipts``, pure), the SMTP edge that hands requests
over (``sender``) and the worker that runs them (``worker``).

May import: ``forwarder.text``, ``forwarder.gateway``, ``forwarder.backoff``,
``forwarder.tls``, ``forwarder.store``. The policy module imports none of the I/O.
"""
