"""NetworkManager, systemd-networkd and logind as the daemon sees them, on a private system bus.

Run as a process of its own (``python -m tests.support.fake_system_services SERVICE``), so
that its signals come from a unique name of its own, as the real services' do. It owns the
real well-known name, serves ``org.freedesktop.DBus.Properties`` on the real object path with
the real property names and types, answers what it does not know with the bus's real error
names, and emits the real signals (with their real signatures) when told on stdin:

    state 70            NetworkManager: State := 70, StateChanged(u) and PropertiesChanged
    operational routable networkd: OperationalState := routable, PropertiesChanged
    link 2 unmanaged    networkd: link 2's AdministrativeState := unmanaged, PropertiesChanged
                        on its object (as networkd does; ListLinks answers a(iso))
    sleep false         logind: PrepareForSleep(b)

``--impostor`` owns no name and only emits the same signals from the same path: what any
other peer on the system bus can do. Each command is answered "ok" once the signal is sent.
"""

from __future__ import annotations

import os
import select
import sys
from typing import Any

from jeepney import HeaderFields, MessageType, new_error, new_method_return
from jeepney.bus_messages import message_bus
from jeepney.io.blocking import open_dbus_connection
from jeepney.low_level import Header, Message

PROPERTIES = "org.freedesktop.DBus.Properties"
SERVICES: dict[str, dict[str, Any]] = {
    "NetworkManager": {
        "name": "org.freedesktop.NetworkManager",
        "path": "/org/freedesktop/NetworkManager",
        "interface": "org.freedesktop.NetworkManager",
        # NM_STATE_CONNECTED_GLOBAL, NM_CONNECTIVITY_FULL
        "properties": {
            "State": ("u", 70),
            "Connectivity": ("u", 4),
            "NetworkingEnabled": ("b", True),
        },
    },
    "networkd": {
        "name": "org.freedesktop.network1",
        "path": "/org/freedesktop/network1",
        "interface": "org.freedesktop.network1.Manager",
        "properties": {
            "OperationalState": ("s", "routable"),
            "CarrierState": ("s", "carrier"),
            "AddressState": ("s", "routable"),
        },
        # ifindex -> (name, AdministrativeState); networkd leaves lo unmanaged unless a
        # .network file matches it, and manages what its .network files match.
        "links": {1: ("lo", "unmanaged"), 2: ("eth0", "configured")},
        "link_interface": "org.freedesktop.network1.Link",
    },
    "logind": {
        "name": "org.freedesktop.login1",
        "path": "/org/freedesktop/login1",
        "interface": "org.freedesktop.login1.Manager",
        "properties": {"PreparingForSleep": ("b", False), "IdleHint": ("b", False)},
    },
}


def signal(
    path: str, interface: str, member: str, signature: str, body: tuple[Any, ...]
) -> Message:
    from jeepney.low_level import Endianness  # noqa: PLC0415

    header = Header(
        Endianness.little,
        MessageType.signal,
        flags=0,
        protocol_version=1,
        body_length=-1,
        serial=-1,
        fields={
            HeaderFields.path: path,
            HeaderFields.interface: interface,
            HeaderFields.member: member,
            HeaderFields.signature: signature,
        },
    )
    return Message(header, body)


def link_path(index: int) -> str:
    """networkd's object path of a link: its index escaped as sd-bus does (a leading digit
    becomes _3N: link 2 is .../link/_32)."""
    text = str(index)
    return f"/org/freedesktop/network1/link/_3{text[0]}{text[1:]}"


class Service:
    def __init__(self, kind: str, address: str, *, impostor: bool) -> None:
        self.spec = SERVICES[kind]
        self.kind = kind
        self.props: dict[str, tuple[str, Any]] = dict(self.spec["properties"])
        self.links: dict[int, list[str]] = {
            index: list(link) for index, link in self.spec.get("links", {}).items()
        }
        self.conn = open_dbus_connection(bus=address)
        self.destination: str | None = None
        if not impostor:
            reply = self.conn.send_and_get_reply(message_bus.RequestName(self.spec["name"], 4))
            if reply.body[0] != 1:  # DBUS_REQUEST_NAME_REPLY_PRIMARY_OWNER
                raise SystemExit(f"could not own {self.spec['name']}: {reply.body}")

    def serve_call(self, message: Message) -> None:
        fields = message.header.fields
        interface, member = fields.get(HeaderFields.interface), fields.get(HeaderFields.member)
        path = fields.get(HeaderFields.path)
        link = self._link_at(path)
        if link is not None:
            self._serve_link(message, link)
            return
        manager = (self.spec["path"], self.spec["interface"], "ListLinks")
        if self.links and (path, interface, member) == manager:
            listed = [(index, name, link_path(index)) for index, (name, _) in self.links.items()]
            self.conn.send(new_method_return(message, "a(iso)", (listed,)))
            return
        if path != self.spec["path"]:
            self.conn.send(
                new_error(
                    message,
                    "org.freedesktop.DBus.Error.UnknownObject",
                    "s",
                    (f"Unknown object '{path}'.",),
                )
            )
            return
        if interface == PROPERTIES and member == "Get":
            wanted_interface, name = message.body
            if wanted_interface != self.spec["interface"]:
                self.conn.send(
                    new_error(
                        message,
                        "org.freedesktop.DBus.Error.UnknownInterface",
                        "s",
                        (f"Unknown interface '{wanted_interface}'.",),
                    )
                )
            elif name not in self.props:
                self.conn.send(
                    new_error(
                        message,
                        "org.freedesktop.DBus.Error.UnknownProperty",
                        "s",
                        (f"Unknown property '{name}'.",),
                    )
                )
            else:
                self.conn.send(new_method_return(message, "v", (self.props[name],)))
            return
        if interface == PROPERTIES and member == "GetAll":
            self.conn.send(new_method_return(message, "a{sv}", (self.props,)))
            return
        self.conn.send(
            new_error(
                message,
                "org.freedesktop.DBus.Error.UnknownMethod",
                "s",
                (f"Unknown method '{member}' or interface '{interface}'.",),
            )
        )

    def _link_at(self, path: object) -> int | None:
        for index in self.links:
            if path == link_path(index):
                return index
        return None

    def _serve_link(self, message: Message, index: int) -> None:
        """A link object's properties, as networkd's (only the ones the daemon could ask)."""
        fields = message.header.fields
        interface, member = fields.get(HeaderFields.interface), fields.get(HeaderFields.member)
        props = {
            "AdministrativeState": ("s", self.links[index][1]),
            "OperationalState": (
                "s",
                "routable" if self.links[index][1] != "unmanaged" else "carrier",
            ),
        }
        if interface == PROPERTIES and member == "Get":
            wanted_interface, name = message.body
            if wanted_interface != self.spec["link_interface"]:
                error, text = "UnknownInterface", f"Unknown interface '{wanted_interface}'."
            elif name not in props:
                error, text = "UnknownProperty", f"Unknown property '{name}'."
            else:
                self.conn.send(new_method_return(message, "v", (props[name],)))
                return
        else:
            error, text = "UnknownMethod", f"Unknown method '{member}' or interface '{interface}'."
        self.conn.send(new_error(message, f"org.freedesktop.DBus.Error.{error}", "s", (text,)))

    def command(self, words: list[str]) -> None:
        """Emit what ``words`` say; ``... to :1.N`` sends it to that peer only (unicast)."""
        self.destination = words[3] if words[2:3] == ["to"] else None
        self._emit(words)
        self.sync()
        # A call that came with the bus's answer is parsed already, and select() would not
        # see it: serve it now, as a real service's event loop would.
        self.drain()

    def emit(self, message: Message) -> None:
        if self.destination is not None:
            message.header.fields[HeaderFields.destination] = self.destination
        self.conn.send(message)

    def sync(self) -> None:
        """A round trip to the bus: once it answers, it has routed everything we sent before."""
        serial = next(self.conn.outgoing_serial)
        self.conn.send(message_bus.GetId(), serial=serial)
        while True:
            reply = self.conn.receive(timeout=30)
            if reply.header.fields.get(HeaderFields.reply_serial) == serial:
                return
            if reply.header.message_type == MessageType.method_call:
                self.serve_call(reply)

    def _emit(self, words: list[str]) -> None:
        path, interface = self.spec["path"], self.spec["interface"]
        if words[0] == "state":
            value = int(words[1])
            self.props["State"] = ("u", value)
            self.emit(signal(path, interface, "StateChanged", "u", (value,)))
            self.conn.send(
                signal(
                    path,
                    PROPERTIES,
                    "PropertiesChanged",
                    "sa{sv}as",
                    (interface, {"State": ("u", value)}, []),
                )
            )
        elif words[0] == "operational":
            self.props["OperationalState"] = ("s", words[1])
            self.conn.send(
                signal(
                    path,
                    PROPERTIES,
                    "PropertiesChanged",
                    "sa{sv}as",
                    (interface, {"OperationalState": ("s", words[1])}, []),
                )
            )
        elif words[0] == "link":
            index, state = int(words[1]), words[2]
            self.links[index][1] = state
            self.conn.send(
                signal(
                    link_path(index),
                    PROPERTIES,
                    "PropertiesChanged",
                    "sa{sv}as",
                    (self.spec["link_interface"], {"AdministrativeState": ("s", state)}, []),
                )
            )
        elif words[0] == "sleep":
            going = words[1] == "true"
            self.props["PreparingForSleep"] = ("b", going)
            self.emit(signal(path, interface, "PrepareForSleep", "b", (going,)))
        else:
            raise SystemExit(f"unknown command {words}")

    def run(self) -> None:
        self.drain()  # what came with RequestName's reply (the owner's watchers ask at once)
        print("ready", self.conn.unique_name, flush=True)
        stdin = sys.stdin.fileno()
        while True:
            readable, _, _ = select.select([stdin, self.conn.sock], [], [])
            if stdin in readable:
                line = os.read(stdin, 4096).decode()
                if not line:
                    return
                for text in line.splitlines():
                    self.command(text.split())
                    print("ok", flush=True)
            if self.conn.sock in readable:
                self.drain()

    def drain(self) -> None:
        while True:
            try:
                message = self.conn.receive(timeout=0.01)
            except TimeoutError:
                return
            if message.header.message_type == MessageType.method_call:
                self.serve_call(message)


def main() -> None:
    kind, address = sys.argv[1], sys.argv[2]
    Service(kind, address, impostor="--impostor" in sys.argv).run()


if __name__ == "__main__":
    main()
