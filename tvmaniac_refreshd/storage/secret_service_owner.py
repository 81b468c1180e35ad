"""Which program answers ``org.freedesktop.secrets``, its version, and how each one is unlocked.

Three programs commonly own the name on Linux, and each locks and unlocks in its own way:
gnome-keyring (the login keyring), KeePassXC (its Secret Service integration exposes one group
of an open database) and KWallet (kwalletd5 since KDE Frameworks 5.97). Advice that names one
program's commands to the user of another is wrong advice, so the messages ask here first.

The owner is found the way ``busctl`` does it: the bus daemon names the connection that owns the
name and that connection's process; ``/proc`` names its executable. The version comes from the
program itself where that is cheap and cannot disturb the running one: ``--version`` for
gnome-keyring-daemon and keepassxc (both print and exit), the versioned KWallet library mapped
into kwalletd (running ``kwalletd5 --version`` would first register on the bus).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tvmaniac_refreshd.storage import unlock_advice

if TYPE_CHECKING:
    from collections.abc import Mapping

BUS_NAME = "org.freedesktop.secrets"
GNOME_KEYRING = "gnome-keyring"
KEEPASSXC = "KeePassXC"
KWALLET = "KWallet"
ANOTHER = "another"
# Executable names (/proc/PID/exe's last part) of each known program.
PROGRAMS = {
    "gnome-keyring-daemon": GNOME_KEYRING,
    "keepassxc": KEEPASSXC,
    "kwalletd5": KWALLET,
    "kwalletd6": KWALLET,
    "ksecretd": KWALLET,
}
# /proc/PID/comm keeps the first 15 bytes of a name (TASK_COMM_LEN 16, with the NUL).
COMM_LENGTH = 15
NO_OWNER = f"nobody owns {BUS_NAME} on the session bus"
VERSION_TIMEOUT = 3.0
_VERSION = re.compile(r"\b(\d+(?:\.\d+)+)\b")
_KWALLET_LIBRARY = re.compile(r"/lib(?:KF\dWallet|kwalletbackend\d)\.so\.(\d+(?:\.\d+)+)$")

# gnome-keyring's shell recipe and the file-store hint, on one line each for a log line's ERROR
# field; unlock_advice.py holds them (and says why the socket-activated daemon is stopped first).
HEADLESS_UNLOCK = "; ".join(unlock_advice.SYSTEMD_RECIPE)
FILE_STORE_HINT = " ".join(unlock_advice.FILE_STORE)


@dataclass(frozen=True)
class SecretServiceOwner:
    """The process that owns ``org.freedesktop.secrets``."""

    program: str  # GNOME_KEYRING, KEEPASSXC, KWALLET or ANOTHER
    executable: str  # the executable's file name, e.g. "keepassxc"
    pid: int
    version: str | None = None

    @property
    def name(self) -> str:
        """``KeePassXC``, or ``another Secret Service, foo-secretd``, for messages."""
        if self.program == ANOTHER:
            return f"another Secret Service, {self.executable}"
        return self.program

    def describe(self) -> str:
        """``KeePassXC 2.7.4 (keepassxc, pid 1234)``, for `config check` and `status`."""
        name = self.program if self.program != ANOTHER else "another Secret Service"
        version = f" {self.version}" if self.version else ""
        return f"{name}{version} ({self.executable}, pid {self.pid})"


def find_owner(
    environ: Mapping[str, str], *, timeout: float = 2.0, with_version: bool = True
) -> SecretServiceOwner | None:
    """Return who owns the Secret Service name on the session bus, or None if nobody does.

    Only the bus daemon is asked, never the Secret Service itself, so a hung or locked one is
    named as quickly as a working one. ``with_version`` also finds its version (a process run
    for gnome-keyring and KeePassXC).
    """
    address = environ.get("DBUS_SESSION_BUS_ADDRESS")
    if not address:
        return None
    try:
        pid = _owner_pid(address, timeout)
    except Exception:  # no bus, no owner, or a bus that does not answer: nobody to name
        return None
    executable = _executable(pid)
    program = _program(executable)
    version = _version(program, pid) if with_version else None
    return SecretServiceOwner(program, executable, pid, version)


def _owner_pid(address: str, timeout: float) -> int:
    from jeepney import DBusAddress, new_method_call  # noqa: PLC0415
    from jeepney.io.blocking import open_dbus_connection  # noqa: PLC0415
    from jeepney.wrappers import unwrap_msg  # noqa: PLC0415

    bus = DBusAddress(
        "/org/freedesktop/DBus", bus_name="org.freedesktop.DBus", interface="org.freedesktop.DBus"
    )
    with open_dbus_connection(bus=address, auth_timeout=timeout) as connection:

        def ask(method: str, argument: str) -> object:
            message = new_method_call(bus, method, "s", (argument,))
            (answer,) = unwrap_msg(connection.send_and_get_reply(message, timeout=timeout))
            return answer

        unique = ask("GetNameOwner", BUS_NAME)
        pid = ask("GetConnectionUnixProcessID", str(unique))
    if not isinstance(pid, int):
        raise TypeError(pid)
    return pid


def program_of(pid: int) -> str:
    """Return which known program the process ``pid`` runs (ANOTHER if none, or gone)."""
    return _program(_executable(pid))


def _executable(pid: int) -> str:
    try:
        # A program upgraded while running shows as "/usr/bin/x (deleted)".
        return os.path.basename(os.readlink(f"/proc/{pid}/exe")).removesuffix(" (deleted)")
    except OSError:
        # Not ours to inspect: a sandboxed unit (PrivateUsers=) or another user's process. Its
        # argv[0] is readable where /proc is not mounted with hidepid=; comm is cut to 15 bytes.
        pass
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            first = cmdline.read(4096).split(b"\0", 1)[0].decode("utf-8", "replace")
        if first:
            return os.path.basename(first)
    except OSError:
        pass
    try:
        with open(f"/proc/{pid}/comm", encoding="utf-8") as comm:
            return comm.read().strip() or "unknown"
    except OSError:
        return "unknown"


def _program(executable: str) -> str:
    """The known program behind an executable name, also when it is a comm cut to 15 bytes."""
    for name, program in PROGRAMS.items():
        if executable == name or (len(executable) == COMM_LENGTH and name.startswith(executable)):
            return program
    return ANOTHER


def _version(program: str, pid: int) -> str | None:
    if program == KWALLET:
        try:
            with open(f"/proc/{pid}/maps", encoding="utf-8") as maps:
                for line in maps:
                    found = _KWALLET_LIBRARY.search(line.rstrip())
                    if found:
                        return found.group(1)
        except OSError:
            return None
        return None
    if program not in (GNOME_KEYRING, KEEPASSXC):
        return None  # an unknown program is not run: --version could mean anything to it
    try:
        executable = os.readlink(f"/proc/{pid}/exe").removesuffix(" (deleted)")
        # keepassxc builds its Qt application before it reads --version; no display needed.
        env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
        result = subprocess.run(  # the running service's own executable
            [executable, "--version"],
            capture_output=True,
            text=True,
            timeout=VERSION_TIMEOUT,
            check=False,
            env=env,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    found = _VERSION.search(result.stdout)
    return found.group(1) if found else None


def locked_advice(owner: SecretServiceOwner | None, *, headless: bool) -> str:
    """Return how the user of ``owner`` unlocks it, as a clause ending without a full stop."""
    program = owner.program if owner is not None else GNOME_KEYRING
    if program == GNOME_KEYRING:
        if headless:
            return (
                "unlock it from a shell of this user (ssh is fine), then the daemon recovers by "
                f"itself: {HEADLESS_UNLOCK}. {FILE_STORE_HINT}"
            )
        return "unlock it (log in to the desktop session, or open Passwords and Keys / seahorse)"
    if program == KEEPASSXC:
        where = (
            "start KeePassXC with the database (`keepassxc --pw-stdin DATABASE.kdbx`, the "
            "password on stdin) in this user's session"
            if headless
            else "unlock the database in KeePassXC's window"
        )
        return (
            f"KeePassXC serves secrets only from an unlocked database: {where}, and check that "
            "Database Settings, Secret Service Integration exposes the group holding the items. "
            "If it is unlocked, KeePassXC is asking to confirm this program's access: answer "
            "it, or turn off the confirmations in Settings, Secret Service Integration"
        )
    if program == KWALLET:
        if headless:
            return (
                "KWallet opens the wallet at login through pam_kwallet (kwallet-pam) when the "
                "wallet password is the login password: log in again through PAM, or open the "
                f"wallet in KWalletManager in a desktop session. {FILE_STORE_HINT}"
            )
        return "open the wallet: answer KWallet's password dialog, or open it in KWalletManager"
    name = owner.executable if owner is not None else "the Secret Service"
    return f"unlock its collection with {name}'s own tool (the Secret Service here is {name})"


def prompt_advice(owner: SecretServiceOwner | None) -> str:
    """Return what to do about a prompt nobody can answer here (no desktop session)."""
    if owner is not None and owner.program == KEEPASSXC:
        return (
            "KeePassXC asks for a confirmation that nobody can answer here: answer it in "
            "KeePassXC's window, or turn off the confirmations in Settings, Secret Service "
            "Integration"
        )
    return (
        "the Secret Service shows a prompt that nobody can answer here: answer it in a desktop "
        "session"
    )


def owner_summary(environ: Mapping[str, str], platform: str = sys.platform) -> str | None:
    """Return who answers the Secret Service, for `config check` and `status` (None: macOS)."""
    if not platform.startswith("linux"):
        return None
    owner = find_owner(environ)
    if owner is None:
        return NO_OWNER
    return owner.describe()
