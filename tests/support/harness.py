"""Runs the real `tvmaniac-refreshd` command against the emulator and the real keyring.

Every run's stdout and stderr are kept, so that a test can be checked, at its end, for any
token or secret that leaked into output.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.keyring_session import KeyringSession
from trakt_emulator import Emulator
from tvmaniac_refreshd.config.settings import load_config
from tvmaniac_refreshd.core.tokens import TokenDocument, TokenSet, encode_document

CLIENT_ID = "tvmaniac-emulator-client"
CLIENT_SECRET = "tvmaniac-emulator-secret"
SERVICE = "tvmaniac-refreshd"
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Run:
    """One finished command."""

    args: tuple[str, ...]
    code: int
    out: str
    err: str


@dataclass
class Harness:
    """A config pointing at the emulator, an isolated environment, and a transcript."""

    emulator: Emulator
    keyring: KeyringSession
    root: Path
    extra_config: str = ""
    transcript: list[Run] = field(default_factory=list)
    # Secrets the emulator does not know of (another server's tokens and client secrets).
    extra_secrets: set[str] = field(default_factory=set)
    # "file": the config says [store] backend = "file", and seed/put_item/item_text use the files.
    store: str = "keyring"

    def __post_init__(self) -> None:
        for name in ("runtime", "config"):
            (self.root / name).mkdir(mode=0o700, exist_ok=True)
        self.root.chmod(0o700)  # the home: the state directory is under it
        self.write_config()

    @property
    def config_path(self) -> Path:
        return self.root / "config" / "config.toml"

    def write_config(self, text: str | None = None) -> None:
        if text is None:
            text = (
                "[accounts.default]\n"
                'provider = "trakt"\n'
                f'client_id = "{CLIENT_ID}"\n'
                f'client_secret = "{CLIENT_SECRET}"\n'
                f'auth_url = "{self.emulator.url}"\n'
                f'api_url = "{self.emulator.url}"\n'
                '[http]\nconnect_timeout = "2s"\nread_timeout = "3s"\n'
                '[store]\ntimeout = "5s"\nlock_timeout = "30s"\n'
                + ('backend = "file"\n' if self.store == "file" else "")
                + self.extra_config
            )
        self.config_path.write_text(text)
        self.config_path.chmod(0o600)

    def env(self, **overrides: str) -> dict[str, str]:
        env = dict(self.keyring.env)
        env.update(
            {
                "TVMANIAC_REFRESHD_CONFIG": str(self.config_path),
                # Each test its own home: the state directory follows HOME, never
                # XDG_STATE_HOME (storage/layout.py).
                "HOME": str(self.root),
                "XDG_RUNTIME_DIR": str(self.root / "runtime"),
                "PYTHONPATH": str(REPO),
                "NO_COLOR": "1",
            }
        )
        env.update(overrides)
        return env

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "tvmaniac_refreshd", *args]

    def run(
        self,
        *args: str,
        stdin: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 60,
        prefix: Sequence[str] = (),
    ) -> Run:
        """Run the command to completion (behind ``prefix``, e.g. unshare) and keep its output."""
        result = subprocess.run(
            [*prefix, *self.command(*args)],
            input=stdin or "",
            capture_output=True,
            text=True,
            env=env or self.env(),
            timeout=timeout,
            check=False,
        )
        run = Run(tuple(args), result.returncode, result.stdout, result.stderr)
        self.transcript.append(run)
        return run

    def spawn(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        """Start the command without waiting; ``finish`` collects it into the transcript."""
        return subprocess.Popen(
            self.command(*args),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env or self.env(),
        )

    def finish(
        self, process: subprocess.Popen[str], args: Sequence[str], timeout: float = 60
    ) -> Run:
        out, err = process.communicate(timeout=timeout)
        run = Run(tuple(args), process.returncode, out, err)
        self.transcript.append(run)
        return run

    def seed(
        self, *, age: float = 0, expires_in: int = 604800, user: str = "alice"
    ) -> dict[str, object]:
        """Put one grant in the emulator and the same pair in the keyring, ``age`` seconds old."""
        created_at = int(time.time() - age)
        grant = self.emulator.seed_grant(user, created_at=created_at, expires_in=expires_in)
        # Bound to whatever the config says now, as a real login would be.
        account = load_config(self.config_path).select("default")
        document = TokenDocument(
            account="default",
            provider="trakt",
            tokens=TokenSet(
                access_token=str(grant["access_token"]),
                refresh_token=str(grant["refresh_token"]),
                created_at=created_at,
                expires_in=expires_in,
                expires_at=created_at + expires_in,
                scope="public",
            ),
            fingerprint=account.fingerprint(),
            obtained_at=created_at,
        )
        self.put_item("default", encode_document(document))
        return grant

    @property
    def state_dir(self) -> Path:
        """The state directory, as storage/layout.py derives it from HOME."""
        return self.root / ".local" / "state" / SERVICE

    @property
    def token_dir(self) -> Path:
        """The file store's directory (``store = "file"``)."""
        return self.state_dir / "tokens"

    def item_text(self, username: str) -> str | None:
        """Return the stored item of ``username`` as it is on disk or in the keyring, raw."""
        if self.store == "file":
            try:
                return (self.token_dir / f"{username}.json").read_text()
            except FileNotFoundError:
                return None
        return self.keyring.lookup(SERVICE, username)

    def put_item(self, username: str, text: str) -> None:
        """Write a keyring item the way python-keyring does (its attributes differ from
        secret-tool's, and two items with different attributes would both match a lookup);
        with the file store, write the file as the store does."""
        if self.store == "file":
            from tvmaniac_refreshd.core.tokens import decode_document  # noqa: PLC0415
            from tvmaniac_refreshd.storage.file_store import FileStore  # noqa: PLC0415

            FileStore(self.token_dir).save(decode_document(text, username))
            return
        script = (
            "import sys\n"
            "from keyring.backends import SecretService\n"
            "SecretService.Keyring().set_password(sys.argv[1], sys.argv[2], sys.stdin.read())\n"
        )
        subprocess.run(
            [sys.executable, "-c", script, SERVICE, username],
            input=text,
            text=True,
            env=self.env(),
            check=True,
            timeout=30,
        )

    def stored(self) -> dict[str, object] | None:
        """Return the keyring item as the C client (secret-tool) reads it."""
        import json  # noqa: PLC0415

        text = self.item_text("default")
        return None if text is None else dict(json.loads(text))

    def secrets(self) -> set[str]:
        """Every token the emulator ever issued, the device codes, and the client secret."""
        state = self.emulator.state()
        found = {CLIENT_SECRET}
        for grant in state["grants"]:  # type: ignore[attr-defined]
            found.add(grant["access_token"])
            found.add(grant["refresh_token"])
            found.update(grant["rotated_access_tokens"])
            found.update(grant["rotated_refresh_tokens"])
        for device in state.get("device_codes", []):  # type: ignore[attr-defined]
            if isinstance(device, dict) and "device_code" in device:
                found.add(device["device_code"])
        return {secret for secret in found | self.extra_secrets if secret}

    def leaks(self) -> list[str]:
        """Return a description of every secret found in any command's output."""
        secrets = self.secrets()
        return [
            f"{' '.join(run.args)}: a secret in {stream}"
            for run in self.transcript
            for stream, text in (("stdout", run.out), ("stderr", run.err))
            for secret in secrets
            # The token on stdout is the answer of `token` and of git's credential helper.
            if secret in text
            and not (verb_of(run.args) in ("token", "git-credential") and stream == "stdout")
        ]


def verb_of(args: Sequence[str]) -> str | None:
    """Return the verb of a command line (the first word that is not an option or its value)."""
    words = iter(args)
    for word in words:
        if word in ("--config", "--account"):
            next(words, None)  # the option's value
        elif not word.startswith("-"):
            return word
    return None


def wait_until(predicate: object, *, timeout: float = 20.0, what: str = "condition") -> None:
    """Poll ``predicate`` until it is true; fail with ``what`` after ``timeout`` seconds.

    Used only to wait for another process to reach a state, never to let time pass.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")
