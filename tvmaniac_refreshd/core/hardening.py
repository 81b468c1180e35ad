"""What a process that holds tokens and client secrets does first: no core dumps.

A crash dump of the daemon (or of `token`, `refresh`, `login`) would hold every token and the
client secret, written to wherever ``core_pattern`` says, often a file others can read or a
crash reporter that uploads it. So the core size limit is 0 (soft and hard, for good), and on
Linux the process is made non-dumpable, which also keeps other processes of the same user
(``gdb -p``, ``py-spy``, reading ``/proc/PID/mem``) out; root still gets in.

What it breaks, on purpose: attaching a debugger or profiler to a running tvmaniac-refreshd as
the same user (do it as root), and a core file to debug a crash (run it under ``python -X
faulthandler`` instead, which prints the Python stack without any memory).
"""

from __future__ import annotations

import contextlib
import sys

PR_SET_DUMPABLE = 4  # <linux/prctl.h>


def forbid_core_dumps(platform: str = sys.platform) -> None:
    """Set ``RLIMIT_CORE`` to 0 and, on Linux, ``PR_SET_DUMPABLE`` to 0; failures are ignored.

    Nothing here may stop the command: a platform without either simply keeps its default.
    """
    import resource  # noqa: PLC0415  # Unix only

    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if platform.startswith("linux"):
        import ctypes  # noqa: PLC0415  # 2 ms: paid once, by commands that may hold secrets

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
