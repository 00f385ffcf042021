"""The retention job: a pass every ``HUDDLE_RETENTION_INTERVAL`` seconds, in the background.

Started by the API's lifespan and by ``huddle worker`` (with ``HUDDLE_RETENTION_JOB``,
the default). When passes are due is read from the database (``system_state`` row
``retention.last_pass``), not from the process's own start: a server restarted more
often than the interval still runs them, and several processes share one schedule
(the pass lock keeps two from overlapping; see :mod:`huddle.retention.lock`). The first
pass therefore runs right after startup when one is overdue.

``stop()`` lets a running pass finish its current step (each is its own transaction),
then ends it; the next pass continues where it stopped.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress

from huddle.config import Settings
from huddle.core.background import stop_task
from huddle.core.db import Database
from huddle.core.observability import job_ran
from huddle.core.time import utcnow
from huddle.documents.storage import FileStore
from huddle.retention.report import RetentionReport
from huddle.retention.service import last_pass, run_pass

log = logging.getLogger("huddle.retention")


class RetentionJob:
    def __init__(self, db: Database, settings: Settings, store: FileStore | None = None) -> None:
        self._db = db
        self._settings = settings
        self._store = store
        self._interval = settings.retention_interval
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self.last_report: RetentionReport | None = None

    def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name="huddle-retention")

    async def stop(self, timeout: float = 30.0) -> None:  # noqa: ASYNC109 - bounded wait
        self._stopping = True
        self._wake.set()
        await stop_task(self._task, timeout)
        self._task = None

    async def _run(self) -> None:
        while not self._stopping:
            try:
                wait = await self._seconds_until_due()
                if wait <= 0:
                    self.last_report = await run_pass(
                        self._db, self._settings, store=self._store, stopping=self._is_stopping
                    )
                    job_ran("retention", ok=True)
                    wait = self._interval
            except asyncio.CancelledError:
                raise
            except Exception:
                job_ran("retention", ok=False)
                log.exception("retention pass failed; next try in %g s", self._interval)
                wait = self._interval
            await self._pause(wait)

    def _is_stopping(self) -> bool:
        return self._stopping

    async def _seconds_until_due(self) -> float:
        last = await last_pass(self._db)
        if last is None:
            return 0.0
        elapsed = (utcnow() - last).total_seconds()
        return min(self._interval, self._interval - elapsed)  # a clock ahead waits no longer

    async def _pause(self, seconds: float) -> None:
        if self._stopping:
            return
        with suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()


def start_retention(
    db: Database, settings: Settings, store: FileStore | None = None
) -> RetentionJob | None:
    """Start the job when ``HUDDLE_RETENTION_JOB`` is on (the default); None when off."""
    if not settings.retention_job:
        return None
    job = RetentionJob(db, settings, store)
    job.start()
    return job
