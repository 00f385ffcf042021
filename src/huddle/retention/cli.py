"""``huddle retention run``: one retention pass now, and what it deleted."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from huddle.config import Settings
from huddle.retention.report import RetentionReport


def add_retention_commands(sub: Any) -> None:
    """Add ``retention`` and its subcommands to the ``huddle`` parser."""
    retention = sub.add_parser("retention", help="data retention (HUDDLE_DATA_RETENTION_DAYS)")
    commands = retention.add_subparsers(dest="retention_command", required=True)
    run = commands.add_parser("run", help="run one retention pass now and print what it did")
    run.set_defaults(func=cmd_run)


async def _run(settings: Settings) -> RetentionReport:
    from huddle.core.db import Database
    from huddle.retention.service import run_pass

    db = Database(settings)
    try:
        return await run_pass(db, settings)
    finally:
        await db.dispose()


def format_report(report: RetentionReport) -> list[str]:
    lines = [f"deleted: {report.totals.describe()}"]
    for workspace_id, counts in report.workspaces.items():
        days = report.limits[workspace_id]
        lines.append(f"workspace {workspace_id} ({days} days): {counts.describe()}")
    if report.site:
        lines.append(f"site: {report.site.describe()}")
    limited = len(report.limits)
    lines.append(f"{limited} workspace{'s' if limited != 1 else ''} with a retention limit")
    return lines


def cmd_run(_args: argparse.Namespace) -> int:
    from huddle.cli import _fail, _load_settings, _schema_problem
    from huddle.core.logging import configure_logging

    settings = _load_settings()
    configure_logging(settings.log_level, settings.log_format)
    problem = _schema_problem(settings)
    if problem:
        return _fail(problem)
    report = asyncio.run(_run(settings))
    if report.skipped:
        return _fail("another retention pass is running (in the server or a worker); try later")
    for line in format_report(report):
        print(f"huddle: retention: {line}")
    return 0
