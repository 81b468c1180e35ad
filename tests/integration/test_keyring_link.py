"""One D-Bus connection and one encrypted session per process, with the real gnome-keyring.

Every call is watched at the D-Bus level (jeepney's connection, wrapped): which connections are
opened, which methods are called, and with which session algorithm.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import jeepney.io.blocking
import pytest

from tests.support.keyring_session import KeyringSession
from tvmaniac_refreshd.config.settings import StoreSettings
from tvmaniac_refreshd.core.errors import StoreUnavailable
from tvmaniac_refreshd.core.tokens import TokenDocument, TokenSet
from tvmaniac_refreshd.storage import secret_service
from tvmaniac_refreshd.storage.keyring_store import KeyringStore, default_backend

pytestmark = pytest.mark.keyring


@dataclass
class Traffic:
    """What the process sent to the bus: one list of (member, first argument) per connection."""

    connections: list[list[tuple[str, object]]] = field(default_factory=list)
    opened: list[Any] = field(default_factory=list)

    def calls(self, member: str) -> list[object]:
        return [arg for sent in self.connections for name, arg in sent if name == member]


@pytest.fixture
def traffic(monkeypatch: pytest.MonkeyPatch) -> Iterator[Traffic]:
    """Record every connection the direct calls open and every method call they send."""
    seen = Traffic()
    real_open = jeepney.io.blocking.open_dbus_connection

    def watched_open(*args: Any, **kwargs: Any) -> Any:
        connection = real_open(*args, **kwargs)
        sent: list[tuple[str, object]] = []
        seen.connections.append(sent)
        seen.opened.append(connection)
        real_send = connection.send_and_get_reply

        def send_and_get_reply(message: Any, **kw: Any) -> Any:
            body = message.body
            sent.append((message.header.fields.get(jeepney.HeaderFields.member), body[:1]))
            return real_send(message, **kw)

        connection.send_and_get_reply = send_and_get_reply
        return connection

    monkeypatch.setattr(jeepney.io.blocking, "open_dbus_connection", watched_open)
    forget = getattr(secret_service, "_link", None)  # (absent before the link existed)
    if forget is not None:
        forget.close()  # start from no connection, as a new process does
    yield seen
    if forget is not None:
        forget.close()


def document(account: str, n: int) -> TokenDocument:
    tokens = TokenSet(
        access_token=f"access-{n}",
        refresh_token=f"refresh-{n}",
        created_at=1_700_000_000,
        expires_in=3600,
        expires_at=1_700_003_000,
    )
    return TokenDocument(account, "trakt", tokens, "f" * 16, 1_700_000_000)


def store_for(session: KeyringSession) -> KeyringStore:
    return KeyringStore(StoreSettings(), lambda: default_backend(session.env, timeout=10))


def test_a_refreshs_keyring_calls_share_one_connection_and_one_session(
    clean_keyring: KeyringSession, traffic: Traffic
) -> None:
    """Reads, a write and its read-back, a client secret: one connection, one key exchange."""
    store = store_for(clean_keyring)
    store.save(document("default", 1))
    store.save_client_secret("default", "s3cret")
    assert store.load("default") == document("default", 1)
    assert store.load_client_secret("default") == "s3cret"
    store.save(document("default", 2))  # in place this time
    assert store.load("default") == document("default", 2)

    assert len(traffic.connections) == 1
    assert traffic.calls("OpenSession") == [(secret_service._EncryptedSession.ALGORITHM,)]


def test_a_new_store_object_keeps_the_processs_connection(
    clean_keyring: KeyringSession, traffic: Traffic
) -> None:
    """The daemon's stores come and go (a reload, a failure); the connection stays."""
    store_for(clean_keyring).save(document("a", 1))
    assert store_for(clean_keyring).load("a") == document("a", 1)

    assert len(traffic.connections) == 1


def test_a_dropped_connection_is_opened_again_encrypted(
    clean_keyring: KeyringSession, traffic: Traffic
) -> None:
    """The bus closed underneath: the next call reconnects, with a new encrypted session."""
    store = store_for(clean_keyring)
    store.save(document("default", 1))
    traffic.opened[0].sock.shutdown(2)  # as a restarted bus or service leaves it

    assert store.load("default") == document("default", 1)
    store.save(document("default", 2))
    assert store.load("default") == document("default", 2)
    assert len(traffic.connections) == 2
    assert traffic.calls("OpenSession") == [(secret_service._EncryptedSession.ALGORITHM,)] * 2


def test_a_closed_session_is_opened_again_encrypted(
    clean_keyring: KeyringSession, traffic: Traffic
) -> None:
    """The Secret Service forgot the session (it restarted): a new one, never ``plain``."""
    store = store_for(clean_keyring)
    store.save(document("default", 1))
    session = secret_service._link.session
    assert session is not None
    connection = secret_service._link.connection
    closing = jeepney.new_method_call(
        jeepney.DBusAddress(
            session.path,
            bus_name=secret_service.BUS_NAME,
            interface="org.freedesktop.Secret.Session",
        ),
        "Close",
    )
    connection.send_and_get_reply(closing, timeout=10)

    store.save(document("default", 2))
    assert store.load("default") == document("default", 2)
    algorithms = traffic.calls("OpenSession")
    assert algorithms == [(secret_service._EncryptedSession.ALGORITHM,)] * 2


def test_planning_reads_every_account_with_one_get_secrets(
    clean_keyring: KeyringSession, traffic: Traffic
) -> None:
    """The daemon's plan: one GetSecrets for all, over the encrypted session; none one by one."""
    store = store_for(clean_keyring)
    names = [f"account{n}" for n in range(5)]
    for n, name in enumerate(names):
        store.save(document(name, n))
    sent_before = len(traffic.connections[0])

    with store.read_ahead([*names, "nobody"]):
        loaded = [store.load(name) for name in [*names, "nobody"]]

    assert loaded == [document(name, n) for n, name in enumerate(names)] + [None]
    planning = [member for member, _ in traffic.connections[0][sent_before:]]
    assert planning.count("GetSecrets") == 1
    assert "GetSecret" not in planning
    assert traffic.calls("OpenSession") == [(secret_service._EncryptedSession.ALGORITHM,)]


def test_planning_a_locked_keyring_reads_nothing_in_bulk(
    clean_keyring: KeyringSession, traffic: Traffic
) -> None:
    """Locked: the bulk read gives nothing, and each load reports the lock as it always did."""
    store = store_for(clean_keyring)
    store.save(document("default", 1))
    clean_keyring.lock()

    with store.read_ahead(["default"]), pytest.raises(StoreUnavailable, match="locked"):
        store.load("default")
