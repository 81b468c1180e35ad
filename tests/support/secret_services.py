"""KeePassXC and KWallet as private Secret Services for tests, beside gnome-keyring.

Each runs headless (``QT_QPA_PLATFORM=offscreen``) on the private bus of a ``KeyringSession``
with a temporary HOME, so nothing touches the developer's own keyring, database or wallet:

- ``KeePassXCSession``: KeePassXC 2.7.4 with its Secret Service integration enabled in its
  config (and its confirmations off, as a user who wants unattended access sets them), on a
  database made by ``keepassxc-cli import`` from XML whose metadata exposes one group
  (``FDO_SECRETS_EXPOSED_GROUP``, what Database Settings, Secret Service Integration writes).
  Locked and unlocked through KeePassXC's own D-Bus interface, as its tray and window do.
- ``KWalletSession``: kwalletd5 5.103 opened the way pam_kwallet opens it at login: started
  with ``--pam-login PIPE SOCKET`` and ``PAM_KWALLET5_LOGIN`` set, it reads the 56-byte
  PBKDF2-SHA512 hash of the login password (salted with the wallet's ``.salt`` file) from the
  pipe and the session's environment from the socket, and opens (first: creates) ``kdewallet``.
  kwalletd5 builds its Secret Service collections from the wallets present when it starts, so
  the first start only creates the wallet, as on a user's very first login, and the session
  starts it again. Locked with ``close``; unlocked by a new login (a new kwalletd5), since a
  wallet password dialog nobody answers keeps kwalletd5 from opening it any other way.

``SESSIONS`` maps each name a test is parametrized with to its class.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from jeepney import DBusAddress, new_method_call

from tests.support import kr_ctl
from tests.support.keyring_session import (
    START_TIMEOUT,
    TOOL_TIMEOUT,
    KeyringSession,
    KeyringSessionError,
    _terminate,
)

QT_HEADLESS = {"QT_QPA_PLATFORM": "offscreen"}
# Each session answers within a second or two; a bound stops a wedged one hanging the run.
STATE_TIMEOUT = 20.0


def _wait(predicate: Any, what: str, timeout: float = STATE_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise KeyringSessionError(f"{what} not reached within {timeout}s")
        time.sleep(0.05)


_KEEPASSXC_INI = """[General]
ConfigVersion=2
SingleInstance=false
RememberLastDatabases=false
UpdateCheckMessageShown=true
[GUI]
ShowTrayIcon=false
CheckForUpdates=false
[Security]
LockDatabaseIdle=false
[FdoSecrets]
Enabled=true
ShowNotification=false
ConfirmAccessItem=false
ConfirmDeleteItem=false
"""


def _exposing_database_xml() -> str:
    """A KeePass XML export: a root group and a "Secret Service" group the metadata exposes."""
    root, exposed = uuid.uuid4(), uuid.uuid4()

    def b64(value: uuid.UUID) -> str:
        return base64.b64encode(value.bytes).decode()

    return (
        '<?xml version="1.0" encoding="utf-8" standalone="yes"?>\n'
        "<KeePassFile><Meta><Generator>tests</Generator><DatabaseName>tests</DatabaseName>"
        "<CustomData><Item><Key>FDO_SECRETS_EXPOSED_GROUP</Key>"
        f"<Value>{{{exposed}}}</Value></Item></CustomData></Meta>"
        f"<Root><Group><UUID>{b64(root)}</UUID><Name>Root</Name>"
        f"<Group><UUID>{b64(exposed)}</UUID><Name>Secret Service</Name></Group>"
        "</Group></Root></KeePassFile>\n"
    )


class KeePassXCSession(KeyringSession):
    """A private bus with KeePassXC's Secret Service on a fresh database.

    ``confirmations``: KeePassXC's defaults, which ask before a client reads or deletes an item.
    """

    program = "KeePassXC"
    required_tools = ("dbus-daemon", "keepassxc", "keepassxc-cli", "secret-tool")
    MAIN_WINDOW = DBusAddress(
        "/keepassxc",
        bus_name="org.keepassxc.KeePassXC.MainWindow",
        interface="org.keepassxc.KeePassXC.MainWindow",
    )

    def __init__(self, *, confirmations: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.confirmations = confirmations

    @property
    def database(self) -> Path:
        return self.home / "tests.kdbx"

    def _start_keyring(self) -> None:
        config = self.home / ".config" / "keepassxc"
        config.mkdir(parents=True)
        ini = _KEEPASSXC_INI
        if self.confirmations:
            ini = ini.replace("ConfirmAccessItem=false", "ConfirmAccessItem=true")
            ini = ini.replace("ConfirmDeleteItem=false", "ConfirmDeleteItem=true")
        (config / "keepassxc.ini").write_text(ini)
        xml = self.home / "tests.xml"
        xml.write_text(_exposing_database_xml())
        # -t 100: a 100 ms key derivation, so that unlocking and saving stay quick.
        subprocess.run(
            ["keepassxc-cli", "import", "-q", "-p", "-t", "100", str(xml), str(self.database)],
            input=f"{self.password}\n{self.password}\n".encode(),
            env=self.env,
            capture_output=True,
            timeout=TOOL_TIMEOUT,
            check=True,
        )
        xml.unlink()
        env = dict(self.env, **QT_HEADLESS)
        read_fd, write_fd = os.pipe()
        try:
            proc = self._spawn(
                ["keepassxc", "--pw-stdin", str(self.database)], env, "keepassxc.log", read_fd
            )
        finally:
            os.close(read_fd)
        with os.fdopen(write_fd, "w") as password:
            password.write(self.password + "\n")
        self._wait_for_secret_service(proc, "keepassxc.log")
        _wait(lambda: not self._locked_or_absent(), "KeePassXC's unlocked collection")

    def _locked_or_absent(self) -> bool:
        with kr_ctl.connect(self.address) as conn:
            path = kr_ctl.default_collection(conn)
            return path == kr_ctl.NO_OBJECT or kr_ctl.is_locked(conn, path)

    def _main_window(self, method: str, signature: str | None = None, *body: Any) -> None:
        with kr_ctl.connect(self.address) as conn:
            kr_ctl.call(conn, self.MAIN_WINDOW, method, signature, body)

    def lock(self) -> None:
        """Lock the database, as KeePassXC's Lock button does."""
        self._main_window("lockAllDatabases")
        _wait(self.is_locked, "a locked KeePassXC database")

    def unlock(self) -> None:
        """Unlock the database with its password, as KeePassXC's unlock dialog does."""
        self._main_window("openDatabase", "ss", str(self.database), self.password)
        _wait(lambda: not self.is_locked(), "an unlocked KeePassXC database")


class KWalletSession(KeyringSession):
    """A private bus with kwalletd5's Secret Service, its wallet opened as pam_kwallet does."""

    program = "KWallet"
    required_tools = ("dbus-daemon", "kwalletd5", "secret-tool")
    WALLET = "kdewallet"
    KWALLETD = DBusAddress(
        "/modules/kwalletd5", bus_name="org.kde.kwalletd5", interface="org.kde.KWallet"
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._kwalletd: subprocess.Popen[bytes] | None = None

    def _start_keyring(self) -> None:
        config = self.home / ".config"
        (config / "kwalletrc").write_text(
            "[Wallet]\nEnabled=true\nFirst Use=false\nUse One Wallet=true\n"
            "Close When Idle=false\nLaunch Manager=false\n"
            "[org.freedesktop.secrets]\napiEnabled=true\n"
        )
        wallets = self.home / ".local" / "share" / "kwalletd"
        wallets.mkdir(parents=True)
        (wallets / f"{self.WALLET}.salt").write_bytes(secrets.token_bytes(56))
        # The first login creates the wallet; the second finds it and exposes it (see above).
        self._login()
        _wait((wallets / f"{self.WALLET}.kwl").exists, "the new wallet file")
        self._logout()
        self._login()
        if self.start_locked:
            self.lock()

    def _hash(self) -> bytes:
        # pam_kwallet's kwallet_hash(): PBKDF2-SHA512 of the login password, 50000 rounds,
        # salted with the wallet's salt file, 56 bytes.
        salt = (self.home / ".local" / "share" / "kwalletd" / f"{self.WALLET}.salt").read_bytes()
        return hashlib.pbkdf2_hmac("sha512", self.password.encode(), salt, 50000, 56)

    def _login(self) -> None:
        """Start kwalletd5 as pam_kwallet's session hook does, and wait for its Secret Service."""
        path = self.home / "run" / "kwallet5.socket"
        path.unlink(missing_ok=True)
        hash_read, hash_write = os.pipe()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(str(path))
            listener.listen(1)
            env = dict(self.env, PAM_KWALLET5_LOGIN=str(path), **QT_HEADLESS)
            self._kwalletd = self._spawn(
                ["kwalletd5", "--pam-login", str(hash_read), str(listener.fileno())],
                env,
                "kwalletd5.log",
                pass_fds=(hash_read, listener.fileno()),
            )
        finally:
            os.close(hash_read)
            listener.close()
        os.write(hash_write, self._hash())
        os.close(hash_write)
        # What pam_kwallet_init sends: the session's environment, one variable a line.
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sender:
            sender.settimeout(START_TIMEOUT)
            sender.connect(str(path))
            sender.sendall(f"DBUS_SESSION_BUS_ADDRESS={self.address}\n".encode())
        self._wait_for_secret_service(self._kwalletd, "kwalletd5.log")
        _wait(lambda: not self.is_locked(), "the wallet opened by the PAM login")

    def _logout(self) -> None:
        if self._kwalletd is not None:
            _terminate([self._kwalletd])
            self._procs.remove(self._kwalletd)
            self._kwalletd = None
            with kr_ctl.connect(self.address) as conn:
                _wait(lambda: not kr_ctl.name_has_owner(conn), "kwalletd5's exit")

    def _secret_tool(
        self, *args: str, stdin: bytes | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        # libsecret sends its Diffie-Hellman public key without leading zero bytes; kwalletd5
        # refuses a key shorter than 128 bytes, so one exchange in 256 fails. Our own client
        # always sends 128 bytes; the test helper tries again.
        for _ in range(5):
            result = super()._secret_tool(*args, stdin=stdin)
            if b"Client public key size is invalid" not in result.stderr:
                break
        return result

    def _kwallet(self, method: str, signature: str, *body: Any) -> Any:
        with kr_ctl.connect(self.address) as conn:
            reply = conn.send_and_get_reply(
                new_method_call(self.KWALLETD, method, signature, body),
                timeout=kr_ctl.CALL_TIMEOUT,
            )
        return reply.body[0]

    def is_locked(self) -> bool:
        """Whether the wallet is closed (its Secret Service collection may say locked even
        while it is open: kwalletd5 unlocks that for the first client that asks)."""
        return not self._kwallet("isOpen", "s", self.WALLET)

    def lock(self) -> None:
        """Close the wallet, as KWalletManager's Close does."""
        self._kwallet("close", "sb", self.WALLET, True)
        _wait(self.is_locked, "a closed wallet")

    def unlock(self) -> None:
        """Open the wallet again the way a user does headless: log in again (PAM)."""
        self._logout()
        self._login()


SESSIONS: dict[str, type[KeyringSession]] = {
    "gnome-keyring": KeyringSession,
    "keepassxc": KeePassXCSession,
    "kwallet": KWalletSession,
}
