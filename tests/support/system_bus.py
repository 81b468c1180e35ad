"""A private system bus with fake NetworkManager, networkd and logind (fake_system_services).

``dbus-daemon --config-file`` with a configuration shaped like Debian's system.conf: type
system, EXTERNAL auth, method calls denied unless a service's policy allows them, signals
and replies allowed, and owning a service's name allowed to root only, as the services' own
policy files (NetworkManager.conf, org.freedesktop.login1.conf) say. The daemon reaches it
through ``DBUS_SYSTEM_BUS_ADDRESS``, which is what it (and jeepney) reads.
"""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.support.fake_system_services import SERVICES

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 30.0

_POLICIES = "\n".join(
    f"""  <policy user="root">
    <allow own="{spec["name"]}"/>
    <allow send_destination="{spec["name"]}"/>
  </policy>
  <policy context="default">
    <allow send_destination="{spec["name"]}" send_interface="org.freedesktop.DBus.Properties"/>
    <allow send_destination="{spec["name"]}" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="{spec["name"]}" send_interface="{spec["interface"]}"/>
  </policy>"""
    for spec in SERVICES.values()
)

CONFIG = f"""<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={{socket}}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Properties"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"
          send_member="UpdateActivationEnvironment"/>
    <deny send_destination="org.freedesktop.DBus"
          send_interface="org.freedesktop.systemd1.Activator"/>
  </policy>
{_POLICIES}
</busconfig>
"""


class FakeService:
    """One fake service process; ``send`` emits a signal and returns once it is sent."""

    def __init__(self, kind: str, address: str, *, impostor: bool = False) -> None:
        argv = [sys.executable, "-m", "tests.support.fake_system_services", kind, address]
        self.process = subprocess.Popen(
            [*argv, *(["--impostor"] if impostor else [])],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=REPO,
            text=True,
        )
        words = self._line().split()
        assert words[:1] == ["ready"], words
        self.unique_name = words[1]

    def _line(self) -> str:
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], START_TIMEOUT)
        assert ready, "the fake service did not answer"
        return self.process.stdout.readline().strip()

    def send(self, command: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        assert self._line() == "ok"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        self.process.communicate(timeout=10)  # and closes its pipes


class PrivateSystemBus:
    def __init__(self, directory: Path) -> None:
        socket = directory / "system_bus_socket"
        config = directory / "system.conf"
        config.write_text(CONFIG.format(socket=socket))
        self.address = f"unix:path={socket}"
        self.process = subprocess.Popen(
            ["dbus-daemon", "--nofork", "--nopidfile", f"--config-file={config}"],
            stdin=subprocess.DEVNULL,
        )
        self.services: list[FakeService] = []
        deadline = time.monotonic() + START_TIMEOUT
        while not socket.exists():  # a bounded poll for the socket, not a wait for time
            assert self.process.poll() is None, "dbus-daemon exited"
            assert time.monotonic() < deadline, "dbus-daemon did not listen"
            time.sleep(0.05)

    def start(self, kind: str, *, impostor: bool = False) -> FakeService:
        service = FakeService(kind, self.address, impostor=impostor)
        self.services.append(service)
        return service

    @property
    def env(self) -> dict[str, str]:
        return {"DBUS_SYSTEM_BUS_ADDRESS": self.address}

    def close(self) -> None:
        for service in self.services:
            with contextlib.suppress(Exception):
                service.stop()
        self.process.terminate()
        self.process.wait(timeout=10)


@contextlib.contextmanager
def private_system_bus() -> Iterator[PrivateSystemBus]:
    with tempfile.TemporaryDirectory(prefix="tvm-sysbus-") as directory:
        bus = PrivateSystemBus(Path(directory))
        try:
            yield bus
        finally:
            bus.close()


def _probe() -> None:  # python -m tests.support.system_bus: start it all and show the owners
    with private_system_bus() as bus:
        for kind in SERVICES:
            print(kind, bus.start(kind).unique_name)
        os.system(f"busctl --address={bus.address} list --no-pager | head -20")  # noqa: S605


if __name__ == "__main__":
    _probe()
