"""systemd user units: render them, install them, and report their state via systemctl."""

from __future__ import annotations

import getpass
import os
import re
import site
import sys
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
    template,
    write_atomically,
)
from tvmaniac_refreshd.service.job_units import JobTimer, SystemdJobUnits
from tvmaniac_refreshd.service.systemd_words import (
    REINSTALL,
    exec_interpreter,
    exit_reason,
    replacing,
)
from tvmaniac_refreshd.storage import layout
from tvmaniac_refreshd.storage.locks import remove_unheld
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
# The service that runs our code in each mode: its drop-ins and its ExecStart= are the ones
# that count (in timer mode `systemctl --user edit tvmaniac-refreshd` changes nothing).
WORKER: dict[ServiceMode, str] = {"daemon": DAEMON_UNIT, "timer": TIMER_SERVICE}
ALL_UNITS = (DAEMON_UNIT, TIMER_SERVICE, TIMER_UNIT)
# systemctl's words when there is no user manager: no bus at all, or a session bus on which
# systemd (org.freedesktop.systemd1) cannot be found or started.
# What PrivateTmp= replaces with directories of the unit's own (names, not places we write).
PRIVATE_TMP_DIRS = ("/tmp/", "/var/tmp/")  # noqa: S108
# Where a distribution package installs the user units for every user (the .deb does): systemd
# finds them there, and a unit of the same name in ~/.config/systemd/user overrides them.
PACKAGED_UNIT_DIR = Path("/usr/lib/systemd/user")
NO_MANAGER = ("Failed to connect to bus", "No medium found", "org.freedesktop.systemd1")
_PLAIN = re.compile(r"[A-Za-z0-9_@%+=:,./-]+")


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


def home_binds(paths: Sequence[str], home: str) -> list[str]:
    """Return the paths under ``home`` that the unit must still see, outermost only.

    ``ProtectHome=tmpfs`` gives the unit an empty home, so an installation there (a venv,
    pipx, ``pip --user``, pyenv) or a config named with ``--config`` would vanish.
    """
    base = home.rstrip("/") + "/"
    under = [
        path for path in dict.fromkeys(paths) if path.startswith(base) and _PLAIN.fullmatch(path)
    ]
    return [
        path
        for path in under
        if not any(path.startswith(other + "/") for other in under if other != path)
    ]


def _installation(argv: Sequence[str]) -> list[str]:
    """The absolute paths this installation runs from: the interpreter's prefix, the package,
    the running interpreter's prefixes and user site, and any path in the command line."""
    interpreter = Path(argv[0])
    return [
        str(interpreter.parent.parent),
        *(part for part in argv[1:] if part.startswith("/")),
        str(Path(__file__).resolve().parents[2]),  # the package's own files
        sys.prefix,
        sys.base_prefix,
        *([user_site] if Path(user_site := site.getusersitepackages()).is_dir() else []),
    ]


def render(name: str, argv: Sequence[str], *, home: Path | None = None) -> bytes:
    """Return unit ``name`` with this installation's command filled in."""
    check_renderable(argv)
    text = template(f"systemd/{name}").read_text(encoding="utf-8")
    text = text.replace("@EXEC@", " ".join(quote_exec(part) for part in argv))
    hidden = home_binds(_installation(argv), str(home or Path.home()))
    if hidden and "\nProtectHome=tmpfs\n" in text:
        listed = " ".join(f"-{bind.replace('%', '%%')}" for bind in hidden)
        text = text.replace(
            "\nProtectHome=tmpfs\n", f"\nProtectHome=tmpfs\nBindReadOnlyPaths={listed}\n", 1
        )
    seen = [*argv, str(Path(__file__).resolve().parents[2])]  # the package's own files too
    binds = private_tmp_binds([part for part in seen if part.startswith("/")])
    if binds and "\nPrivateTmp=yes\n" in text:
        listed = " ".join(bind.replace("%", "%%") for bind in binds)
        text = text.replace(
            "\nPrivateTmp=yes\n", f"\nPrivateTmp=yes\nBindReadOnlyPaths={listed}\n", 1
        )
    return text.encode()


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


def _exec_start(unit: bytes) -> str | None:
    for line in unit.decode().splitlines():
        if line.startswith("ExecStart="):
            return line
    return None


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

    def __init__(
        self,
        environ: Mapping[str, str],
        runner: Runner,
        *,
        packaged_dir: Path = PACKAGED_UNIT_DIR,
        booted: bool = True,
    ) -> None:
        """``booted``: systemd is PID 1 (sd_booted); without it no user unit can ever run."""
        self._environ = environ
        self.packaged_dir = packaged_dir
        self._run = runner
        self._booted = booted
        home = Path(environ.get("HOME") or Path.home())
        self.home = home
        config = Path(environ.get("XDG_CONFIG_HOME") or home / ".config")
        self.unit_dir = config / "systemd" / "user"
        # The units' ReadWritePaths=-%h/.local/state/tvmaniac-refreshd: %h is the account's
        # home, and the layout's rule puts every caller's state there.
        self.state_dir = Path(layout.state_directory(environ, "linux"))

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
        return self._packaged_enabled()

    def _packaged(self, mode: ServiceMode) -> bool:
        return all((self.packaged_dir / unit).exists() for unit in UNITS[mode])

    def _packaged_enabled(self) -> ServiceMode | None:
        """The mode whose packaged unit this user enabled (`systemctl --user enable`), if any."""
        for mode in UNITS:
            if self._packaged(mode) and not (self.unit_dir / ENTRY[mode]).exists():
                enabled = self._run(["systemctl", "--user", "is-enabled", ENTRY[mode]])
                if enabled.stdout.strip() == "enabled":
                    return mode
        return None

    def _unit_file(self, unit: str) -> Path:
        """The file systemd loads for ``unit``: the user's own, else the packaged one."""
        own = self.unit_dir / unit
        packaged = self.packaged_dir / unit
        return packaged if not own.exists() and packaged.exists() else own

    def _packaged_fits(self, mode: ServiceMode, argv: Sequence[str]) -> bool:
        """Whether the packaged units of ``mode`` run exactly what ``argv`` would (this
        installation, no --config of its own), so enabling them is all an install needs."""
        if not self._packaged(mode):
            return False
        for unit in UNITS[mode]:
            wanted = _exec_start(render(unit, argv, home=self.home))
            if wanted is not None and wanted != _exec_start(
                (self.packaged_dir / unit).read_bytes()
            ):
                return False
        return True

    def install(
        self, mode: ServiceMode, argv: Sequence[str], *, dry_run: bool, out: TextIO
    ) -> None:
        """Write the units of ``mode``, remove the other mode's, enable and (re)start.

        When the package installed units that run this very command, they are enabled as they
        are, and a copy of ours that would override them is removed.
        """
        if self._packaged_fits(mode, argv):
            self._install_packaged(mode, dry_run=dry_run, out=out)
            return
        plan = Plan(
            write={self.unit_dir / unit: render(unit, argv, home=self.home) for unit in UNITS[mode]}
        )
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
                if path.exists() and (old := path.read_bytes()) != content:
                    out.write(replacing(path, old, content, argv[0]))
                write_atomically(path, content)
            if stale:
                self._systemctl(*commands[0], check=False)
                # A failed unit outlives its file ("not-found failed", a degraded manager).
                self._systemctl("reset-failed", *stale, check=False)
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
        if self._packaged(mode):
            out.write(
                f"It overrides the packaged {ENTRY[mode]} in {self.packaged_dir}, which runs "
                "another command (the package's, without --config); `service uninstall` "
                "removes the override.\n"
            )
        out.write("Follow it with: journalctl --user -u 'tvmaniac-refreshd*' -f\n")
        self._tell_where_settings_go(mode, out)
        self._warn_without_linger(out)

    def _install_packaged(self, mode: ServiceMode, *, dry_run: bool, out: TextIO) -> None:
        """Enable and (re)start the packaged units of ``mode``; stop the other mode's."""
        other = other_mode(mode)
        copies = [self.unit_dir / unit for unit in (*UNITS[mode], *UNITS[other])]
        copies = [path for path in copies if path.exists()]
        stale = [unit for unit in UNITS[other] if self._unit_file(unit).exists()]
        commands = [["disable", "--now", *stale]] if stale else []
        commands += [["daemon-reload"], ["enable", ENTRY[mode]], ["restart", ENTRY[mode]]]
        if dry_run:
            for path in copies:
                out.write(f"would remove {path} (it overrides the packaged unit)\n")
            for command in commands:
                out.write(f"would run: systemctl --user {' '.join(command)}\n")
            return
        self.probe()
        ensure_private_dir(self.state_dir)
        if stale:
            self._systemctl(*commands[0], check=False)
        if copies:
            # Their enablement links name the copies; the packaged unit gets its own.
            self._systemctl("disable", *(path.name for path in copies), check=False)
        for path in copies:
            path.unlink(missing_ok=True)
        for command in commands[1 if stale else 0 :]:
            self._systemctl(*command)
        what = "daemon service" if mode == "daemon" else "hourly timer"
        out.write(
            f"Enabled and started the packaged {what}: {ENTRY[mode]} in {self.packaged_dir}\n"
        )
        out.write("Follow it with: journalctl --user -u 'tvmaniac-refreshd*' -f\n")
        self._tell_where_settings_go(mode, out)
        self._warn_without_linger(out)

    def _tell_where_settings_go(self, mode: ServiceMode, out: TextIO) -> None:
        """Name the unit whose drop-ins count in ``mode``, and the drop-ins that no longer do."""
        worker = WORKER[mode]
        if mode == "daemon":
            out.write(
                f"Local settings (Environment=, BindPaths=): systemctl --user edit "
                f"{worker}; then systemctl --user restart {worker}\n"
            )
        else:
            out.write(
                f"Local settings (Environment=, BindPaths=): systemctl --user edit {worker} "
                "(not tvmaniac-refreshd.service: that is daemon mode's unit); they apply from "
                "its next run, with no reload\n"
            )
        idle = self.unit_dir / f"{WORKER[other_mode(mode)]}.d"
        if idle.is_dir() and any(idle.iterdir()):
            out.write(
                f"Note: your drop-ins in {idle} do not apply in {mode} mode; move what you "
                f"still need to {self.unit_dir / (worker + '.d')}\n"
            )

    def install_jobs(
        self, jobs: Sequence[JobTimer], argv: Sequence[str], *, dry_run: bool, out: TextIO
    ) -> None:
        """Timer mode: a timer per job (none in daemon mode: the daemon runs them itself)."""
        check_renderable(argv)
        exec_start = " ".join(quote_exec(part) for part in argv)
        SystemdJobUnits(self.unit_dir, self._systemctl).install(
            jobs, exec_start, dry_run=dry_run, out=out
        )

    def uninstall(self, *, dry_run: bool, out: TextIO) -> None:
        """Stop, disable and remove whichever units are installed, and what they left behind
        (a failed unit, the daemon's pid file, free locks); fine if none are, also where no
        user manager runs at all."""
        present = [unit for unit in ALL_UNITS if (self.unit_dir / unit).exists()]
        packaged = self._packaged_enabled() if self._booted else None
        if dry_run:
            self._show_uninstall(present, packaged, out)
            return
        self._disable_packaged(packaged, out)
        SystemdJobUnits(self.unit_dir, self._systemctl).uninstall(out)
        if present:
            self._systemctl("disable", "--now", *present, check=False)
            if TIMER_UNIT in present:
                # Forget Persistent=true's "last run" stamp, so nothing is left behind.
                self._systemctl("clean", "--what=state", TIMER_UNIT, check=False)
            for unit in present:
                (self.unit_dir / unit).unlink(missing_ok=True)
            self._systemctl("daemon-reload")
        if self._booted:
            # Every name, not only the files found: a unit that failed before an earlier
            # uninstall or a mode switch stays "not-found failed" (and the manager "degraded")
            # until this. Nothing to reset where no user manager can run.
            for unit in ALL_UNITS:
                self._systemctl("reset-failed", unit, check=False)
        self._report_uninstall(present, packaged, self._remove_leftovers(), out)

    def _show_uninstall(
        self, present: list[str], packaged: ServiceMode | None, out: TextIO
    ) -> None:
        """What `uninstall --dry-run` would do."""
        for unit in present:
            out.write(f"would remove {self.unit_dir / unit}\n")
        stopped = [*present, *([ENTRY[packaged]] if packaged else [])]
        if stopped:
            out.write(f"would run: systemctl --user disable --now {' '.join(stopped)}\n")
        if present:
            out.write("would run: systemctl --user daemon-reload\n")
        if self._booted:
            out.write(f"would run: systemctl --user reset-failed {' '.join(ALL_UNITS)}\n")

    def _report_uninstall(
        self,
        present: list[str],
        packaged: ServiceMode | None,
        leftovers: list[str],
        out: TextIO,
    ) -> None:
        if present:
            out.write(f"Removed {', '.join(present)} from {self.unit_dir}\n")
        elif packaged is None:
            out.write("No tvmaniac-refreshd units were installed; nothing to do.\n")
        if leftovers:
            out.write(f"Removed what the service left behind: {', '.join(leftovers)}\n")
        drop_ins = [self.unit_dir / f"{unit}.d" for unit in ALL_UNITS]
        for directory in drop_ins:
            if directory.is_dir():
                out.write(f"Kept your drop-ins in {directory} (delete them yourself if unwanted)\n")

    def _disable_packaged(self, mode: ServiceMode | None, out: TextIO) -> None:
        """Disable and stop the packaged unit this user enabled; its files are the package's."""
        if mode is None:
            return
        self._systemctl("disable", "--now", ENTRY[mode], check=False)
        out.write(
            f"Disabled and stopped the packaged {ENTRY[mode]}; its files stay in "
            f"{self.packaged_dir} (the package's)\n"
        )

    def _remove_leftovers(self) -> list[str]:
        """Remove the stopped daemon's pid file and the lock files no process holds."""
        locks = Path(layout.lock_directory(str(self.state_dir)))
        in_use = Path(layout.in_use_file(str(locks), "-")).parent  # the jobs' in-use locks
        candidates = sorted(self.state_dir.glob("daemon-*.pid")) + sorted(locks.glob("*.lock"))
        candidates += sorted(in_use.glob("*.lock"))
        removed = [str(path) for path in candidates if remove_unheld(path)]
        for directory in (in_use, locks):
            try:
                directory.rmdir()  # only if nothing is left: a held lock stays, and its directory
            except OSError:
                pass
            else:
                removed.append(str(directory))
        return removed

    def state(self) -> ServiceState:
        """Report the installed mode and what systemd says of it."""
        mode = self.installed_mode()
        files = tuple(str(self._unit_file(unit)) for unit in (UNITS[mode] if mode else ()))
        if mode is None and not self._booted:
            detail = f"{NOT_BOOTED}; {INSTEAD}"
            return ServiceState("systemd", None, "unavailable", detail, available=False)
        if mode is None:
            return ServiceState("systemd", None, "not installed", lingering=self._lingering())
        fields = self._show(
            ENTRY[mode],
            "ActiveState,SubState,Result,StatusText,NRestarts,ExecMainStatus,ExecMainCode",
        )
        state = fields.get("ActiveState", "?")
        active = f"{state} ({fields.get('SubState', '?')})"
        failed = state == "failed"
        running = state in ("active", "reloading", "activating", "deactivating")
        start = None if running else f"systemctl --user start {ENTRY[mode]}"
        if mode == "timer":
            detail, run_failed = self._last_run()
            failed = failed or run_failed
            if start:
                detail = f"the timer is stopped; start it with: {start}; {detail}"
        else:
            detail = self._daemon_detail(fields)
        return ServiceState(
            "systemd",
            mode,
            active,
            detail,
            self._lingering(),
            files,
            problem=self._interpreter_problem(mode),
            failed=failed,
            start=start,
        )

    def _daemon_detail(self, fields: Mapping[str, str]) -> str:
        """What the daemon says (only while it runs: a dead one's STATUS= is stale), or why it
        stopped and what to do."""
        state = fields.get("ActiveState")
        if state in ("active", "reloading", "activating", "deactivating"):
            detail = fields.get("StatusText", "") or state or ""
        elif state == "failed":
            detail = (
                f"failed: {exit_reason(fields)}; once fixed: systemctl --user restart {DAEMON_UNIT}"
            )
        else:
            detail = f"stopped; start it with: systemctl --user start {DAEMON_UNIT}"
        restarts = fields.get("NRestarts", "0")
        if restarts not in ("", "0"):
            detail += f"; restarted {restarts} time{'' if restarts == '1' else 's'}"
        return detail

    def _interpreter_problem(self, mode: ServiceMode) -> str:
        """Say so when the installed unit's interpreter is gone (a moved or removed venv)."""
        try:
            unit = (self.unit_dir / WORKER[mode]).read_bytes()
        except OSError:
            return ""
        program = exec_interpreter(unit)
        if program is None or os.path.exists(program):
            return ""
        return (
            f"the unit's interpreter {program} is missing (its installation was moved or "
            f"removed), so the service cannot start: {REINSTALL}"
        )

    def _show(self, unit: str, properties: str) -> dict[str, str]:
        shown = self._systemctl("show", "-p", properties, unit)
        return dict(line.split("=", 1) for line in shown.splitlines() if "=" in line)

    def _last_run(self) -> tuple[str, bool]:
        """The oneshot's last run (its result, exit status and time) and the timer's next one,
        and whether that run failed.

        The timer's own Result= says nothing about the runs it started, so it is the service
        that is asked; a service that never started since the user manager did has no exit time.
        """
        run = self._show(
            TIMER_SERVICE,
            "ActiveState,Result,ExecMainStatus,ExecMainCode,ExecMainExitTimestamp",
        )
        timer = self._show(TIMER_UNIT, "NextElapseUSecRealtime")
        failed = run.get("ActiveState") == "failed"
        if run.get("ActiveState") in ("activating", "deactivating"):
            last = "last run: running now"
        elif not run.get("ExecMainExitTimestamp"):
            last = "last run: never ran"
        else:
            outcome = "succeeded" if run.get("Result") == "success" else "failed"
            last = f"last run: {outcome} ({exit_reason(run)}) at {run['ExecMainExitTimestamp']}"
        following = timer.get("NextElapseUSecRealtime")
        return (f"{last}; next run: {following}" if following else last), failed

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
