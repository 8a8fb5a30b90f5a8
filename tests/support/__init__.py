"""Test support that is not a server fixture of its own: the OAuth2 identity-provider simulator.

Like ``tests.servers``, nothing here imports pytest, so a plain script can drive it too.
"""
