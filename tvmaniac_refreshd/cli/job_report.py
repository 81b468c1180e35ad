"""What `job list` and `status` show of each job: its schedule, last result and next run."""

from __future__ import annotations

from tvmaniac_refreshd.cli.status import iso
from tvmaniac_refreshd.runtime.root import Runtime


def job_reports(app: Runtime) -> list[dict[str, object]]:
    """One dict per job: what `job list`, `status` and `status --json` show of it."""
    reports: list[dict[str, object]] = []
    for name, job in sorted(app.config.jobs.items()):
        record = app.job_states.load(name)
        reports.append(
            {
                "name": name,
                "account": job.account or app.config.select(None).name,
                "schedule": job.schedule,
                "network": job.network,
                "last_run_at": record.last_run_at,
                "last_result": record.last_result,
                "last_exit_code": record.last_code,
                "next_run_at": record.next_run_at,
            }
        )
    return reports


def last_result(report: dict[str, object]) -> str:
    """``done (exit 0) at 2026-...Z``, or ``never run``."""
    if report["last_result"] is None:
        return "never run"
    when = report["last_run_at"]
    at = iso(when) if isinstance(when, int) else "?"
    return f"{report['last_result']} (exit {report['last_exit_code']}) at {at}"


def render_jobs(reports: list[dict[str, object]]) -> str:
    """The jobs' lines of `status`: one per job."""
    lines = []
    for report in reports:
        when = report["next_run_at"]
        upcoming = iso(when) if isinstance(when, int) else "not planned"
        lines.append(
            f"job {report['name']}: {report['schedule']}; last: {last_result(report)}; "
            f"next: {upcoming}\n"
        )
    return "".join(lines)
