"""Which local user opened a loopback TCP connection, from the kernel's socket tables.

A loopback listener cannot tell users apart by address: every local process connects from
127.0.0.1 or ::1. On Linux, ``/proc/net/tcp`` and ``tcp6`` list every TCP socket of this network
namespace with its owner's uid, so the peer's end of an accepted connection (its local address
is our remote one, and the other way round) names the user who opened it. Elsewhere (macOS)
there is no such table, and ``peer_uid`` answers None.
"""

from __future__ import annotations

import socket
import struct
from pathlib import Path

PROC_NET = Path("/proc/net")


def _kernel_address(host: str, port: int) -> str:
    """Spell an address as the kernel's tables do: the address as host-order 32-bit words in
    hex (so 127.0.0.1 reads 0100007F on a little-endian machine), then the port in hex."""
    if ":" in host:
        words = struct.unpack("=4I", socket.inet_pton(socket.AF_INET6, host))
    else:
        words = struct.unpack("=I", socket.inet_pton(socket.AF_INET, host))
    return "".join(f"{word:08X}" for word in words) + f":{port:04X}"


def peer_uid(
    ours: tuple[str, int], peer: tuple[str, int], *, proc_net: Path = PROC_NET
) -> int | None:
    """Return the uid that owns the TCP socket at ``peer`` connected to ``ours``, or None if no
    table lists it (not Linux, or the peer is already gone)."""
    table = proc_net / ("tcp6" if ":" in peer[0] else "tcp")
    want_local = _kernel_address(*peer)
    want_remote = _kernel_address(*ours)
    try:
        lines = table.read_text(encoding="ascii", errors="replace").splitlines()
    except OSError:
        return None
    for line in lines[1:]:
        # sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid ...
        fields = line.split()
        if len(fields) > 7 and fields[1] == want_local and fields[2] == want_remote:
            try:
                return int(fields[7])
            except ValueError:
                return None
    return None
