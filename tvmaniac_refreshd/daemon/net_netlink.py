"""The kernel's routing table as the network event source: online while a default route exists.

The fallback when neither NetworkManager nor systemd-networkd runs. A route socket (rtnetlink)
subscribed to route, address and link changes wakes a thread, which then dumps the routes on a
second socket and looks for a default one. Link changes are needed too: the kernel drops the
IPv4 routes of a link that goes down without announcing their deletion. The stdlib ``socket``
does all of it; the unit's RestrictAddressFamilies= lets AF_NETLINK through for this.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Iterator

from tvmaniac_refreshd.core.logs import get_logger
from tvmaniac_refreshd.daemon.network import NetworkState

NAME = "netlink"
RTMGRP_LINK = 0x1
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV4_ROUTE = 0x40
RTMGRP_IPV6_IFADDR = 0x100
RTMGRP_IPV6_ROUTE = 0x400
GROUPS = (
    RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_IFADDR | RTMGRP_IPV6_ROUTE
)
NLMSG_ERROR, NLMSG_DONE = 2, 3
RTM_NEWROUTE, RTM_GETROUTE = 24, 26
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
RTN_UNICAST = 1
RT_TABLE_LOCAL = 255
RTNH_F_DEAD, RTNH_F_LINKDOWN = 0x1, 0x10
_HEADER = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_RTMSG = struct.Struct(
    "=BBBBBBBBI"
)  # family, dst_len, src_len, tos, table, proto, scope, type, flags


class NetlinkUnavailable(Exception):  # not an error of ours: "this source is not there"
    """No route socket (not Linux, or the sandbox forbids AF_NETLINK)."""


def _messages(data: bytes) -> Iterator[tuple[int, bytes]]:
    offset = 0
    while offset + _HEADER.size <= len(data):
        length, kind, _flags, _seq, _pid = _HEADER.unpack_from(data, offset)
        if length < _HEADER.size:
            return
        yield kind, data[offset + _HEADER.size : offset + length]
        offset += (length + 3) & ~3


def is_default_route(payload: bytes) -> bool:
    """Whether an RTM_NEWROUTE payload is a usable default route (any table but local)."""
    if len(payload) < _RTMSG.size:
        return False
    _family, dst_len, _src, _tos, table, _proto, _scope, kind, flags = _RTMSG.unpack_from(payload)
    return (
        dst_len == 0
        and kind == RTN_UNICAST
        and table != RT_TABLE_LOCAL
        and not flags & (RTNH_F_DEAD | RTNH_F_LINKDOWN)
    )


def has_default_route() -> bool:
    """Dump the routing tables (IPv4 and IPv6) and say whether one holds a default route."""
    with socket.socket(
        socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE
    ) as dump:
        request = _RTMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0, 0, 0, 0, 0)
        dump.send(
            _HEADER.pack(
                _HEADER.size + len(request), RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, 1, 0
            )
            + request
        )
        found = False
        while True:
            for kind, payload in _messages(dump.recv(65536)):
                if kind in (NLMSG_DONE, NLMSG_ERROR):
                    return found
                if kind == RTM_NEWROUTE and is_default_route(payload):
                    found = True


class NetlinkWatch:
    """A thread asleep on a route socket until the kernel's routes, addresses or links change."""

    def __init__(self) -> None:
        try:
            self._sock = socket.socket(
                socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE
            )
            self._sock.bind((0, GROUPS))
            online = has_default_route()
        except (OSError, AttributeError) as exc:  # AttributeError: no AF_NETLINK (macOS)
            raise NetlinkUnavailable(f"no route socket: {exc}") from None
        self.network = NetworkState(NAME, online=online)
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="watch netlink", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        log = get_logger()
        while not self._closed:
            try:
                self._sock.recv(65536)  # what changed does not matter: the dump says the rest
                self.network.set(has_default_route())
            except OSError as exc:
                if not self._closed:
                    log.warning("events.netlink_lost", error=str(exc))
                return

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self._sock.close()
