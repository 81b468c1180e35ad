"""``[jobs.NAME]``: background commands run with a fresh token, parsed like the rest of the config.

Every problem is added to the caller's ``Problems``, so a file with a bad job and a bad account
lists both in one run.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from tvmaniac_refreshd.config import values
from tvmaniac_refreshd.core.durations import format_duration

JOB_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# "connected": deferred while the machine is offline; "any": run regardless.
NetworkNeed = Literal["connected", "any"]
NETWORK_NEEDS: tuple[NetworkNeed, ...] = get_args(NetworkNeed)
DEFAULT_TIMEOUT = 15 * 60
DEFAULT_VARIABLE = "ACCESS_TOKEN"  # exec's default
CLOCK_TIME = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)")
JOB_KEYS = {"command", "account", "every", "at", "min_valid", "timeout", "network", "env"}


@dataclass(frozen=True)
class DailyAt:
    """A calendar time: every day at ``hour``:``minute``, local time."""

    hour: int
    minute: int

    def __str__(self) -> str:
        return f"{self.hour:02d}:{self.minute:02d}"


@dataclass(frozen=True)
class Job:
    """One background job: what runs, with whose token, when, and under which constraints."""

    name: str
    command: tuple[str, ...]
    account: str | None  # None: the config's default account
    every: int | None = None  # seconds between runs; exactly one of every/at is set
    at: DailyAt | None = None
    timeout: int = DEFAULT_TIMEOUT
    min_valid_setting: int | None = None
    network: NetworkNeed = "connected"
    env: str = DEFAULT_VARIABLE

    @property
    def min_valid(self) -> int:
        """How long the token must stay valid when the job starts: by default its timeout."""
        return self.timeout if self.min_valid_setting is None else self.min_valid_setting

    @property
    def schedule(self) -> str:
        """The schedule in the config's words: ``every 6h`` or ``at 03:30``."""
        if self.at is not None:
            return f"at {self.at}"
        return f"every {format_duration(self.every or 0)}"


def daily_at(value: object) -> DailyAt:
    if not isinstance(value, str):
        raise TypeError(f'expected a time of day like "03:30", got {value!r}')
    match = CLOCK_TIME.fullmatch(value.strip())
    if match is None:
        raise ValueError(f'expected a time of day like "03:30" (24-hour HH:MM), got {value!r}')
    return DailyAt(int(match.group(1)), int(match.group(2)))


def variable(value: object) -> str:
    name = values.text(value)
    if not VARIABLE_NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a variable name (letters, digits, '_')")
    return name


def parse_jobs(
    document: Mapping[str, Any],
    accounts: Mapping[str, object],
    default_account: str | None,
    problems: values.Problems,
) -> dict[str, Job]:
    """Return the ``[jobs.NAME]`` tables of ``document``; problems go to ``problems``.

    A job without ``account`` uses the account a command without --account would.
    """
    implied = default_account is not None or len(accounts) == 1 or "default" in accounts
    jobs: dict[str, Job] = {}
    for name, table in values.table(document.get("jobs"), "jobs", problems).items():
        if not isinstance(table, dict):
            problems.add(f"jobs.{name}", "expected a table")
            continue
        job = _job(name, table, accounts, problems)
        if job is not None and job.account is None and not implied:
            known = ", ".join(sorted(accounts))
            problems.add(f"jobs.{name}.account", f"several accounts: name one ({known})")
        elif job is not None:
            jobs[name] = job
    return jobs


def _job(
    name: str, table: Mapping[str, Any], accounts: Mapping[str, object], problems: values.Problems
) -> Job | None:
    prefix = f"jobs.{name}."
    before = len(problems.items)
    problems.unknown_keys(table, JOB_KEYS, prefix)
    if not JOB_NAME.fullmatch(name):
        problems.add(f"jobs.{name}", "job names use letters, digits, '_', '.' and '-'")
    no_command: tuple[str, ...] = ()
    command = values.get(table, "command", prefix, _argv_list, no_command, problems)
    if "command" not in table:
        problems.add(f"{prefix}command", 'missing; e.g. command = ["my-sync", "--quiet"]')
    account = values.get(table, "account", prefix, values.text, None, problems)
    if account is not None and account not in accounts:
        known = ", ".join(sorted(accounts)) or "none"
        problems.add(f"{prefix}account", f"no account named {account!r} ({known})")
    every = values.get(table, "every", prefix, values.positive_duration, None, problems)
    at = values.get(table, "at", prefix, daily_at, None, problems)
    if ("every" in table) == ("at" in table):
        problems.add(f"{prefix}every", 'set exactly one of every (e.g. "6h") or at (e.g. "03:30")')
    timeout = values.get(
        table, "timeout", prefix, values.positive_duration, DEFAULT_TIMEOUT, problems
    )
    min_valid = values.get(table, "min_valid", prefix, values.positive_duration, None, problems)
    connected: NetworkNeed = "connected"
    network = values.get(
        table, "network", prefix, values.choice(NETWORK_NEEDS), connected, problems
    )
    env = values.get(table, "env", prefix, variable, DEFAULT_VARIABLE, problems)
    if len(problems.items) != before:
        return None
    return Job(
        name=name,
        command=command,
        account=account,
        every=every,
        at=at,
        timeout=timeout,
        min_valid_setting=min_valid,
        network=network,
        env=env,
    )


def _argv_list(value: object) -> tuple[str, ...]:
    """An argv list only: a string would need a shell's rules, which a user asks for with sh -c."""
    if not isinstance(value, list):
        raise TypeError('expected an argv list, e.g. ["my-sync", "--quiet"] (or ["sh", "-c", ...])')
    return values.argv(value)
