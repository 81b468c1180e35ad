"""What the Secret Service's encrypted session costs against ``plain`` (issue 13, finding 10).

Reads of one keyring item over the direct D-Bus path (storage/secret_service.py), both ways:

* in one process, each read on its own connection as the daemon does it (the encrypted one
  adds a 1024-bit Diffie-Hellman exchange and AES; the first read also imports
  ``cryptography``, so it is left out of the medians);
* a whole cold Python process reading the item once, as a `token` that is not answered by
  the quick path does (here ``cryptography``'s import counts).

Interleaved, so that a noisy neighbour slows both alike.
"""

from __future__ import annotations

import sys

from bench.common import SERVICE, median, rig, run_measured

COLD_READ = (
    "import sys\n"
    "from tvmaniac_refreshd.storage.secret_service import read_item\n"
    f"print(read_item({SERVICE!r}, 'default', encrypted=sys.argv[1] == 'encrypted'))\n"
)
IN_PROCESS = (
    "import json, sys, time\n"
    "from tvmaniac_refreshd.storage.secret_service import read_item\n"
    "runs = int(sys.argv[1])\n"
    "times = dict(plain=[], encrypted=[])\n"
    "for encrypted in (False, True):\n"
    f"    assert read_item({SERVICE!r}, 'default', encrypted=encrypted)  # warm-up, imports\n"
    "for _ in range(runs):\n"
    "    for name, spent in times.items():\n"
    "        began = time.perf_counter()\n"
    f"        read_item({SERVICE!r}, 'default', encrypted=name == 'encrypted')\n"
    "        spent.append(time.perf_counter() - began)\n"
    "print(json.dumps(times))\n"
)


def measure(runs: int) -> dict[str, object]:
    import json  # noqa: PLC0415

    with rig() as r:
        r.seed()
        _, _, out = run_measured([sys.executable, "-c", IN_PROCESS, str(runs)], r.env)
        warm = json.loads(out)
        cold: dict[str, list[float]] = {"plain": [], "encrypted": []}
        for round_ in range(runs + 1):
            for name, spent in cold.items():
                seconds, _, printed = run_measured([sys.executable, "-c", COLD_READ, name], r.env)
                if not printed.strip() or printed.strip() == "None":
                    raise RuntimeError(f"the {name} read printed nothing")
                if round_:  # round 0 warms the page cache and writes .pyc files
                    spent.append(seconds)
    read_ms = {name: round(median(values) * 1000, 2) for name, values in warm.items()}
    cold_ms = {name: round(median(values) * 1000, 1) for name, values in cold.items()}
    return {
        "runs": runs,
        "read_median_ms": read_ms,
        "read_extra_ms": round(read_ms["encrypted"] - read_ms["plain"], 2),
        "cold_process_median_ms": cold_ms,
        "cold_process_extra_ms": round(cold_ms["encrypted"] - cold_ms["plain"], 1),
    }
