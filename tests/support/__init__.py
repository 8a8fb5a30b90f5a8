"""Helpers the tests share; no test lives here, and no test imports from another test module.

- ``servers/``: a real Dovecot and the Email2SMS gateway simulator (no pytest: the demo and
  the benchmarks drive them too), and test mail built with the stdlib.
- ``configs``: config files (YAML) and ``ImapConfig`` values pointing at those servers.
- ``daemonproc``: ``forwarder run`` as a child process, with its checkpoints to wait on.
- ``delivery``: an in-process daemon on an injected clock, for the delivery tests.
- ``rules``: compile a rules text, build a mail, the fixed times the rule tests decide at.
- ``shared``: the ``../shared`` folder beside the repository, for the tests that read it.
"""
