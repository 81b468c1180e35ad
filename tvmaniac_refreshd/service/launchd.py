"""launchd agents on macOS: render the plist with plistlib, and drive launchctl.

Only the modern verbs are used (bootstrap, bootout, enable); never load/unload. The sequence is
the one a real launchd accepts in every state, as Homebrew's `brew services` drives it:

- ``enable`` before ``bootstrap``: a label disabled earlier (by the user, or by an older
  version's uninstall) cannot be bootstrapped at all ("Bootstrap failed: 5"), across reboots.
- ``bootout`` returns (0 or 36, EINPROGRESS) before the job has exited; the job stays in
  ``launchctl print`` as "SIGTERMed" until it has. We poll until it is gone, re-issuing the
  bootout each round, and only then bootstrap again (else: 5 or 37).
- no ``kickstart -k`` after ``bootstrap``: ``RunAtLoad`` has already started the job; a kickstart
  would kill that instance mid-refresh.
- no ``disable`` on uninstall: the disabled state outlives the plist and blocks the next install.
- the ``gui/UID`` domain when there is a GUI login, else ``user/UID`` (ssh without a console
  login). launchd loads only a ``LimitLoadToSessionType = Background`` agent there: without
  the key an agent is an Aqua agent, and ``user/UID`` refuses it ("Bootstrap failed: 5"), as
  it does an ``[Aqua, Background]`` array. Without a GUI login ``gui/UID`` answers 125.
- 125 from ``bootout`` is "not loaded", as Homebrew treats it: the domain went away (the user
  logged out) and took the job with it.
"""

from __future__ import annotations

import os
import plistlib
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from tvmaniac_refreshd.core.errors import ServiceError
from tvmaniac_refreshd.core.launchd_log import SESSION_VARIABLE, launchd_log_dir
from tvmaniac_refreshd.service.base import (
    Plan,
    Runner,
    ServiceMode,
    ServiceState,
    check_renderable,
    exec_argv,
    other_mode,
    template,
    write_atomically,
)
from tvmaniac_refreshd.service.job_units import JobTimer

LABELS: dict[ServiceMode, str] = {
    "daemon": "com.tvmaniac.refreshd",
    "timer": "com.tvmaniac.refreshd.refresh",
}
# The agent `brew services start tvmaniac-refreshd` writes (Homebrew's label for a formula): the
# same daemon (packaging/homebrew/'s `service do`), under a name of Homebrew's.
BREW_LABEL = "homebrew.mxcl.tvmaniac-refreshd"
# launchctl's "not loaded" answers: ESRCH, "Could not find specified service", and 125 for a
# gui/UID domain that does not exist (no GUI login, or no longer).
NOT_LOADED = (3, 113, 125)
# bootout of a running job: 0, or 36 (EINPROGRESS) while it is still exiting.
STOPPING = (0, 36)
# launchd sends SIGKILL ExitTimeOut (20 s, the plist) after SIGTERM; a job still listed well
# after that is stuck in a way waiting longer will not fix.
STOP_TIMEOUT = 30.0
# Homebrew retries each second; a little faster costs nothing and the daemon exits quickly.
POLL_INTERVAL = 0.5

# The agents' PATH (the plists' EnvironmentVariables): launchd's default, after Homebrew's bin
# directories (Apple silicon, Intel), so that hooks and terminal-notifier named by bare command
# are found.
AGENT_PATH = "/opt/homebrew/bin:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"

USER_DOMAIN_NOTE = (
    "There is no GUI login for this user (ssh?), so the agent was loaded in the {domain} domain "
    "instead of gui/{uid}, as a Background agent. There it runs outside the login session: it "
    "can read the login keychain only while that keychain is unlocked, it can never show a "
    "Keychain prompt (such a read fails with -25308 and exit 69), and it can post no "
    "notification (set a hook, on_reauth_required). It stays in {domain} until you run "
    "`tvmaniac-refreshd service install` at the Mac, in a Terminal of your desktop session, "
    "which moves it into gui/{uid}. After a reboot it does not start until you open a session "
    "(log in at the Mac, or over ssh).\n"
)
# When launchd refuses or never runs the job although `print-disabled` is clean: the switch in
# Background Task Management (macOS 13+), which launchctl does not show and `enable` does not
# clear.
LOGIN_ITEMS_ADVICE = (
    "check System Settings > General > Login Items > Allow in the Background: switched off "
    "there, the agent (listed under its Python) never runs; `sfltool dumpbtm` lists what "
    "macOS recorded. Switch it on, then run `service install` again"
)
# What `launchctl print` says of a job whose program could not be started.
SPAWN_FAILED = ("78: EX_CONFIG", "spawn scheduled")


def render(mode: ServiceMode, argv: Sequence[str], logs: Path, *, gui: bool = True) -> bytes:
    """Return the agent plist of ``mode`` with this installation's command and log paths.

    ``gui=False`` renders it for the ``user/UID`` domain, which loads only Background agents
    (a plist without the key is an Aqua agent, and refused there).
    """
    check_renderable([*argv, str(logs)])
    with template(f"launchd/{LABELS[mode]}.plist").open("rb") as handle:
        agent: dict[str, Any] = plistlib.load(handle)
    arguments = agent["ProgramArguments"]
    agent["ProgramArguments"] = [*argv, *arguments[1:]]
    for key in ("StandardOutPath", "StandardErrorPath"):
        agent[key] = agent[key].replace("@LOGS@", str(logs))
    agent["EnvironmentVariables"]["PATH"] = AGENT_PATH
    if not gui:
        agent["LimitLoadToSessionType"] = "Background"
        agent["EnvironmentVariables"][SESSION_VARIABLE] = "Background"
    return plistlib.dumps(agent)


JOB_LABEL = "com.tvmaniac.refreshd.job."


def render_job(job: JobTimer, argv: Sequence[str], logs: Path, *, gui: bool = True) -> bytes:
    """Return the agent plist of one job in timer mode: `job run NAME` at its time.

    The refresh agent's plist, with its own label and program, not started at load, and
    StartCalendarInterval (a daily ``at``) or StartInterval (``every``; launchd's calendar
    cannot say "every 90 minutes"). Its output goes to the same log files, trimmed by us.
    """
    agent: dict[str, Any] = plistlib.loads(render("timer", argv, logs, gui=gui))
    agent["Label"] = f"{JOB_LABEL}{job.name}"
    agent["ProgramArguments"] = [*argv, "job", "run", job.name]
    agent["RunAtLoad"] = False
    if job.every is None:
        agent["StartCalendarInterval"] = [{"Hour": job.hour or 0, "Minute": job.minute or 0}]
    else:
        del agent["StartCalendarInterval"]
        agent["StartInterval"] = job.every
    return plistlib.dumps(agent)


def parse_print(text: str) -> dict[str, str]:
    """Return the top-level ``key = value`` lines of `launchctl print SERVICE`.

    For `service status` only (state, pid, last exit code): no decision depends on this text,
    whose format Apple documents as unstable; decisions use launchctl's exit codes.
    """
    fields: dict[str, str] = {}
    for line in text.splitlines():
        match = re.fullmatch(r"\t([a-z][a-z ]*?) = (.*)", line)
        if match and match.group(1) not in fields:
            fields[match.group(1)] = match.group(2).strip()
    return fields


def parse_disabled(text: str) -> dict[str, bool]:
    """Return the labels of `launchctl print-disabled DOMAIN` and whether each is disabled.

    macOS 13 and later print ``"label" => disabled|enabled``; earlier releases ``=> true|false``.
    """
    found: dict[str, bool] = {}
    for label, value in re.findall(r'"([^"]+)" => (\w+)', text):
        found[label] = value in ("disabled", "true")
    return found


class Launchd:
    """The per-user launchd domain: gui/UID with a GUI login, else user/UID."""

    name = "launchd"

    def __init__(
        self,
        environ: Mapping[str, str],
        runner: Runner,
        *,
        uid: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._run = runner
        self._sleep = sleep
        self._monotonic = monotonic
        home = Path(environ.get("HOME") or Path.home())
        self.agent_dir = home / "Library" / "LaunchAgents"
        self.logs = launchd_log_dir(environ)
        self.uid = os.getuid() if uid is None else uid
        self._gui: bool | None = None

    def probe(self) -> None:
        """launchd is always there on a Mac: a domain to bootstrap into exists for every user."""

    @property
    def has_gui(self) -> bool:
        """Whether this user has a GUI login (the gui/UID domain exists)."""
        if self._gui is None:
            self._gui = self._run(["launchctl", "print", f"gui/{self.uid}"]).returncode == 0
        return self._gui

    @property
    def domain(self) -> str:
        return f"gui/{self.uid}" if self.has_gui else f"user/{self.uid}"

    def _domains(self) -> list[str]:
        """Every domain our agents may be loaded in (an earlier install may have used either)."""
        return [f"gui/{self.uid}", f"user/{self.uid}"] if self.has_gui else [f"user/{self.uid}"]

    def _path(self, mode: ServiceMode) -> Path:
        return self.agent_dir / f"{LABELS[mode]}.plist"

    def _launchctl(self, *args: str) -> None:
        result = self._run(["launchctl", *args])
        if result.returncode != 0:
            raise ServiceError(
                f"`launchctl {' '.join(args)}` failed ({result.returncode}): {_said(result)}"
            )

    def _loaded(self, target: str) -> bool:
        return self._run(["launchctl", "print", target]).returncode == 0

    def _stop(self, target: str) -> bool:
        """Boot ``target`` out and wait until launchd no longer lists it; return if it was loaded.

        Raises:
            ServiceError: launchctl refused, or the job is still there after STOP_TIMEOUT.
        """
        deadline = self._monotonic() + STOP_TIMEOUT
        was_loaded = False
        while self._loaded(target):
            was_loaded = True
            if self._monotonic() >= deadline:
                raise ServiceError(
                    f"{target} is still stopping {STOP_TIMEOUT:.0f}s after `launchctl bootout`; "
                    f"see `launchctl print {target}`, then run the command again"
                )
            result = self._run(["launchctl", "bootout", target])
            if result.returncode not in (*STOPPING, *NOT_LOADED):
                raise ServiceError(
                    f"`launchctl bootout {target}` failed ({result.returncode}): {_said(result)}"
                )
            if result.returncode in STOPPING and self._loaded(target):
                self._sleep(POLL_INTERVAL)
        return was_loaded

    def install(
        self, mode: ServiceMode, argv: Sequence[str], *, dry_run: bool, out: TextIO
    ) -> None:
        """Write the agent of ``mode``, replace the other mode's, and (re)start it."""
        other = other_mode(mode)
        domain = self.domain
        path = self._path(mode)
        plan = Plan(write={path: render(mode, argv, self.logs, gui=self.has_gui)})
        if self._path(other).exists():
            plan.remove.append(self._path(other))
        target = f"{domain}/{LABELS[mode]}"
        stops = [f"{d}/{LABELS[m]}" for m in (other, mode) for d in self._domains()]
        if dry_run:
            plan.show(out)
            for stop in stops:
                out.write(f"would run: launchctl bootout {stop} (if loaded; wait until gone)\n")
            out.write(f"would run: launchctl enable {target}\n")
            out.write(f"would run: launchctl bootstrap {domain} {path}\n")
            return
        self._refuse_beside_brew_services()
        self.logs.mkdir(parents=True, exist_ok=True)
        for stop in stops:
            self._stop(stop)
        for written, content in plan.write.items():
            write_atomically(written, content)
        for removed in plan.remove:
            removed.unlink(missing_ok=True)
        self._launchctl("enable", target)
        result = self._run(["launchctl", "bootstrap", domain, str(path)])
        if result.returncode != 0:
            raise ServiceError(self._bootstrap_failure(result, target))
        # RunAtLoad has started it: a kickstart now would kill that first run.
        out.write(f"Installed and started {LABELS[mode]} in {domain} ({path}).\n")
        out.write(f"Its output goes to {self.logs} (trimmed by the program itself).\n")
        if not self.has_gui:
            out.write(USER_DOMAIN_NOTE.format(domain=domain, uid=self.uid))

    def install_jobs(
        self, jobs: Sequence[JobTimer], argv: Sequence[str], *, dry_run: bool, out: TextIO
    ) -> None:
        """Timer mode: an agent per job (none in daemon mode: the daemon runs them itself);
        the agents of jobs no longer configured are booted out and removed."""
        wanted = {f"{JOB_LABEL}{job.name}" for job in jobs}
        present = sorted(path.stem for path in self.agent_dir.glob(f"{JOB_LABEL}*.plist"))
        stale = [label for label in present if label not in wanted]
        if dry_run:
            for job in jobs:
                out.write(f"would write {self.agent_dir / (JOB_LABEL + job.name)}.plist\n")
            for label in stale:
                out.write(f"would remove {self.agent_dir / label}.plist\n")
            return
        for label in (*stale, *wanted):
            for domain in self._domains():
                self._stop(f"{domain}/{label}")
        for label in stale:
            (self.agent_dir / f"{label}.plist").unlink(missing_ok=True)
        for job in jobs:
            label = f"{JOB_LABEL}{job.name}"
            path = self.agent_dir / f"{label}.plist"
            write_atomically(path, render_job(job, argv, self.logs, gui=self.has_gui))
            self._launchctl("enable", f"{self.domain}/{label}")
            result = self._run(["launchctl", "bootstrap", self.domain, str(path)])
            if result.returncode != 0:
                raise ServiceError(self._bootstrap_failure(result, f"{self.domain}/{label}"))
        if jobs:
            names = ", ".join(job.name for job in jobs)
            out.write(f"Installed an agent for each job ({names}): {JOB_LABEL}NAME\n")

    def _brew_plist(self) -> Path:
        return self.agent_dir / f"{BREW_LABEL}.plist"

    def _refuse_beside_brew_services(self) -> None:
        """Two agents would run two daemons; `brew services` already runs this one."""
        if self._brew_plist().exists():
            raise ServiceError(
                f"`brew services` already runs tvmaniac-refreshd ({self._brew_plist()}). Keep "
                "that, or run `brew services stop tvmaniac-refreshd` first; two agents would "
                "run two daemons"
            )

    def _brew_state(self) -> ServiceState:
        """The agent of `brew services`, reported as our daemon (the same program)."""
        files = (str(self._brew_plist()),)
        target = next((t for d in self._domains() if self._loaded(t := f"{d}/{BREW_LABEL}")), None)
        if target is None:
            detail = "started by `brew services`, not loaded: brew services start tvmaniac-refreshd"
            return ServiceState("launchd", "daemon", "not loaded", detail, files=files)
        fields = parse_print(self._run(["launchctl", "print", target]).stdout)
        detail = (
            f"{target} (brew services); last exit code {fields.get('last exit code', 'unknown')}"
        )
        if "pid" in fields:
            detail += f"; pid {fields['pid']}"
        return ServiceState("launchd", "daemon", fields.get("state", "loaded"), detail, files=files)

    def _bootstrap_failure(self, result: Any, target: str) -> str:  # noqa: ANN401
        said = _said(result)
        if self._disabled(target):
            return (
                f"launchd refused to load {target} because it is disabled ({said}); "
                f"run `launchctl enable {target}` and install again"
            )
        return (
            f"`launchctl bootstrap` failed ({result.returncode}): {said}. If the job is still "
            f"loaded, see `launchctl print {target}`; else {LOGIN_ITEMS_ADVICE}. launchd's own "
            f"log says why: {launchd_log_command()}"
        )

    def _disabled(self, target: str) -> bool:
        domain, _, label = target.rpartition("/")
        result = self._run(["launchctl", "print-disabled", domain])
        return result.returncode == 0 and parse_disabled(result.stdout).get(label, False)

    def uninstall(self, *, dry_run: bool, out: TextIO) -> None:
        """Boot out and remove whichever agents are installed or loaded; fine if none are.

        Never `launchctl disable`: that state outlives the plist and would block a later install.
        """
        if not dry_run:
            self.install_jobs([], [], dry_run=False, out=out)
        done = False
        for mode, label in LABELS.items():
            targets = [f"{domain}/{label}" for domain in self._domains()]
            if dry_run:
                if self._path(mode).exists() or any(map(self._loaded, targets)):
                    for target in targets:
                        out.write(f"would run: launchctl bootout {target} (if loaded)\n")
                    out.write(f"would remove {self._path(mode)}\n")
                    done = True
                continue
            stopped = [self._stop(target) for target in targets]
            if any(stopped) or self._path(mode).exists():
                self._path(mode).unlink(missing_ok=True)
                out.write(f"Stopped and removed {label}.\n")
                done = True
        if self._brew_plist().exists():
            out.write("The agent of `brew services` stays: brew services stop tvmaniac-refreshd\n")
        elif not done:
            out.write("No tvmaniac-refreshd agents were installed; nothing to do.\n")

    def state(self) -> ServiceState:
        """Report the installed agent: its plist's program, and `launchctl print` (shown, not
        decided on)."""
        mode = next((mode for mode in LABELS if self._path(mode).exists()), None)
        if mode is None and self._brew_plist().exists():
            return self._brew_state()
        if mode is None:
            return ServiceState("launchd", None, "not installed")
        files = (str(self._path(mode)),)
        missing, warnings = self._program_problems(mode)
        target = next(
            (t for d in self._domains() if self._loaded(t := f"{d}/{LABELS[mode]}")), None
        )
        if target is None:
            return self._unloaded_state(mode, missing, warnings)
        fields = parse_print(self._run(["launchctl", "print", target]).stdout)
        last_exit = fields.get("last exit code", "unknown")
        running = fields.get("state", "loaded")
        detail = f"{target}; last exit code {last_exit}"
        if "pid" in fields:
            detail += f"; pid {fields['pid']}"
        if missing:
            detail = f"{missing} ({detail})"
            return ServiceState("launchd", mode, "failed (program missing)", detail, files=files)
        if "pid" not in fields and (last_exit in SPAWN_FAILED or running in SPAWN_FAILED):
            detail += f". launchd cannot start it; its own log says why: {launchd_log_command()}"
            return ServiceState("launchd", mode, "failed (cannot start)", detail, files=files)
        if mode == "daemon" and running != "running":
            why = (
                f"it is disabled: run `launchctl enable {target}`, then `service install`"
                if self._disabled(target)
                else f"launchctl does not list it as disabled, so {LOGIN_ITEMS_ADVICE}"
            )
            warnings.append(f"the daemon is loaded but not running; {why}")
        return ServiceState("launchd", mode, running, detail, files=files, warnings=warnings)

    def agent_domain(self) -> str | None:
        """Return the domain our agent (either mode) is loaded in, or None."""
        for domain in self._domains():
            if any(self._loaded(f"{domain}/{label}") for label in LABELS.values()):
                return domain
        return None

    def _unloaded_state(self, mode: ServiceMode, missing: str, warnings: list[str]) -> ServiceState:
        target = f"{self.domain}/{LABELS[mode]}"
        files = (str(self._path(mode)),)
        if missing:
            return ServiceState("launchd", mode, "failed (program missing)", missing, files=files)
        if self._disabled(target):
            detail = f"disabled: run `launchctl enable {target}`, then `service install`"
            return ServiceState("launchd", mode, "failed (disabled)", detail, files=files)
        detail = f"not loaded in {self.domain}: run `service install`"
        return ServiceState(
            "launchd", mode, "failed (not loaded)", detail, files=files, warnings=warnings
        )

    def _program_problems(self, mode: ServiceMode) -> tuple[str, list[str]]:
        """Return why the installed plist's program cannot run (or ""), and what else is off.

        launchd bootstraps a plist whose program is gone and only its own log says the spawn
        failed (every ThrottleInterval, forever); the agent's stderr.log stays silent.
        """
        try:
            with self._path(mode).open("rb") as handle:
                program = str(plistlib.load(handle)["ProgramArguments"][0])
        except (
            OSError,
            ValueError,
            KeyError,
            IndexError,
            TypeError,
            plistlib.InvalidFileException,
        ):
            return (
                f"{self._path(mode)} is unreadable or not ours: run `service install` again",
                [],
            )
        if not os.access(program, os.X_OK):
            return (
                f"the agent runs {program}, which no longer exists (a Python upgrade followed "
                "by `brew cleanup`, or a deleted venv?); launchd retries it every 30 s and says "
                "so only in its own log. Run `tvmaniac-refreshd service install` again from the "
                "installation you use",
                [],
            )
        mine = exec_argv(None)[0]
        if program != mine:
            return "", [
                f"the agent runs {program}, not this installation's {mine}: run `service "
                "install` from the installation the agent should use"
            ]
        return "", []


def launchd_log_command() -> str:
    """Return the command that shows launchd's own messages about our agents (spawn failures,
    throttling), which never reach the agent's stderr.log."""
    return (
        'log show --last 1h --predicate \'subsystem == "com.apple.xpc.launchd" AND '
        f'eventMessage CONTAINS "{LABELS["daemon"]}"\''
    )


def _said(result: Any) -> str:  # noqa: ANN401
    return str(result.stderr or result.stdout or "").strip() or "no message"
