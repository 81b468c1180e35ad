"""The OS service: systemd user units on Linux, launchd agents on macOS.

``base`` holds what both share (templates, rendering, the runner); ``systemd`` and
``launchd`` each implement ``ServiceManager``; ``manager_for`` picks one. May import ``core``
and ``storage`` (its safe, atomic file writes); never ``config``, ``daemon``, ``runtime`` or
``cli``: the unit runs the command, which reads the config itself.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping

from tvmaniac_refreshd.core.errors import ServiceUnavailable
from tvmaniac_refreshd.service.base import Runner, ServiceManager, run_command


def manager_for(
    environ: Mapping[str, str], platform: str = sys.platform, runner: Runner = run_command
) -> ServiceManager:
    """Return the service manager of this OS.

    Raises:
        ServiceUnavailable: on an OS with neither systemd nor launchd.
    """
    if platform == "darwin":
        from tvmaniac_refreshd.service.launchd import Launchd  # noqa: PLC0415

        return Launchd(environ, runner)
    if platform.startswith("linux"):
        from tvmaniac_refreshd.service.base import systemd_booted  # noqa: PLC0415
        from tvmaniac_refreshd.service.systemd import Systemd  # noqa: PLC0415

        return Systemd(environ, runner, booted=systemd_booted())
    raise ServiceUnavailable(
        f"no supported service manager on {platform}: run `tvmaniac-refreshd run` yourself, "
        "or `tvmaniac-refreshd refresh --all` from a scheduler"
    )
