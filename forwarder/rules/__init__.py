"""Rules: which mail is important (pure: a compiled rule set decides a ``Mail`` at ``now``).

Holds the rule compiler and runtime (``ruleset``), the value matchers rules are built
from (``patterns``), the built-in guards that run before any rule (``guards``), and the
rule tests written in the config (``ruletests``).

May import: ``forwarder.mail``, ``forwarder.text``, ``forwarder.configfile``,
``forwarder.gateway.account``. Never the I/O edges (IMAP, SMTP, SQLite, the scheduler).
"""
