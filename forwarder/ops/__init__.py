"""Operations: how forwarder tells the world that runs it how it is doing.

Holds the systemd notify protocol (``systemd``: READY, STATUS, RELOADING, STOPPING,
WATCHDOG), the watchdog's progress monitor and ping thread (``watchdog``), the one-line
STATUS text (``status``, pure), when READY may be sent (``readiness``, pure), log
formats (``logs``: plain or one JSON object per line, both scrubbed of secrets),
Prometheus metrics and their HTTP endpoint (``metrics``), the healthchecks.io-style
dead-man's switch (``health``), and the self-alert policy that decides when to text the
owner that the mailbox cannot be read (``alerts``, pure); ``runtime.Operations`` puts
them behind the few calls the daemon makes.

Each piece is a small object the daemon feeds with values; none of them reads the
config file, the state file or a mailbox, so each is tested on its own.

May import: the standard library, ``prometheus_client`` (``metrics`` only),
``forwarder.configfile`` and ``forwarder.config`` (settings values),
``forwarder.gateway.account`` (the mask), ``forwarder.delivery.states`` (the outbox
states, for metrics); ``runtime`` alone also ``forwarder.imap.connection`` (its error
classes, to sort failures) and ``forwarder.imap.idle`` (its time budgets). Never the
daemon, the store, the rules or the delivery edge. ``status``, ``readiness`` and
``alerts`` are pure (the pyproject import contract holds them to it).
"""
