"""systemd user units: render them, install them, and report their state via systemctl."""

from __future__ import annotations

import getpass
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TextIO

from tvmaniac_refreshd.core.errors import ServiceError, ServiceUnavailable
from tvmaniac_refreshd.core.locations import APP
from tvmaniac_refreshd.service.base import (
    Plan,
    Runner,
    ServiceMode,
    ServiceState,
    check_renderable,
    other_mode,
    readme,
    template,
    write_atomically,
)
from tvmaniac_refreshd.storage.safe_files import ensure_private_dir

DAEMON_UNIT = f"{APP}.service"
TIMER_SERVICE = f"{APP}-refresh.service"
TIMER_UNIT = f"{APP}-refresh.timer"
UNITS: dict[ServiceMode, tuple[str, ...]] = {
    "daemon": (DAEMON_UNIT,),
    "timer": (TIMER_SERVICE, TIMER_UNIT),
}
# What `enable` and `restart` act on in each mode.
ENTRY: dict[ServiceMode, str] = {"daemon": DAEMON_UNIT, "timer": TIMER_UNIT}
# systemctl's words when there is no user manager: no bus at all, or a session bus on which
# systemd (org.freedesktop.systemd1) cannot be found or started.
# What PrivateTmp= replaces with directories of the unit's own (names, not places we write).
PRIVATE_TMP_DIRS = ("/tmp/", "/var/tmp/")  # noqa: S108
NO_MANAGER = ("Failed to connect to bus", "No medium found", "org.freedesktop.systemd1")
_PLAIN = re.compile(r"[A-Za-z0-9_@%+=:,./-]+")
# What the oneshot's exit statuses mean (cli/parser.py's EXIT_CODES), for `service status`.
EXIT_MEANINGS = {
    "1": "failure",
    "69": "keyring unavailable",
    "75": "temporary failure, tokens kept",
    "77": "login needed",
    "78": "invalid config",
}


def quote_exec(argument: str) -> str:
    """Quote one ExecStart= word: systemd expands ``%`` specifiers and ``$`` variables."""
    escaped = argument.replace("%", "%%").replace("$", "$$")
    if _PLAIN.fullmatch(argument):
        return escaped
    return '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'


def private_tmp_binds(paths: Sequence[str]) -> list[str]:
    """Return the directories under /tmp or /var/tmp that the unit must still see.

    ``PrivateTmp=yes`` gives the unit empty /tmp and /var/tmp of its own, so an installation
    (a clone or venv under /tmp, as CI and quick tries make) or a config there would vanish and
    the unit fail with 203/EXEC. Binding just the top directory of each back in (read-only) keeps
    the rest of /tmp private. Paths whose names systemd would need quoted are left out: an
    installation there fails visibly at start rather than with a half-escaped bind.
    """
    binds: list[str] = []
    for path in paths:
        for base in PRIVATE_TMP_DIRS:
            if path.startswith(base) and len(path) > len(base):
                top = base + path[len(base) :].split("/", 1)[0]
                if _PLAIN.fullmatch(top) and top not in binds:
                    binds.append(top)
    return binds


def render(name: str, argv: Sequence[str]) -> bytes:
    """Return unit ``name`` with this installation's command and README filled in."""
    check_renderable([*argv, str(readme())])
    text = template(f"systemd/{name}").read_text(encoding="utf-8")
    text = text.replace("@EXEC@", " ".join(quote_exec(part) for part in argv))
    seen = [*argv, str(Path(__file__).resolve().parents[2])]  # the package's own files too
    binds = private_tmp_binds([part for part in seen if part.startswith("/")])
    if binds and "\nPrivateTmp=yes\n" in text:
        listed = " ".join(bind.replace("%", "%%") for bind in binds)
        text = text.replace(
            "\nPrivateTmp=yes\n", f"\nPrivateTmp=yes\nBindReadOnlyPaths={listed}\n", 1
        )
    return text.replace("file://@README@", readme().as_uri()).encode()


# Containers, WSL without systemd, a chroot: `systemctl --user` has nothing to talk to, and no
# amount of logging in or lingering changes that.
NOT_BOOTED = (
    "PID 1 is another init (a container, WSL without systemd, a chroot), so no systemd user "
    "manager runs here and no user unit can"
)
INSTEAD = (
    "run `tvmaniac-refreshd run` under the supervisor you have, or `tvmaniac-refreshd refresh "
    "--all` from cron"
)


def _unavailable(message: str) -> ServiceUnavailable:
    return ServiceUnavailable(
        f"no systemd user manager is running for this user (`systemctl --user`: "
        f"{message or 'failed'}). It needs a login session with systemd (or "
        "`loginctl enable-linger`), with XDG_RUNTIME_DIR and DBUS_SESSION_BUS_ADDRESS set; "
        "without one, run `tvmaniac-refreshd run` yourself, or `refresh --all` from cron"
    )


class Systemd:
    """The systemd user instance of the current user."""

    name = "systemd"

    def __init__(self, environ: Mapping[str, str], runner: Runner, *, booted: bool = True) -> None:
        """``booted``: systemd is PID 1 (sd_booted); without it no user unit can ever run."""
        self._environ = environ
        self._run = runner
        self._booted = booted
        home = Path(environ.get("HOME") or Path.home())
        config = Path(environ.get("XDG_CONFIG_HOME") or home / ".config")
        self.unit_dir = config / "systemd" / "user"
        # The units' ReadWritePaths=-%h/.local/state/tvmaniac-refreshd: the service's own
        # environment has no XDG_STATE_HOME, so this is where it keeps its state.
        self.state_dir = home / ".local" / "state" / APP

    def _systemctl(self, *args: str, check: bool = True) -> str:
        result = self._run(["systemctl", "--user", *args])
        if check and result.returncode != 0:
            message = (result.stderr or result.stdout).strip()
            if any(sign in message for sign in NO_MANAGER):
                raise _unavailable(message)
            raise ServiceError(f"`systemctl --user {' '.join(args)}` failed: {message}")
        return result.stdout

    def probe(self) -> None:
        """Make sure a systemd user manager answers.

        A session bus without one (a container, an ssh login without lingering, a desktop
        without systemd) answers every `systemctl --user` with an error of its own wording.

        Raises:
            ServiceUnavailable: if no user manager answers.
        """
        if not self._booted:
            raise ServiceUnavailable(
                f"systemd is not running as the service manager: {NOT_BOOTED}; {INSTEAD}"
            )
        result = self._run(["systemctl", "--user", "show", "--property=Version"])
        if result.returncode != 0:
            raise _unavailable((result.stderr or result.stdout).strip())

    def installed_mode(self) -> ServiceMode | None:
        for mode, units in UNITS.items():
            if all((self.unit_dir / unit).exists() for unit in units):
                return mode
        return None

    def install(
        self, mode: ServiceMode, argv: Sequence[str], *, dry_run: bool, out: TextIO
    ) -> None:
        """Write the units of ``mode``, remove the other mode's, enable and (re)start."""
        plan = Plan(write={self.unit_dir / unit: render(unit, argv) for unit in UNITS[mode]})
        other = other_mode(mode)
        stale = [unit for unit in UNITS[other] if (self.unit_dir / unit).exists()]
        plan.remove = [self.unit_dir / unit for unit in stale]
        commands = [["disable", "--now", *stale]] if stale else []
        commands += [["daemon-reload"], ["enable", ENTRY[mode]], ["restart", ENTRY[mode]]]
        if dry_run:
            plan.show(out)
            for command in commands:
                out.write(f"would run: systemctl --user {' '.join(command)}\n")
            return
        self.probe()  # before anything is written: without a user manager, nothing is
        # The units' ReadWritePaths= names it; under ProtectHome=read-only the service could
        # not create it itself.
        ensure_private_dir(self.state_dir)
        created = [path for path in plan.write if not path.exists()]
        try:
            for path, content in plan.write.items():
                if path.exists() and path.read_bytes() != content:
                    # Our units are regenerated on every install; edits belong in a drop-in.
                    out.write(
                        f"Replacing {path}, which differed from the packaged unit. Keep local "
                        f"changes in a drop-in instead: systemctl --user edit {path.name}\n"
                    )
                write_atomically(path, content)
            if stale:
                self._systemctl(*commands[0], check=False)
            for path in plan.remove:
                path.unlink(missing_ok=True)
            for command in commands[1 if stale else 0 :]:
                self._systemctl(*command)
        except BaseException:
            # A failed install leaves no unit of ours behind that systemd never accepted.
            for path in created:
                path.unlink(missing_ok=True)
            raise
        what = "daemon service" if mode == "daemon" else "hourly timer"
        out.write(f"Installed and started the {what}: {ENTRY[mode]} in {self.unit_dir}\n")
        out.write("Follow it with: journalctl --user -u 'tvmaniac-refreshd*' -f\n")
        self._warn_without_linger(out)

    def uninstall(self, *, dry_run: bool, out: TextIO) -> None:
        """Stop, disable and remove whichever units are installed; fine if none are."""
        present = [
            unit for units in UNITS.values() for unit in units if (self.unit_dir / unit).exists()
        ]
        if not present:  # nothing to stop or forget: no need to ask a manager, which may be absent
            out.write("No tvmaniac-refreshd units are installed; nothing to do.\n")
            return
        if dry_run:
            for unit in present:
                out.write(f"would remove {self.unit_dir / unit}\n")
            out.write(f"would run: systemctl --user disable --now {' '.join(present)}\n")
            out.write("would run: systemctl --user daemon-reload\n")
            return
        self._systemctl("disable", "--now", *present, check=False)
        if TIMER_UNIT in present:
            # Forget Persistent=true's "last run" stamp, so nothing is left behind.
            self._systemctl("clean", "--what=state", TIMER_UNIT, check=False)
        for unit in present:
            (self.unit_dir / unit).unlink(missing_ok=True)
        self._systemctl("daemon-reload")
        self._systemctl("reset-failed", *present, check=False)
        out.write(f"Removed {', '.join(present)} from {self.unit_dir}\n")

    def state(self) -> ServiceState:
        """Report the installed mode and what systemd says of it."""
        mode = self.installed_mode()
        files = tuple(str(self.unit_dir / unit) for unit in (UNITS[mode] if mode else ()))
        if mode is None and not self._booted:
            detail = f"{NOT_BOOTED}; {INSTEAD}"
            return ServiceState("systemd", None, "unavailable", detail, available=False)
        if mode is None:
            return ServiceState("systemd", None, "not installed", lingering=self._lingering())
        fields = self._show(ENTRY[mode], "ActiveState,SubState,Result,StatusText,NRestarts")
        active = f"{fields.get('ActiveState', '?')} ({fields.get('SubState', '?')})"
        if mode == "timer":
            detail = self._last_run()
        else:
            detail = fields.get("StatusText", "") or f"result: {fields.get('Result', '?')}"
            if fields.get("NRestarts", "0") not in ("", "0"):
                detail += f"; restarted {fields['NRestarts']} times"
        return ServiceState("systemd", mode, active, detail, self._lingering(), files)

    def _show(self, unit: str, properties: str) -> dict[str, str]:
        shown = self._systemctl("show", "-p", properties, unit)
        return dict(line.split("=", 1) for line in shown.splitlines() if "=" in line)

    def _last_run(self) -> str:
        """The oneshot's last run (its result, exit status and time) and the timer's next one.

        The timer's own Result= says nothing about the runs it started, so it is the service
        that is asked; a service that never started since the user manager did has no exit time.
        """
        run = self._show(TIMER_SERVICE, "ActiveState,Result,ExecMainStatus,ExecMainExitTimestamp")
        timer = self._show(TIMER_UNIT, "NextElapseUSecRealtime")
        if run.get("ActiveState") in ("activating", "deactivating"):
            last = "last run: running now"
        elif not run.get("ExecMainExitTimestamp"):
            last = "last run: never ran"
        else:
            status = run.get("ExecMainStatus", "?")
            outcome = "succeeded" if run.get("Result") == "success" else "failed"
            meaning = EXIT_MEANINGS.get(status)
            code = f"exit status {status}" + (f", {meaning}" if meaning else "")
            if run.get("Result") not in ("success", "exit-code", None):
                code += f"; {run['Result']}"
            last = f"last run: {outcome} ({code}) at {run['ExecMainExitTimestamp']}"
        following = timer.get("NextElapseUSecRealtime")
        return f"{last}; next run: {following}" if following else last

    def _lingering(self) -> bool | None:
        user = self._environ.get("USER") or getpass.getuser()
        result = self._run(["loginctl", "show-user", user, "-p", "Linger", "--value"])
        if result.returncode != 0:
            return None
        return result.stdout.strip() == "yes"

    def _warn_without_linger(self, out: TextIO) -> None:
        if self._lingering() is False:
            user = self._environ.get("USER") or getpass.getuser()
            out.write(
                "Note: lingering is off for this user, so the service runs only while you are "
                "logged in; tokens due meanwhile are refreshed at your next login. To keep it "
                f"running, run: loginctl enable-linger {user}\n"
                "(where polkit allows it, as it does by default, you may do this yourself; "
                "otherwise ask an administrator to run it)\n"
            )
