"""Run the demo: log in, check status, refresh a due token, let the daemon refresh it, log out.

Everything is local and private: a Trakt emulator on loopback (auto-approving the device
code, issuing 30-second tokens so that a refresh falls due within the demo), and gnome-keyring
on its own D-Bus session in a temporary HOME. Nothing touches your own keyring or config.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support.keyring_session import KeyringSession

REPO = Path(__file__).resolve().parents[1]
CLIENT_ID = "demo-client-id"
CLIENT_SECRET = "demo-client-secret"
# Short enough that the demo sees a refresh fall due, long enough to read the output.
TOKEN_LIFETIME = 30
BACKGROUND_REFRESHES = 2
SERVICE_NAME = "tvmaniac-refreshd.service"


def say(text: str) -> None:
    print(f"\n=== {text}", flush=True)


def mask(text: str) -> str:
    """Show a token's shape, never the token: the demo's output may be pasted anywhere."""
    token = text.strip()
    return f"{token[:4]}...({len(token)} characters)" if token else "(nothing)"


class Demo:
    def __init__(self, root: Path, keyring: KeyringSession) -> None:
        self.root = root
        self.keyring = keyring
        self.config = root / "config.toml"
        self.env = dict(keyring.env)
        self.env.update(
            {
                "TVMANIAC_REFRESHD_CONFIG": str(self.config),
                "HOME": str(root),  # the state directory follows HOME (storage/layout.py)
                "PYTHONPATH": str(REPO),
                "TRAKT_EMULATOR_CLIENT_SECRET": CLIENT_SECRET,
            }
        )

    def start_emulator(self) -> subprocess.Popen[str]:
        port_file = self.root / "emulator.url"
        emulator = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "trakt_emulator",
                "--client-id",
                CLIENT_ID,
                "--ttl",
                str(TOKEN_LIFETIME),
                "--auto-approve-after-polls",
                "2",
                "--device-interval",
                "1",
                "--port-file",
                str(port_file),
            ],
            env=self.env,
            stdout=subprocess.PIPE,
            text=True,
        )
        if emulator.stdout is None:
            raise SystemExit("demo failed: the emulator's output is not connected")
        print(emulator.stdout.readline().strip(), flush=True)
        url = port_file.read_text().strip()
        self.config.write_text(
            "[accounts.default]\n"
            'provider = "trakt"\n'
            f'client_id = "{CLIENT_ID}"\n'
            f'auth_url = "{url}"\n'
            f'api_url = "{url}"\n'
        )
        self.config.chmod(0o600)
        return emulator

    def run(
        self, *args: str, show: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        print(f"$ tvmaniac-refreshd {' '.join(args)}", flush=True)
        result = subprocess.run(
            [sys.executable, "-m", "tvmaniac_refreshd", *args],
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if show:
            sys.stdout.write(result.stdout)
        sys.stdout.write(result.stderr)
        print(f"(exit code {result.returncode})", flush=True)
        if result.returncode != 0:
            raise SystemExit(f"demo failed: `{' '.join(args)}` exited {result.returncode}")
        return result

    def main(self) -> None:
        say("A private Secret Service (gnome-keyring on its own D-Bus session) is running")
        print(f"HOME for this demo: {self.keyring.home}")
        say("Starting the local Trakt emulator (it approves device codes by itself)")
        emulator = self.start_emulator()
        try:
            self.story()
        finally:
            emulator.terminate()
            emulator.wait(timeout=10)

    def story(self) -> None:
        say("Storing the client secret in the keyring, never in argv or a file")
        self.run("config", "set-secret", stdin=CLIENT_SECRET + "\n")
        say("Checking the config and the environment")
        self.run("config", "check")
        say("Logging in with the device-code flow")
        self.run("login")
        say("The status right after login")
        self.run("status")
        say("A script asks for a token: it is fresh, so no request is made")
        first = self.run("token", show=False)
        print(f"token: {mask(first.stdout)}")
        say(f"Waiting until the {TOKEN_LIFETIME}-second token falls due for refresh")
        self.wait_until_due()
        self.run("status")
        say("Refreshing it, as the timer or the daemon would")
        self.run("refresh")
        second = self.run("token", show=False)
        renewed = "a new one" if first.stdout != second.stdout else "the same one"
        print(f"token: {mask(second.stdout)} ({renewed})")
        self.run("status", "--json")
        self.background_refreshes()
        say("Logging out: the token is revoked at the emulator and deleted from the keyring")
        self.run("logout")
        self.run("status")
        say(
            "Done: login, status, refreshes on demand and in the background, and logout all "
            "worked against real components"
        )

    def background_refreshes(self) -> None:
        """Run the daemon as systemd would, until it has refreshed the token twice by itself."""
        say(f"Starting the daemon in the background (`run`, as the {SERVICE_NAME} unit does)")
        log_path = self.root / "daemon.log"
        with log_path.open("w") as log:
            daemon = subprocess.Popen(
                [sys.executable, "-m", "tvmaniac_refreshd", "run"],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        try:
            say(f"Waiting for {BACKGROUND_REFRESHES} refreshes by the daemon, each when due")
            deadline = time.monotonic() + BACKGROUND_REFRESHES * TOKEN_LIFETIME + 30
            refreshed: list[str] = []
            while len(refreshed) < BACKGROUND_REFRESHES:
                if time.monotonic() > deadline or daemon.poll() is not None:
                    sys.stdout.write(log_path.read_text())
                    raise SystemExit("demo failed: the daemon did not refresh in the background")
                time.sleep(1)  # the demo's own pace: the daemon decides when to refresh
                refreshed = [
                    line
                    for line in log_path.read_text().splitlines()
                    if "refresh.finished" in line and "outcome=refreshed" in line
                ]
            for line in refreshed:
                print(f"daemon log: {line}")
            self.run("status")
        finally:
            daemon.terminate()
            daemon.wait(timeout=30)
        print(f"daemon stopped (exit code {daemon.returncode})")

    def wait_until_due(self) -> None:
        import json  # noqa: PLC0415

        deadline = time.monotonic() + TOKEN_LIFETIME
        while time.monotonic() < deadline:
            status = subprocess.run(
                [sys.executable, "-m", "tvmaniac_refreshd", "status", "--json"],
                env=self.env,
                capture_output=True,
                text=True,
                check=True,
            )
            if json.loads(status.stdout)["accounts"][0]["state"] != "active":
                return
            time.sleep(1)
        raise SystemExit("demo failed: the token never fell due")


def main() -> int:
    os.umask(0o077)
    with (
        tempfile.TemporaryDirectory(prefix="tvmaniac-demo-") as directory,
        KeyringSession() as keyring,
    ):
        Demo(Path(directory), keyring).main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
