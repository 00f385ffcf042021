"""Uploaded files past the limit (only with ``HUDDLE_RETENTION_DELETE_FILES``).

A file goes with its index chunks and the events about it; its bytes are removed from
the upload directory once the rows' transaction has committed (so a failed commit never
leaves a row without its bytes). Bytes already missing are not an error.
"""

from __future__ import annotations

import logging

from sqlalchemy import delete, select

from huddle.documents.models import File
from huddle.documents.storage import FileStore
from huddle.events.models import Event
from huddle.retention.history import delete_events, drop_chunks
from huddle.retention.report import Counts, Scope, Step
from huddle.search.models import SourceKind

log = logging.getLogger("huddle.retention")


async def purge_files(step: Step, scope: Scope, store: FileStore, counts: Counts) -> None:
    query = (
        select(File.id, File.storage_name)
        .where(File.workspace_id == scope.workspace_id, File.created_at < scope.cutoff)
        .order_by(File.id)
        .limit(step.batch)
    )
    while not step.stopping():
        async with step.db.write_session() as session:
            rows = (await session.execute(query)).all()
            if not rows:
                return
            ids = [row.id for row in rows]
            await drop_chunks(session, scope.workspace_id, SourceKind.file, ids, counts)
            await delete_events(session, scope.workspace_id, Event.subject_id.in_(ids), counts)
            await session.execute(
                delete(File).where(File.id.in_(ids)).execution_options(synchronize_session=False)
            )
            await session.commit()
        counts.files += len(rows)
        for row in rows:
            try:
                await store.delete(row.storage_name)
            except (OSError, ValueError) as exc:  # the row is gone: log, never retry
                log.warning("could not remove the bytes of file %s: %s", row.id, exc)
        if len(rows) < step.batch:
            return
