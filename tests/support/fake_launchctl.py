"""A stateful stand-in for macOS's `launchctl`, for tests on Linux (no Mac is available).

Faithful, not friendly: it keeps launchd's per-domain tables of loaded and disabled labels in a
JSON file (``$FAKE_LAUNCHCTL_STATE``) and answers with the codes launchd documents or is seen to
give (the sources are in /work/shared/reference/macos.md and the README's macOS section):

- bootstrap of a disabled label: 5 ("Bootstrap failed: 5: Input/output error");
- bootstrap of a loaded label: 5, or 37 ("Operation already in progress") while it is stopping;
- without a GUI login there is no ``gui/UID`` domain: every verb aimed at it answers 125
  ("Domain does not support specified action"), as launchd does over ssh;
- ``LimitLoadToSessionType``: a plist without the key is an Aqua agent (launchd.plist(5)'s
  default). ``user/UID`` loads only a plain ``Background`` agent (Aqua, or an ``[Aqua,
  Background]`` array, is refused with 5, as reported over ssh); ``gui/UID`` refuses an agent
  whose session types do not include Aqua (5);
- bootout of a label that is not loaded: 113 ("Could not find specified service");
- bootout of a running job: 36 (EINPROGRESS; or 0 with ``bootout_code``) and the job stays in
  ``print`` as ``state = SIGTERMed`` for ``stop_ticks`` further launchctl calls. Time here is
  counted in launchctl calls, so no test depends on the wall clock;
- ``kickstart -k`` of a running job kills it (counted in ``kills``) and starts another;
- jobs exit (``exited``) and are started again per their ``KeepAlive``: ``true`` always,
  ``{SuccessfulExit = false}`` after a non-zero exit only; each restart counts in ``runs``;
- a spawn whose program does not exist (or is not executable) fails: the job stays loaded as
  ``spawn scheduled`` with ``last exit code = 78: EX_CONFIG``, retried at each start, and
  nothing reaches the job's own log (launchd reports it only in its own);
- Background Task Management (System Settings > General > Login Items, macOS 13+): a label
  switched off there (``btm_off``) is bootstrapped but never spawned, or, with
  ``btm_bootstrap_code``, refused with that code. ``enable`` does not clear it and
  ``print-disabled`` does not show it; only the user can switch it back on;
- ``print`` and ``print-disabled`` in launchd's format; the legacy verbs (load/unload) are
  refused as usage errors (64), so code that falls back to them fails.

Used as a program on PATH (``install(bin_dir, state)`` writes a wrapper named ``launchctl``),
so the real `service install` drives it through subprocess exactly as it would drive launchd.
"""

from __future__ import annotations

import json
import os
import plistlib
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

STATE_VARIABLE = "FAKE_LAUNCHCTL_STATE"


def new_state(
    *,
    gui: bool = True,
    stop_ticks: int = 3,
    bootout_code: int = 36,
    btm_bootstrap_code: int | None = None,
) -> dict[str, Any]:
    uid = os.getuid()
    domains: dict[str, Any] = {f"user/{uid}": {"loaded": {}, "disabled": {}}}
    if gui:
        domains[f"gui/{uid}"] = {"loaded": {}, "disabled": {}}
    return {
        "stop_ticks": stop_ticks,
        "bootout_code": bootout_code,
        "domains": domains,
        "kills": 0,
        "btm_off": [],
        "btm_bootstrap_code": btm_bootstrap_code,
        "calls": [],
    }


def install(bin_dir: Path, state_file: Path, state: dict[str, Any]) -> Path:
    """Write ``state`` and a `launchctl` program in ``bin_dir`` that runs this module."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    state_file.write_text(json.dumps(state))
    program = bin_dir / "launchctl"
    program.write_text(
        f'#!/bin/sh\n{STATE_VARIABLE}="{state_file}" exec "{sys.executable}" "{__file__}" "$@"\n'
    )
    program.chmod(0o755)
    return program


def load(state_file: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(state_file.read_text())
    return result


def _tick(state: dict[str, Any]) -> None:
    """One launchctl call's worth of time: stopping jobs get closer to gone."""
    for domain in state["domains"].values():
        for label, job in list(domain["loaded"].items()):
            if job["state"] == "SIGTERMed":
                job["left"] -= 1
                if job["left"] <= 0:
                    del domain["loaded"][label]


def _split(target: str) -> tuple[str, str]:
    kind, uid, *rest = target.split("/")
    return f"{kind}/{uid}", "/".join(rest)


class Exit(Exception):  # an exit status, not an error of the fake
    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


NO_DOMAIN = "Could not find domain for port identifier."
NO_GUI = 125  # what launchd answers for gui/UID when that user has no GUI login
FAILED_5 = "Bootstrap failed: 5: Input/output error"


def _domain(state: dict[str, Any], name: str) -> dict[str, Any]:
    if name not in state["domains"]:
        if name.startswith("gui/"):
            raise Exit(NO_GUI, f"Bad request.\n{NO_DOMAIN}")
        raise Exit(113, f"Bad request.\n{NO_DOMAIN}")
    domain: dict[str, Any] = state["domains"][name]
    return domain


def session_types(plist: dict[str, Any]) -> list[str]:
    """Return the plist's session types; without the key, an agent is an Aqua agent."""
    value = plist.get("LimitLoadToSessionType", "Aqua")
    return [value] if isinstance(value, str) else list(value)


def _loads_in(domain_name: str, plist: dict[str, Any]) -> bool:
    types = session_types(plist)
    if domain_name.startswith("user/"):
        return types == ["Background"]
    return "Aqua" in types


def _spawn(job: dict[str, Any]) -> None:
    """Start the job's program, as launchd would: a missing program fails to spawn."""
    job["runs"] += 1
    if not os.access(job["program"], os.X_OK):
        job["state"] = "spawn scheduled"
        job["pid"] = None
        job["last_exit"] = "78: EX_CONFIG"
        job["spawn_failures"] += 1
        return
    job["state"] = "running"
    job["pid"] = 1000 + job["runs"]


def bootstrap(state: dict[str, Any], domain_name: str, path: str) -> str:
    domain = _domain(state, domain_name)
    try:
        with open(path, "rb") as handle:
            plist = plistlib.load(handle)
    except (OSError, plistlib.InvalidFileException):
        raise Exit(5, FAILED_5) from None
    label = plist["Label"]
    if domain["disabled"].get(label):
        raise Exit(5, FAILED_5)
    if not _loads_in(domain_name, plist):
        raise Exit(5, FAILED_5)
    job = domain["loaded"].get(label)
    if job is not None:
        if job["state"] == "SIGTERMed":
            raise Exit(37, "Bootstrap failed: 37: Operation already in progress")
        raise Exit(5, FAILED_5)
    switched_off = label in state["btm_off"]
    if switched_off and state["btm_bootstrap_code"] is not None:
        code = state["btm_bootstrap_code"]
        raise Exit(code, f"Bootstrap failed: {code}: Input/output error")
    job = {
        "path": path,
        "program": plist["ProgramArguments"][0],
        "arguments": plist["ProgramArguments"],
        "keep_alive": plist.get("KeepAlive", False),
        "state": "waiting",
        "runs": 0,
        "pid": None,
        "left": 0,
        "last_exit": "(never exited)",
        "spawn_failures": 0,
    }
    domain["loaded"][label] = job
    if plist.get("RunAtLoad") and not switched_off:
        _spawn(job)
    return ""


def _restarts(keep_alive: object, code: int) -> bool:
    """Whether launchd starts a job again after it exited with ``code`` (launchd.plist(5))."""
    if isinstance(keep_alive, dict):
        if "SuccessfulExit" in keep_alive:
            return (code == 0) == bool(keep_alive["SuccessfulExit"])
        return False
    return bool(keep_alive)


def exited(state: dict[str, Any], target: str, code: int) -> None:
    """The job's process exited with ``code``: record it, and restart it per KeepAlive.

    launchd waits ThrottleInterval before the restart; time is not modelled, the restart is
    (each one counts in ``runs``).
    """
    domain_name, label = _split(target)
    job = _domain(state, domain_name)["loaded"][label]
    assert job["state"] == "running", f"{target} is not running ({job['state']})"
    job["last_exit"] = str(code)
    job["state"] = "not running"
    job["pid"] = None
    if _restarts(job["keep_alive"], code):
        _spawn(job)


def job_exited(state_file: Path, target: str, code: int) -> None:
    """``exited`` on the table in ``state_file``."""
    state = load(state_file)
    exited(state, target, code)
    state_file.write_text(json.dumps(state))


def bootout(state: dict[str, Any], target: str) -> str:
    domain_name, label = _split(target)
    domain = _domain(state, domain_name)
    job = domain["loaded"].get(label)
    if job is None:
        raise Exit(113, "Boot-out failed: 113: Could not find specified service")
    if job["state"] == "SIGTERMed":
        raise Exit(36, "Boot-out failed: 36: Operation now in progress")
    if job["state"] == "running" and state["stop_ticks"] > 0:
        job["state"] = "SIGTERMed"
        job["left"] = state["stop_ticks"]
        if state["bootout_code"]:
            raise Exit(state["bootout_code"], "Boot-out failed: 36: Operation now in progress")
        return ""
    del domain["loaded"][label]
    return ""


def set_disabled(state: dict[str, Any], target: str, disabled: bool) -> str:
    domain_name, label = _split(target)
    _domain(state, domain_name)["disabled"][label] = disabled
    return ""


def kickstart(state: dict[str, Any], args: list[str]) -> str:
    kill = "-k" in args
    target = next(arg for arg in args if not arg.startswith("-"))
    domain_name, label = _split(target)
    job = _domain(state, domain_name)["loaded"].get(label)
    if job is None or job["state"] == "SIGTERMed":
        raise Exit(113, f'Could not find service "{label}" in domain for port')
    if job["state"] == "running":
        if not kill:
            return ""
        state["kills"] += 1
    if label not in state["btm_off"]:
        _spawn(job)
    return ""


def print_target(state: dict[str, Any], target: str) -> str:
    if target.count("/") == 1:
        _domain(state, target)
        kind = target.split("/", maxsplit=1)[0]
        return f"{target} = {{\n\ttype = {kind}\n\thandle = {target.split('/')[1]}\n}}\n"
    domain_name, label = _split(target)
    job = _domain(state, domain_name)["loaded"].get(label)
    if job is None:
        raise Exit(113, f'Could not find service "{label}" in domain for port')
    lines = [
        f"{target} = {{",
        "\tactive count = " + ("1" if job["state"] in ("running", "SIGTERMed") else "0"),
        f"\tpath = {job['path']}",
        "\ttype = LaunchAgent",
        f"\tstate = {job['state']}",
        "",
        f"\tprogram = {job['program']}",
        "\targuments = {",
        *(f"\t\t{argument}" for argument in job["arguments"]),
        "\t}",
        "",
    ]
    if job["state"] != "waiting" and job["pid"] is not None:
        lines.append(f"\tpid = {job['pid']}")
    lines += [f"\truns = {job['runs']}", f"\tlast exit code = {job['last_exit']}", "}"]
    return "\n".join(lines) + "\n"


def print_disabled(state: dict[str, Any], domain_name: str) -> str:
    disabled = _domain(state, domain_name)["disabled"]
    lines = ["disabled services = {"]
    lines += [f'\t"{label}" => {"disabled" if d else "enabled"}' for label, d in disabled.items()]
    lines += ["}", "", "login item associations = {", "}"]
    return "\n".join(lines) + "\n"


def run(state: dict[str, Any], argv: list[str]) -> str:
    verb, *args = argv or [""]
    if verb == "bootstrap" and len(args) == 2:
        return bootstrap(state, args[0], args[1])
    if verb == "bootout" and len(args) == 1:
        return bootout(state, args[0])
    if verb in ("enable", "disable") and len(args) == 1:
        return set_disabled(state, args[0], verb == "disable")
    if verb == "kickstart" and args:
        return kickstart(state, args)
    if verb == "print" and len(args) == 1:
        return print_target(state, args[0])
    if verb == "print-disabled" and len(args) == 1:
        return print_disabled(state, args[0])
    raise Exit(64, f"Unrecognized subcommand or usage: {' '.join(argv)}")


def call(state_file: Path, argv: list[str]) -> tuple[int, str, str]:
    """One launchctl invocation against the table in ``state_file``: (code, stdout, stderr)."""
    state = load(state_file)
    state["calls"].append(argv)
    _tick(state)
    try:
        output, code, message = run(state, argv), 0, ""
    except Exit as exc:
        output, code, message = "", exc.code, exc.message + "\n"
    state_file.write_text(json.dumps(state))
    return code, output, message


def runner(state_file: Path) -> Callable[[Sequence[str]], subprocess.CompletedProcess[str]]:
    """The same fake as an in-process runner (for the many polls of a timeout test)."""

    def run_launchctl(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        assert argv[0] == "launchctl"
        code, out, err = call(state_file, list(argv[1:]))
        return subprocess.CompletedProcess(list(argv), code, out, err)

    return run_launchctl


def main() -> int:
    code, output, message = call(Path(os.environ[STATE_VARIABLE]), sys.argv[1:])
    sys.stdout.write(output)
    sys.stderr.write(message)
    return code


if __name__ == "__main__":
    sys.exit(main())
