"""Headless control of gnome-keyring's default collection over D-Bus.

Ported from the verified recipe in /work/shared/recipes/real-components.md (section 3.3).
gnome-keyring's private interface (``CreateWithMasterPassword`` /
``UnlockWithMasterPassword``) creates and unlocks the login collection without the GUI
prompter, which cannot run in tests (there is no display, and a prompt would hang).

Usage as a script (against the bus in ``DBUS_SESSION_BUS_ADDRESS``, or ``--bus ADDRESS``)::

    python -m tests.support.kr_ctl [--bus ADDRESS] status | lock | unlock | init

The password for ``unlock`` and ``init`` is read from stdin, never from argv, so it does
not show up in ``ps`` output.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from jeepney import DBusAddress, HeaderFields, new_method_call
from jeepney.io.blocking import DBusConnection, open_dbus_connection

SECRETS_BUS_NAME = "org.freedesktop.secrets"
SS = DBusAddress(
    "/org/freedesktop/secrets",
    bus_name=SECRETS_BUS_NAME,
    interface="org.freedesktop.Secret.Service",
)
INTERNAL = SS.with_interface("org.gnome.keyring.InternalUnsupportedGuiltRiddenInterface")
DBUS = DBusAddress(
    "/org/freedesktop/DBus", bus_name="org.freedesktop.DBus", interface="org.freedesktop.DBus"
)
# "/" is how the Secret Service spells "no such object" for an unset alias.
NO_OBJECT = "/"
# Every D-Bus call here is answered locally in milliseconds; a bound stops a wedged
# daemon from hanging the whole test session.
CALL_TIMEOUT = 10.0


class KeyringControlError(RuntimeError):
    """A D-Bus call to the Secret Service returned an error reply."""


@contextmanager
def connect(bus: str = "SESSION") -> Iterator[DBusConnection]:
    """Open a blocking jeepney connection to ``bus`` (an address, or "SESSION")."""
    conn = open_dbus_connection(bus=bus)
    try:
        yield conn
    finally:
        conn.close()


def call(
    conn: DBusConnection,
    addr: DBusAddress,
    method: str,
    signature: str | None = None,
    body: tuple[Any, ...] = (),
) -> tuple[Any, ...]:
    """Call ``method`` and return the reply body, raising on an error reply."""
    reply = conn.send_and_get_reply(
        new_method_call(addr, method, signature, body), timeout=CALL_TIMEOUT
    )
    if reply.header.message_type.name == "error":
        error_name = reply.header.fields.get(HeaderFields.error_name, "unknown error")
        raise KeyringControlError(f"{method}: {error_name}: {reply.body}")
    return tuple(reply.body)


def name_has_owner(conn: DBusConnection, name: str = SECRETS_BUS_NAME) -> bool:
    """Return whether ``name`` is currently owned on the bus."""
    (owned,) = call(conn, DBUS, "NameHasOwner", "s", (name,))
    return bool(owned)


def wait_for_name(
    bus: str, name: str = SECRETS_BUS_NAME, timeout: float = 10.0, interval: float = 0.02
) -> bool:
    """Poll until ``name`` is owned on ``bus``; return False when ``timeout`` runs out."""
    deadline = time.monotonic() + timeout
    with connect(bus) as conn:
        while True:
            if name_has_owner(conn, name):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(interval)


def default_collection(conn: DBusConnection) -> str:
    """Return the object path of the "default" alias, or "/" when there is none."""
    (path,) = call(conn, SS, "ReadAlias", "s", ("default",))
    return str(path)


def is_locked(conn: DBusConnection, path: str) -> bool:
    """Return the ``Locked`` property of the collection at ``path``."""
    props = DBusAddress(
        path, bus_name=SECRETS_BUS_NAME, interface="org.freedesktop.DBus.Properties"
    )
    ((_, locked),) = call(conn, props, "Get", "ss", ("org.freedesktop.Secret.Collection", "Locked"))
    return bool(locked)


def _plain_secret(conn: DBusConnection, password: str) -> tuple[str, bytes, bytes, str]:
    # The "plain" algorithm is fine: the password travels over a private,
    # per-test unix socket, and the internal interface requires a session anyway.
    _, session = call(conn, SS, "OpenSession", "sv", ("plain", ("s", "")))
    return (session, b"", password.encode(), "text/plain")


def create_collection(conn: DBusConnection, password: str, label: str = "login") -> str:
    """Create a collection protected by ``password`` and make it the default alias."""
    (path,) = call(
        conn,
        INTERNAL,
        "CreateWithMasterPassword",
        "a{sv}(oayays)",
        (
            {"org.freedesktop.Secret.Collection.Label": ("s", label)},
            _plain_secret(conn, password),
        ),
    )
    call(conn, SS, "SetAlias", "so", ("default", path))
    return str(path)


def lock(conn: DBusConnection, path: str) -> None:
    """Lock the collection at ``path``."""
    call(conn, SS, "Lock", "ao", ([path],))


def unlock(conn: DBusConnection, path: str, password: str) -> None:
    """Unlock the collection at ``path``; raises KeyringControlError on a wrong password."""
    call(
        conn,
        INTERNAL,
        "UnlockWithMasterPassword",
        "o(oayays)",
        (path, _plain_secret(conn, password)),
    )


def init(conn: DBusConnection, password: str) -> str:
    """Ensure an unlocked default collection exists; return its object path."""
    path = default_collection(conn)
    if path == NO_OBJECT:
        return create_collection(conn, password)
    if is_locked(conn, path):
        unlock(conn, path, password)
    return path


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; see the module docstring."""
    parser = argparse.ArgumentParser(prog="kr_ctl", description=__doc__.splitlines()[0])
    parser.add_argument("--bus", default="SESSION", help="D-Bus address (default: session bus)")
    parser.add_argument("command", choices=["status", "lock", "unlock", "init"])
    args = parser.parse_args(argv)
    with connect(args.bus) as conn:
        if args.command == "init":
            path = init(conn, sys.stdin.read().rstrip("\n"))
        else:
            path = default_collection(conn)
            if path == NO_OBJECT:
                print("collection=/ (none)")
                return 1
            if args.command == "lock":
                lock(conn, path)
            elif args.command == "unlock":
                unlock(conn, path, sys.stdin.read().rstrip("\n"))
        print(f"collection={path} locked={is_locked(conn, path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
