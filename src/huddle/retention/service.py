"""Data retention: one pass deletes what is past the limit (see docs/retention.md).

The limit of a workspace is the shorter of the site's ``HUDDLE_DATA_RETENTION_DAYS`` and
the workspace's own ``data_retention_days`` (either alone applies when the other is
unset). A row is past the limit when ``created_at < now - days``: a row created exactly
at the cut-off is kept.

Per workspace with a limit: messages (tombstones for expired thread roots that still
have replies), then files when ``HUDDLE_RETENTION_DELETE_FILES`` is on, then the
published events older than the cut-off. With a site limit, events that belong to no
workspace too. Every pass, whatever the limits: invitations that expired unaccepted and
refresh tokens whose whole login (family) has expired.

Each step deletes at most ``HUDDLE_RETENTION_BATCH`` rows (with what hangs off them) in
its own transaction. One pass runs at a time across all processes (:mod:`.lock`).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import Select, delete, exists, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from huddle.auth.models import RefreshToken
from huddle.config import Settings
from huddle.core.db import Database
from huddle.core.errors import ValidationFailed
from huddle.core.models import Base
from huddle.core.state_models import SystemState
from huddle.core.time import utcnow
from huddle.documents.storage import FileStore
from huddle.retention.files import purge_files
from huddle.retention.history import purge_old_events
from huddle.retention.lock import single_runner
from huddle.retention.messages import purge_messages
from huddle.retention.report import Counts, RetentionReport, Scope, Step
from huddle.workspaces.models import Invitation, Workspace

log = logging.getLogger("huddle.retention")

#: ``system_state`` row: when the last complete pass started (ISO 8601, UTC).
LAST_RUN = "retention.last_pass"


def effective_days(site_days: int | None, workspace_days: int | None) -> int | None:
    """The limit that applies to a workspace: the shorter one that is set, if any."""
    limits = [days for days in (site_days, workspace_days) if days is not None]
    return min(limits) if limits else None


def check_workspace_limit(days: int | None, site_days: int | None) -> None:
    """A workspace may keep data for less time than the site, never longer (422)."""
    if days is not None and site_days is not None and days > site_days:
        raise ValidationFailed(
            f"This server keeps data for at most {site_days} days",
            details=[
                {
                    "loc": ["body", "data_retention_days"],
                    "msg": f"must be at most the server's limit of {site_days} days",
                }
            ],
        )


async def workspace_limits(session: AsyncSession, site_days: int | None) -> dict[uuid.UUID, int]:
    """Every workspace that has a limit (deleted ones too), with its limit in days."""
    query = select(Workspace.id, Workspace.data_retention_days).order_by(Workspace.id)
    if site_days is None:
        query = query.where(Workspace.data_retention_days.is_not(None))
    limits = {}
    for workspace_id, own in await session.execute(query):
        days = effective_days(site_days, own)
        if days is not None:
            limits[workspace_id] = days
    return limits


async def run_pass(
    db: Database,
    settings: Settings,
    *,
    store: FileStore | None = None,
    now: datetime | None = None,
    stopping: Callable[[], bool] = lambda: False,
) -> RetentionReport:
    """One retention pass, unless another runner holds the lock (``skipped``)."""
    report = RetentionReport(started_at=now or utcnow())
    clock = time.monotonic()
    async with single_runner(db) as acquired:
        if not acquired:
            log.debug("retention pass skipped: another process is running one")
            report.skipped = True
            return report
        step = Step(db, settings.retention_batch, report.started_at, stopping)
        if store is None and settings.retention_delete_files:
            store = FileStore(settings.upload_path)
        await _purge(step, settings, store if settings.retention_delete_files else None, report)
        report.interrupted = step.stopping()
        if not report.interrupted:
            await _mark_pass(db, report.started_at)
    _log(report, time.monotonic() - clock)
    return report


async def _purge(
    step: Step, settings: Settings, store: FileStore | None, report: RetentionReport
) -> None:
    site_days = settings.data_retention_days
    async with step.db.read_session() as session:
        report.limits = await workspace_limits(session, site_days)
    for workspace_id, days in report.limits.items():
        if step.stopping():
            return
        scope = Scope(workspace_id, step.now - timedelta(days=days))
        counts = Counts()
        await purge_messages(step, scope, counts)
        if store is not None:
            await purge_files(step, scope, store, counts)
        await purge_old_events(step, workspace_id, scope.cutoff, counts)
        if counts:
            report.workspaces[workspace_id] = counts
    if site_days is not None:
        await purge_old_events(step, None, step.now - timedelta(days=site_days), report.site)
    report.site.invitations += await _delete_batches(step, Invitation, _dead_invitations(step))
    report.site.refresh_tokens += await _delete_batches(
        step, RefreshToken, _dead_refresh_tokens(step)
    )


def _dead_invitations(step: Step) -> Select[uuid.UUID]:
    """Expired and never accepted (revoked ones included). Accepted invitations stay:
    they record who brought whom in."""
    return select(Invitation.id).where(
        Invitation.accepted_at.is_(None), Invitation.expires_at <= step.now
    )


def _dead_refresh_tokens(step: Step) -> Select[uuid.UUID]:
    """Tokens of a login (family) whose every token has expired. A used token of a live
    family stays: presenting it again is how a stolen token is caught (the family is
    revoked), and it must still be recognised for that."""
    alive = aliased(RefreshToken)
    return select(RefreshToken.id).where(
        RefreshToken.expires_at <= step.now,
        ~exists().where(alive.family_id == RefreshToken.family_id, alive.expires_at > step.now),
    )


async def _delete_batches(step: Step, model: type[Base], ids: Select[uuid.UUID]) -> int:
    column = model.__table__.c.id
    query = ids.order_by(column).limit(step.batch)
    total = 0
    while not step.stopping():
        async with step.db.write_session() as session:
            batch = list(await session.scalars(query))
            if batch:
                await session.execute(delete(model).where(column.in_(batch)))
                await session.commit()
        total += len(batch)
        if len(batch) < step.batch:
            break
    return total


async def _mark_pass(db: Database, started_at: datetime) -> None:
    async with db.write_session() as session:
        row = await session.get(SystemState, LAST_RUN, with_for_update=True)
        if row is None:
            session.add(SystemState(name=LAST_RUN, value=started_at.isoformat()))
        else:
            row.value = started_at.isoformat()
        await session.commit()


async def last_pass(db: Database) -> datetime | None:
    """When the last complete pass (by any process) started."""
    async with db.read_session() as session:
        value = await session.scalar(select(SystemState.value).where(SystemState.name == LAST_RUN))
    return datetime.fromisoformat(value) if value else None


def _log(report: RetentionReport, seconds: float) -> None:
    totals = report.totals
    if not totals:
        log.debug(
            "retention pass: nothing to delete (%d workspaces with a limit)", len(report.limits)
        )
        return
    parts = [f"deleted {totals.describe()} in {seconds:.1f} s"]
    for workspace_id, counts in report.workspaces.items():
        limit = report.limits[workspace_id]
        parts.append(f"workspace {workspace_id} ({limit} days): {counts.describe()}")
    if report.site:
        parts.append(f"site: {report.site.describe()}")
    suffix = " (interrupted: the next pass goes on)" if report.interrupted else ""
    log.info("retention pass: %s%s", "; ".join(parts), suffix)
