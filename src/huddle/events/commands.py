"""Commands other services send Huddle as CloudEvents through Dapr pub/sub.

The sidecar delivers each CloudEvent of the ``HUDDLE_DAPR_INBOUND_TOPIC`` topic to
``POST /dapr/inbound`` (:mod:`huddle.events.dapr_routes`); :func:`handle` runs it and
says what Dapr should do with the message:

* ``SUCCESS`` — done, or done before: each CloudEvent ``(source, id)`` is recorded in
  ``inbound_events`` in the transaction of its change, so a redelivery changes nothing;
* ``DROP`` — it can never succeed (not a CloudEvent, an unknown type, invalid data, a
  project that is gone or archived): logged as a warning with the reason;
* ``RETRY`` — a transient failure (the database): Dapr delivers it again later.

Supported: ``huddle.task.create`` with ``data = {project_id, title, description?,
priority?, assignee_id?, column_id?, due_date?}``. Commands act as the *system* actor
(``{"kind": "system"}`` in their events), with the rights of a project member: they
may create tasks in any live, unarchived project, and the usual rules still hold (the
assignee must see the project, the column must be on its board). Whoever can publish
to the inbound topic holds that power; the sidecar proves itself with
``HUDDLE_DAPR_APP_API_TOKEN``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints, ValidationError
from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import State

from huddle.access.roles import Role
from huddle.access.service import ProjectAccess, live_project
from huddle.core.cache import ScopedCache
from huddle.core.db import unit_of_work
from huddle.core.errors import AppError
from huddle.core.validation import clean_text
from huddle.events.models import InboundEvent
from huddle.tasks.schemas import TaskCreate
from huddle.tasks.service import create_task

log = logging.getLogger("huddle.events.commands")


class Outcome(StrEnum):
    """Dapr's subscriber answers (``{"status": ...}``)."""

    SUCCESS = "SUCCESS"
    RETRY = "RETRY"
    DROP = "DROP"


# The lengths of the ``inbound_events`` columns.
Attribute300 = Annotated[
    str, StringConstraints(min_length=1, max_length=300), AfterValidator(clean_text)
]
Attribute200 = Annotated[
    str, StringConstraints(min_length=1, max_length=200), AfterValidator(clean_text)
]


class CloudEvent(BaseModel):
    """The attributes of a structured-mode CloudEvent 1.0 that Huddle reads (Dapr adds
    its own, such as ``topic``, ``pubsubname`` and ``traceparent``: ignored)."""

    model_config = ConfigDict(extra="ignore")

    specversion: Literal["1.0"]
    id: Attribute300
    source: Attribute300
    type: Attribute200
    data: Any = None


class TaskCreateCommand(TaskCreate):
    """``huddle.task.create``: the body of ``POST /api/projects/{pid}/tasks``, plus the project."""

    project_id: uuid.UUID


async def _system_project_access(session: AsyncSession, project_id: uuid.UUID) -> ProjectAccess:
    """A live project as the system sees it: member rights, whoever its members are."""
    return ProjectAccess(await live_project(session, project_id), Role.member, Role.member)


async def _create_task(session: AsyncSession, cache: ScopedCache, command: BaseModel) -> None:
    assert isinstance(command, TaskCreateCommand)
    access = await _system_project_access(session, command.project_id)
    await create_task(session, cache, None, access, command)


Runner = Callable[[AsyncSession, ScopedCache, BaseModel], Awaitable[None]]

#: Command type -> (schema of its ``data``, what runs it in the transaction).
COMMANDS: dict[str, tuple[type[BaseModel], Runner]] = {
    "huddle.task.create": (TaskCreateCommand, _create_task),
}


def _errors(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in err['loc']) or 'body'}: {err['msg']}"
        for err in exc.errors()[:5]
    )


def _label(event: CloudEvent) -> str:
    return f"{event.type} {event.id!r} from {event.source!r}"


def _parse(body: bytes) -> tuple[CloudEvent, BaseModel, Runner] | None:
    """The CloudEvent, its validated command and its runner; None (logged) to drop it."""
    try:
        event = CloudEvent.model_validate_json(body)
    except ValidationError as exc:
        log.warning("dropped an inbound message that is not a CloudEvent 1.0: %s", _errors(exc))
        return None
    spec = COMMANDS.get(event.type)
    if spec is None:
        log.warning("dropped inbound %s: unknown command type", _label(event))
        return None
    schema, run = spec
    try:
        return event, schema.model_validate(event.data), run
    except ValidationError as exc:
        log.warning("dropped inbound %s: invalid data: %s", _label(event), _errors(exc))
        return None


async def _run_once(state: State, event: CloudEvent, command: BaseModel, run: Runner) -> bool:
    """Run the command and record ``(source, id)`` in one transaction; False if it had
    been run before."""
    async with unit_of_work(state, write=True) as session:
        if await session.get(InboundEvent, (event.source, event.id)) is not None:
            return False
        # Claimed first: a concurrent delivery of the same event waits on this row
        # (PostgreSQL) and then fails its insert instead of doing the work twice.
        session.add(InboundEvent(source=event.source, event_id=event.id, type=event.type))
        await session.flush()
        await run(session, state.role_cache, command)
    return True


async def handle(state: State, body: bytes) -> Outcome:
    """Run one delivered CloudEvent, once; see the module docstring for the answers."""
    parsed = _parse(body)
    if parsed is None:
        return Outcome.DROP
    event, command, run = parsed
    label = _label(event)
    try:
        if not await _run_once(state, event, command, run):
            log.info("inbound %s was handled before: nothing to do", label)
            return Outcome.SUCCESS
    except AppError as exc:
        if exc.status_code >= 500:
            log.warning("inbound %s failed, to be retried: %s", label, exc.message)
            return Outcome.RETRY
        log.warning("dropped inbound %s: %s (%s)", label, exc.message, exc.code)
        return Outcome.DROP
    except IntegrityError:
        if await _handled(state, event):
            log.info("inbound %s was handled by a concurrent delivery", label)
            return Outcome.SUCCESS
        log.warning("inbound %s hit a conflicting change, to be retried", label, exc_info=True)
        return Outcome.RETRY
    except DataError as exc:
        log.warning("dropped inbound %s: the database refused a value: %s", label, exc.orig)
        return Outcome.DROP
    except (SQLAlchemyError, OSError):
        log.exception("inbound %s failed on the database, to be retried", label)
        return Outcome.RETRY
    log.info("handled inbound %s", label)
    return Outcome.SUCCESS


async def _handled(state: State, event: CloudEvent) -> bool:
    try:
        async with unit_of_work(state, write=False) as session:
            return await session.get(InboundEvent, (event.source, event.id)) is not None
    except (SQLAlchemyError, OSError):
        return False
