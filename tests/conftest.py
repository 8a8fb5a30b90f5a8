"""Fixtures every test may use: a real Dovecot, the Email2SMS gateway simulator, a clean env.

Server fixtures start real servers, wait for them with a deadline, and always tear them down.
Tests that use them are marked ``server`` automatically (``-m "not server"`` skips them).
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.support.idp import IdentityProvider
from tests.support.servers.dovecot import (
    INSTALL_HINT,
    SPECIAL_USE_SENT,
    DovecotServer,
    ImapAccount,
    dovecot_installed,
)
from tests.support.servers.gateway import GatewaySimulator

SERVER_FIXTURES = frozenset(
    {
        "dovecot_server",
        "imap_user",
        "dovecot_factory",
        "dovecot_with_sent",
        "gateway",
        "gateway_factory",
    }
    | {"oauth_imap", "oauth_user"}
)
_user_numbers = itertools.count(1)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.server)


def _require_dovecot() -> None:
    """Skip without Dovecot on a laptop; in CI (env CI set) a missing server is a failure,
    because a server test that silently skips there tests nothing."""
    if dovecot_installed():
        return
    message = f"dovecot not installed: {INSTALL_HINT}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(autouse=True)
def _restore_environment() -> Iterator[None]:
    """Whatever a test does to os.environ is undone afterwards.

    Not built on the ``monkeypatch`` fixture: this one must be torn down after it, and a
    test may also write os.environ directly, which monkeypatch would not know to undo.
    """
    saved = dict(os.environ)
    yield
    for name in set(os.environ) - set(saved):
        del os.environ[name]
    for name, value in saved.items():
        if os.environ.get(name) != value:
            os.environ[name] = value


@pytest.fixture(scope="session")
def dovecot_server() -> Iterator[DovecotServer]:
    """One Dovecot (TLS on) for the whole session; use ``imap_user`` for a fresh mailbox.

    Shared: do not stop, freeze or restart it; ``dovecot_factory`` gives a private one.
    """
    _require_dovecot()
    with DovecotServer(tls=True) as server:
        yield server


@pytest.fixture(scope="session")
def dovecot_with_sent() -> Iterator[DovecotServer]:
    """A plaintext Dovecot whose users have an RFC 6154 ``\\Sent`` folder ("Sent"), as Gmail
    and Microsoft 365 accounts do (receipts). Shared like ``dovecot_server``."""
    _require_dovecot()
    with DovecotServer(tls=False, extra_config=SPECIAL_USE_SENT) as server:
        yield server


@pytest.fixture
def imap_user(dovecot_server: DovecotServer) -> ImapAccount:
    # Dovecot's default auth_username_chars allow letters, digits and ".-_@".
    user = f"user{next(_user_numbers)}-{uuid.uuid4().hex[:8]}"
    return ImapAccount(
        host=dovecot_server.host,
        port=dovecot_server.port,
        tls_port=dovecot_server.tls_port,
        user=user,
        password=dovecot_server.password,
        ca_file=dovecot_server.ca_file,
        server=dovecot_server,
    )


@pytest.fixture
def dovecot_factory() -> Iterator[Callable[..., DovecotServer]]:
    """``dovecot_factory(tls=False, ...)`` starts a private Dovecot the test may stop, freeze
    and restart; every one is torn down after the test."""
    _require_dovecot()
    servers: list[DovecotServer] = []

    def make(**options: Any) -> DovecotServer:
        server = DovecotServer(**options)
        servers.append(server)
        server.start()
        return server

    yield make
    for server in reversed(servers):
        server.close()


@pytest.fixture(scope="session")
def oauth_imap() -> Iterator[tuple[IdentityProvider, DovecotServer]]:
    """An identity-provider simulator and a Dovecot (TLS off) whose XOAUTH2/OAUTHBEARER
    logins it checks (the ``oauth2`` passdb, RFC 7662 introspection); shared like
    ``dovecot_server``: use ``oauth_user`` for a fresh mailbox and act on its user only."""
    _require_dovecot()
    with (
        IdentityProvider() as idp,
        DovecotServer(tls=False, oauth2_introspection_url=idp.introspection_url) as server,
    ):
        yield idp, server


@dataclass(frozen=True)
class OAuthAccount(ImapAccount):
    idp: IdentityProvider = field(default=None, repr=False)  # type: ignore[assignment]


@pytest.fixture
def oauth_user(oauth_imap: tuple[IdentityProvider, DovecotServer]) -> OAuthAccount:
    """A fresh mailbox on the OAuth2 Dovecot; ``idp`` issues and checks its tokens."""
    idp, server = oauth_imap
    user = f"oauth{next(_user_numbers)}-{uuid.uuid4().hex[:8]}"
    return OAuthAccount(
        host=server.host,
        port=server.port,
        tls_port=None,
        user=user,
        password=server.password,
        ca_file=server.ca_file,
        server=server,
        idp=idp,
    )


@pytest.fixture
def idp() -> Iterator[IdentityProvider]:
    """A private identity-provider simulator (no Dovecot) the test may configure at will."""
    with IdentityProvider() as provider:
        yield provider


@pytest.fixture(autouse=True)
def _fresh_token_sources() -> Iterator[None]:
    """Each test starts without the token sources an earlier one left in this process."""
    yield
    from forwarder.oauth.tokens import forget_sources

    forget_sources()


@pytest.fixture
def gateway() -> Iterator[GatewaySimulator]:
    """A plaintext gateway simulator without AUTH; ``gateway_factory`` for TLS/AUTH."""
    with GatewaySimulator() as simulator:
        yield simulator


@pytest.fixture
def gateway_factory() -> Iterator[Callable[..., GatewaySimulator]]:
    """``gateway_factory(tls="starttls", username="u", password="p", deliver=...)``;
    every simulator is torn down after the test."""
    simulators: list[GatewaySimulator] = []

    def make(**options: Any) -> GatewaySimulator:
        simulator = GatewaySimulator(**options)
        simulators.append(simulator)
        simulator.start()
        return simulator

    yield make
    for simulator in reversed(simulators):
        simulator.close()


@pytest.fixture
def clock():
    """A clock the test moves by hand (delivery windows, delays) instead of waiting."""
    from tests.support.delivery import FakeClock

    return FakeClock()


@pytest.fixture
def daemons() -> Iterator[list[Any]]:
    """In-process daemons a test made (``tests.support.delivery.start``); closed afterwards."""
    made: list[Any] = []
    yield made
    for daemon in made:
        for intake in daemon.intakes.values():
            intake.close()
        daemon.delivery.close()
        daemon.store.close()
