"""Encryption at rest for the file store with ``systemd-creds`` (``[store] encrypt =
"systemd-creds"``): each file is a credential encrypted for this user, with the host key (and
the TPM2 when there is one), the only module that runs ``systemd-creds``.

User-scoped credentials (``systemd-creds --user``) arrived in systemd 256: an older systemd is
refused with exit 78, never answered with plain text. Documents pass on stdin and stdout, never
in argv. Every failure is translated here into the store errors.
"""

from __future__ import annotations

import re
import shutil
import subprocess

from tvmaniac_refreshd.core.errors import StoreMisconfigured, StoreUnavailable

TOOL = "systemd-creds"
MIN_VERSION = 256  # `systemd-creds --user`: credentials bound to a user, without root
TIMEOUT = 30.0  # a varlink call to systemd's credential service; it answers in milliseconds


def _version(tool: str) -> int | None:
    try:
        result = subprocess.run(
            [tool, "--version"], capture_output=True, text=True, timeout=TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.match(r"systemd (\d+)", result.stdout)
    return int(found.group(1)) if found else None


class SystemdCreds:
    """Encrypts and decrypts one file's content as a credential named after the file."""

    def __init__(self, tool: str | None = None) -> None:
        """Check that this system can encrypt credentials for a user.

        Raises:
            StoreMisconfigured: no systemd-creds, or one older than systemd 256.
        """
        path = tool or shutil.which(TOOL)
        version = _version(path) if path else None
        if path is None or version is None:
            raise StoreMisconfigured(
                '[store] encrypt = "systemd-creds" needs systemd-creds, which is not installed '
                "here; remove the key (the file store then relies on permissions alone) or "
                "install systemd 256 or newer"
            )
        if version < MIN_VERSION:
            raise StoreMisconfigured(
                f'[store] encrypt = "systemd-creds" needs systemd {MIN_VERSION} or newer '
                f"(user-scoped credentials); this system has systemd {version}. Remove the key "
                "(the file store then relies on permissions alone) or upgrade systemd"
            )
        self._tool = path

    def _run(self, verb: str, name: str, data: bytes) -> bytes:
        argv = [self._tool, "--user", verb, f"--name={name}", "-", "-"]
        try:
            result = subprocess.run(
                argv, input=data, capture_output=True, timeout=TIMEOUT, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise StoreUnavailable(f"systemd-creds {verb} failed: {exc}") from None
        if result.returncode != 0:
            # Its stderr names the cause (no credential service, wrong user, damaged file) and
            # never the content.
            reason = result.stderr.decode("utf-8", "replace").strip().splitlines()
            detail = reason[-1] if reason else f"exit {result.returncode}"
            raise StoreUnavailable(
                f"systemd-creds could not {verb} {name}: {detail} (is systemd's credential "
                "service running for this user? `systemd-creds --user list` tells)"
            )
        return result.stdout

    def encrypt(self, name: str, data: bytes) -> bytes:
        """Return ``data`` encrypted for this user, bound to the credential ``name``."""
        return self._run("encrypt", name, data)

    def decrypt(self, name: str, data: bytes) -> bytes:
        """Return the plain content of the credential ``name``."""
        return self._run("decrypt", name, data)
