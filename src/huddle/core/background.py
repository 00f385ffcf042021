"""Fire-and-forget work with an owner: tasks are tracked, logged on failure, awaited at shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from contextlib import suppress
from typing import Any

from huddle.core.observability import job_ran

log = logging.getLogger("huddle.background")


class BackgroundRunner:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        failed = not task.cancelled() and task.exception() is not None
        job_ran(task.get_name(), ok=not task.cancelled() and not failed)
        if failed:
            log.error("background task %s failed", task.get_name(), exc_info=task.exception())

    async def drain(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109 - bounded wait
        """Wait for running tasks (at shutdown, or in tests), cancelling stragglers."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)


async def stop_task(task: asyncio.Task[Any] | None, timeout: float) -> None:  # noqa: ASYNC109
    """Let a loop that was asked to stop finish its current step (never cancelled in the
    middle of a transaction), cancelling it only after ``timeout`` seconds."""
    if task is None:
        return
    try:
        await asyncio.wait_for(asyncio.shield(task), timeout)
    except TimeoutError:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task
