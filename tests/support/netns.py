"""Two network namespaces joined by a veth link, made with ip(8); nothing else is touched.

``Link`` makes a "client" namespace (where the daemon runs) and a "server" namespace (where the
emulator listens), both named at random, a veth pair straight into them (it never exists in
the host's namespace), a /30 of private addresses and a default route in the client via the
server. ``down``/``up`` switch the client's end, as unplugging a cable would; ``up`` adds the
default route back, as a DHCP client does once the link returns (the kernel drops it on
down). ``inside`` runs a block of code with the calling thread in a namespace: sockets made
there stay there, so the in-process emulator can listen in the server namespace.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def available() -> str | None:
    """Why namespaces cannot be made here, or None."""
    if shutil.which("ip") is None:
        return "ip(8) is not installed (iproute2)"
    if os.geteuid() != 0:
        return "making network namespaces needs root"
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


@contextlib.contextmanager
def inside(name: str) -> Iterator[None]:
    """Run the block with this thread in namespace ``name`` (threads it starts inherit it)."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(target)
        os.close(home)


class Link:
    def __init__(self) -> None:
        tag = secrets.token_hex(3)
        self.client, self.server = f"tvm-c-{tag}", f"tvm-s-{tag}"
        self.client_dev, self.server_dev = f"tvc{tag}", f"tvs{tag}"
        octet = 16 + secrets.randbelow(200)
        self.server_ip, self.client_ip = f"10.{octet}.{octet}.1", f"10.{octet}.{octet}.2"
        _ip("netns", "add", self.client)
        try:
            _ip("netns", "add", self.server)
            _ip(
                "link", "add", self.client_dev, "netns", self.client, "type", "veth",
                "peer", "name", self.server_dev, "netns", self.server,
            )  # fmt: skip
            _ip("-n", self.client, "addr", "add", f"{self.client_ip}/30", "dev", self.client_dev)
            _ip("-n", self.server, "addr", "add", f"{self.server_ip}/30", "dev", self.server_dev)
            for namespace in (self.client, self.server):
                _ip("-n", namespace, "link", "set", "lo", "up")
            _ip("-n", self.server, "link", "set", self.server_dev, "up")
            self.up()
        except BaseException:
            self.close()
            raise

    def up(self) -> None:
        _ip("-n", self.client, "link", "set", self.client_dev, "up")
        _ip("-n", self.client, "route", "replace", "default", "via", self.server_ip)

    def down(self) -> None:
        _ip("-n", self.client, "link", "set", self.client_dev, "down")

    def exec_prefix(self) -> list[str]:
        """The argv prefix that runs a command in the client namespace."""
        return ["ip", "netns", "exec", self.client]

    def close(self) -> None:
        for namespace in (self.client, self.server):  # deleting one also deletes the veth
            with contextlib.suppress(subprocess.CalledProcessError):
                _ip("netns", "del", namespace)


class Relay:
    """127.0.0.1:PORT in the client namespace, relayed over the veth link to ``target``.

    The config only takes plain http to 127.0.0.1, which in the client namespace is its own
    loopback: the relay carries each connection across the link, so that with the link down a
    request fails as it would to a server elsewhere. Start it ``inside`` the client namespace:
    its threads, and the connections they open, stay there.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, name="relay", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._carry, args=(client,), daemon=True).start()

    def _carry(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()  # the link is down: the request fails, as it would
            return
        upstream.settimeout(None)
        back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
        back.start()
        _pump(client, upstream)
        back.join()
        client.close()
        upstream.close()

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self.server.shutdown(socket.SHUT_RDWR)
        self.server.close()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
