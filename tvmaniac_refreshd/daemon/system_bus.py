"""The system bus, for the event sources: a service's owner, its properties, and its signals.

jeepney (the D-Bus library the keyring code already uses) over a blocking connection per
source, each read by a thread of its own that sleeps in ``recv`` until a matching signal comes:
no polling. A signal is believed only if its sender is the unique name that owns the service's
well-known name right now (``GetNameOwner``): anyone on the system bus may emit a signal with
any interface and member, but only the owner's unique name is its sender.

jeepney's exceptions (and OSError from the socket) are translated here, once, into
``BusUnavailable``.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Mapping
from typing import Any

from tvmaniac_refreshd.core.logs import get_logger

DEFAULT_ADDRESS = "unix:path=/var/run/dbus/system_bus_socket"
PROPERTIES = "org.freedesktop.DBus.Properties"
BUS = "org.freedesktop.DBus"
# A call on the system bus that takes longer than this means the bus is not usable.
CALL_TIMEOUT = 5.0


class BusUnavailable(Exception):  # not an error of ours: "this source is not there"
    """No system bus, or the service is not on it, or it did not answer."""


def bus_address(environ: Mapping[str, str]) -> str:
    return environ.get("DBUS_SYSTEM_BUS_ADDRESS") or DEFAULT_ADDRESS


class SignalWatch:
    """One connection to the system bus, watching one service's signals on a thread.

    ``start`` returns once the match is in place, so no change between reading the initial
    state and listening is lost: read the state after ``start``.
    """

    def __init__(self, environ: Mapping[str, str], service: str) -> None:
        from jeepney.io.blocking import open_dbus_connection  # noqa: PLC0415  # Linux only

        self.service = service
        try:
            self._conn = open_dbus_connection(bus=bus_address(environ))
        except Exception as exc:  # jeepney raises OSError, ValueError, KeyError, its own
            raise BusUnavailable(f"no system bus: {exc}") from None
        self._owner: str | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    def owner(self) -> str:
        """The unique name that owns ``service`` now; BusUnavailable if nobody does."""
        from jeepney import DBusAddress, new_method_call  # noqa: PLC0415

        bus = DBusAddress(
            "/org/freedesktop/DBus",
            bus_name="org.freedesktop.DBus",
            interface="org.freedesktop.DBus",
        )
        (owner,) = self._call(new_method_call(bus, "GetNameOwner", "s", (self.service,)))
        self._owner = str(owner)
        return self._owner

    def get(self, path: str, interface: str, name: str) -> Any:  # noqa: ANN401  # D-Bus variant
        """One property of the service's object ``path``."""
        from jeepney import DBusAddress, new_method_call  # noqa: PLC0415

        address = DBusAddress(path, bus_name=self.service, interface=PROPERTIES)
        ((_signature, value),) = self._call(
            new_method_call(address, "Get", "ss", (interface, name))
        )
        return value

    def call(self, path: str, interface: str, member: str) -> tuple[Any, ...]:
        """A method of the service's object ``path`` that takes no argument; its reply."""
        from jeepney import DBusAddress, new_method_call  # noqa: PLC0415

        address = DBusAddress(path, bus_name=self.service, interface=interface)
        return self._call(new_method_call(address, member))

    def _call(self, message: Any) -> tuple[Any, ...]:  # noqa: ANN401
        from jeepney import MessageType  # noqa: PLC0415

        try:
            reply = self._conn.send_and_get_reply(message, timeout=CALL_TIMEOUT)
        except Exception as exc:  # a timeout, a closed socket, a malformed reply
            raise BusUnavailable(f"{self.service}: {exc}") from None
        if reply.header.message_type == MessageType.error:
            raise BusUnavailable(f"{self.service}: {reply.body[0] if reply.body else 'error'}")
        return tuple(reply.body)

    def start(
        self,
        *,
        path: str,
        interface: str,
        member: str,
        on_signal: Callable[[tuple[Any, ...]], object],
        first: Callable[[], object] = lambda: None,
        on_owner: Callable[[str], object] | None = None,
    ) -> None:
        """Call ``on_signal(body)`` for each such signal the service's owner emits.

        ``first`` runs once the match is in place and before the thread starts: the place to
        read the initial state (a signal sent meanwhile waits in the queue). After that, only
        the thread uses the connection: two readers of one connection would steal each
        other's replies.

        ``on_owner(new_owner)``: the service's name changed hands ("" when it left the bus: a
        stopped NetworkManager must not leave the last state standing for good).
        """
        from jeepney import DBusAddress, MatchRule, new_method_call  # noqa: PLC0415
        from jeepney.low_level import HeaderFields  # noqa: PLC0415

        # The bus delivers only what its owner sends (sender= is resolved by the bus), so other
        # peers' broadcasts never wake us; the local filter cannot compare a well-known name with
        # a message's unique sender, so it leaves sender out, and the check below is ours.
        rule = MatchRule(
            type="signal", sender=self.service, interface=interface, member=member, path=path
        )
        local = MatchRule(type="signal", interface=interface, member=member, path=path)
        queue = self._conn.filter(local, bufsize=64).__enter__()
        bus = DBusAddress(
            "/org/freedesktop/DBus",
            bus_name="org.freedesktop.DBus",
            interface="org.freedesktop.DBus",
        )
        self._call(new_method_call(bus, "AddMatch", "s", (rule.serialise(),)))
        if on_owner is not None:
            owners = MatchRule(
                type="signal",
                sender=BUS,
                interface=BUS,
                member="NameOwnerChanged",
                path="/org/freedesktop/DBus",
            )
            owners.add_arg_condition(0, self.service)
            self._conn.filter(owners, queue=queue).__enter__()
            self._call(new_method_call(bus, "AddMatch", "s", (owners.serialise(),)))
        log = get_logger()

        def run() -> None:
            while not self._closed:
                try:
                    message = self._conn.recv_until_filtered(queue)
                except Exception as exc:  # the connection closed: by us, or the bus went away
                    if not self._closed:
                        log.warning("events.bus_lost", service=self.service, error=str(exc))
                    return
                sender = message.header.fields.get(HeaderFields.sender)
                if sender == BUS and on_owner is not None:  # only the bus has that name
                    _name, _old, new = message.body
                    self._owner = new or None
                    log.info("events.owner_changed", service=self.service, owner=new or None)
                    self._handle(on_owner, new)
                    continue
                if sender != self._owner and not self._owner_is(sender):
                    log.warning(
                        "events.foreign_signal", service=self.service, member=member, sender=sender
                    )
                    continue
                self._handle(on_signal, tuple(message.body))

        first()
        self._thread = threading.Thread(target=run, name=f"watch {self.service}", daemon=True)
        self._thread.start()

    def _handle(self, handler: Callable[[Any], object], argument: object) -> None:
        try:
            handler(argument)
        except Exception as exc:  # a bug in a handler, or the service gone mid-call
            get_logger().exception("events.handler_failed", service=self.service, error=repr(exc))

    def _owner_is(self, sender: object) -> bool:
        """Whether ``sender`` owns the service now (it may have restarted since we asked)."""
        try:
            return sender == self.owner()
        except BusUnavailable:
            return False

    def close(self) -> None:
        self._closed = True
        # shutdown, not just close: close does not wake a thread blocked in recv on the socket.
        with contextlib.suppress(OSError):
            self._conn.sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self._conn.close()
