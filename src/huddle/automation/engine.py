"""Running automation rules: an outbox consumer, like the search indexer.

A :class:`~huddle.events.forwarder.Forwarder` hands the engine the published events in
``seq`` order with its own cursor (``bus_cursors`` row ``automations``), so the request
that changed a task is never held up by the rules it sets off, and a restart resumes
where it stopped. For each ``task.created``, ``task.moved`` or ``task.updated`` event,
every enabled rule of the task's project whose trigger matches runs once (events from
before the rule was created or last switched on never set it off):

* as its owner (the project admin who set it up last), whose permissions it has, with
  the actor ``{kind: "system", rule_id, on_behalf_of: <owner>}`` on every event its
  actions record;
* each action through the same service a user's request goes through (permissions,
  workflow rules, events and live updates behave the same), in order, in one
  transaction: all or none;
* recorded as an :class:`~huddle.automation.models.AutomationRun` in that transaction
  (at most one per rule and event, so a redelivered event runs nothing twice).

A run that fails (the task is gone, a workflow rule forbids the move, …) is recorded
with the reason. A rule whose owner can no longer manage the project is switched off,
and its run says why. Events that rules' own actions record never set off rules, so
rules cannot loop.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import date
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import delete, select
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import State

from huddle.access.channels import channel_access
from huddle.access.deps import Caller
from huddle.access.roles import Role
from huddle.access.service import ProjectAccess, bypass_cache, project_access
from huddle.auth.models import User
from huddle.automation.models import Automation, AutomationRun, RunStatus
from huddle.automation.schemas import (
    Action,
    AssignAction,
    MoveAction,
    PostMessageAction,
    SetPriorityAction,
    Trigger,
)
from huddle.automation.service import record_rule_event
from huddle.chat.messages import post_system_message
from huddle.chat.schemas import MAX_MESSAGE_CHARS
from huddle.core.cache import MemoryScopedCache, ScopedCache
from huddle.core.db import unit_of_work
from huddle.core.errors import AppError, NotFound
from huddle.core.time import utcnow
from huddle.events.schemas import Actor, Envelope
from huddle.projects.models import Project
from huddle.tasks.models import BoardColumn, Task
from huddle.tasks.schemas import TaskMove, TaskUpdate
from huddle.tasks.service import move_task, update_task

log = logging.getLogger("huddle.automation")

CURSOR = "automations"
TRIGGERS = frozenset({"task.created", "task.moved", "task.updated"})
#: Runs kept per rule (the oldest go first).
KEEP_RUNS = 200
_ACTION = TypeAdapter[Action](Action)


class RunFailed(Exception):
    """A run that cannot complete: recorded as failed with ``code`` and ``message``."""

    def __init__(
        self, code: str, message: str, *, action: int | None = None, stop: bool = False
    ) -> None:
        super().__init__(message)
        self.code, self.message, self.action, self.stop = code, message, action, stop


def matches(trigger: Trigger, event: Envelope) -> bool:
    """Whether ``event`` (about a task) sets off a rule with ``trigger``."""
    data = event.data
    if trigger.event != event.type:
        return False
    if event.type == "task.moved" and data.get("from_column_id") == data.get("column_id"):
        return False  # a reorder inside a column is not a move
    if trigger.column_id is not None and data.get("column_id") != str(trigger.column_id):
        return False
    if trigger.priority is not None and data.get("priority") != trigger.priority.value:
        return False
    if trigger.due_passed:
        due = data.get("due_date")
        if not due or data.get("completed_at"):
            return False
        if date.fromisoformat(due) >= event.created_at.date():
            return False
    return True


class AutomationEngine:
    """An :class:`~huddle.events.bus.EventBus` that runs the rules events set off."""

    def __init__(self, state: State) -> None:
        self._state = state
        # Roles are read from the database (bypass_cache): a demotion counts at once.
        self._cache: ScopedCache = MemoryScopedCache(0)

    async def publish(self, events: Sequence[Envelope]) -> None:
        wanted = [e for e in events if e.type in TRIGGERS and e.data.get("project_id")]
        if not wanted:
            return
        rules = await self._rules({str(e.data["project_id"]) for e in wanted})
        for event in wanted:
            candidates = rules.get(str(event.data["project_id"]), [])
            if not candidates:
                continue
            if event.actor.rule_id is not None:
                log.debug(
                    "event %d comes from automation %s: rules do not set off rules",
                    event.id,
                    event.actor.rule_id,
                )
                continue
            for rule_id, trigger in candidates:
                if matches(trigger, event):
                    await self.run(rule_id, event)

    async def _rules(self, project_ids: set[str]) -> dict[str, list[tuple[uuid.UUID, Trigger]]]:
        """The enabled rules of these projects, oldest first, with their triggers."""
        found: dict[str, list[tuple[uuid.UUID, Trigger]]] = {}
        async with self._state.db.read_session() as session:
            rows = await session.execute(
                select(Automation.id, Automation.project_id, Automation.trigger)
                .where(
                    Automation.enabled.is_(True),
                    Automation.project_id.in_([uuid.UUID(p) for p in project_ids]),
                )
                .order_by(Automation.id)
            )
            for rule_id, project_id, trigger in rows:
                try:
                    parsed = Trigger.model_validate(trigger)
                except ValueError:
                    log.error("automation %s has an unreadable trigger; skipped", rule_id)
                    continue
                found.setdefault(str(project_id), []).append((rule_id, parsed))
        return found

    async def run(self, rule_id: uuid.UUID, event: Envelope) -> None:
        """Run one rule for one event, once; record the outcome."""
        try:
            async with unit_of_work(self._state, write=True) as session:
                rule = await session.get(Automation, rule_id)
                if rule is None or not rule.enabled or event.created_at < rule.active_since:
                    return
                if await _ran(session, rule_id, event.id):
                    return
                outcomes = await self._act(session, rule, event)
                session.add(_run(rule, event, RunStatus.succeeded, actions=outcomes))
                await _prune(session, rule.id)
            log.info("automation %s ran for event %d", rule_id, event.id)
        except IntegrityError as exc:
            async with self._state.db.read_session() as session:
                if await _ran(session, rule_id, event.id):
                    return  # another process ran this rule for this event at the same moment
            await self._failed(rule_id, event, RunFailed("conflict", str(exc.orig)[:500]))
        except RunFailed as exc:
            await self._failed(rule_id, event, exc)
        except AppError as exc:
            await self._failed(rule_id, event, RunFailed(exc.code, exc.message))
        except DBAPIError:
            raise  # the database is away: the forwarder retries the batch later
        except Exception:
            log.exception("automation %s failed on event %d", rule_id, event.id)
            failure = RunFailed("internal_error", "The rule failed unexpectedly; see the log")
            await self._failed(rule_id, event, failure)

    async def _act(
        self, session: AsyncSession, rule: Automation, event: Envelope
    ) -> list[dict[str, Any]]:
        project = await session.get(Project, rule.project_id)
        if project is None or project.deleted_at is not None:
            raise RunFailed("not_found", "The project was deleted")
        access, caller = await self._owner(session, rule, project)
        task = await session.get(Task, event.subject_id) if event.subject_id else None
        if task is None or task.project_id != project.id:
            raise RunFailed("not_found", "The task no longer exists")
        outcomes: list[dict[str, Any]] = []
        for index, raw in enumerate(rule.actions):
            action = _ACTION.validate_python(raw)
            try:
                done = await self._do(session, caller, access, rule, task, action)
            except AppError as exc:
                raise RunFailed(exc.code, exc.message, action=index) from exc
            outcomes.append({"type": action.type, "result": "done" if done else "unchanged"})
        return outcomes

    async def _owner(
        self, session: AsyncSession, rule: Automation, project: Project
    ) -> tuple[ProjectAccess, Caller]:
        """The owner's access to the project and the caller the rule acts as; a
        :class:`RunFailed` that stops the rule when the owner may no longer manage it."""
        owner = await session.get(User, rule.owner_id) if rule.owner_id else None
        if owner is None or not owner.is_active:
            raise RunFailed(
                "owner_lost_access", "The rule's owner's account is deactivated or gone", stop=True
            )
        bypass_cache(session, project.workspace_id)
        try:
            access = await project_access(session, self._cache, owner.id, project.id)
        except AppError:
            access = None
        if access is None or not access.role.at_least(Role.admin):
            raise RunFailed(
                "owner_lost_access",
                f"The rule's owner ({owner.username}) is no longer an admin of this project",
                stop=True,
            )
        actor = Actor(kind="system", rule_id=rule.id, on_behalf_of=owner.id)
        return access, Caller(user=owner, actor=actor)

    async def _do(
        self,
        session: AsyncSession,
        caller: Caller,
        access: ProjectAccess,
        rule: Automation,
        task: Task,
        action: Action,
    ) -> bool:
        """Do one action; False when there was nothing to change."""
        cache = self._cache
        if isinstance(action, AssignAction):
            if task.assignee_id == action.user_id:
                return False
            change = TaskUpdate(assignee_id=action.user_id)
            await update_task(session, cache, caller, access, task, change, None)
        elif isinstance(action, SetPriorityAction):
            if task.priority == action.priority:
                return False
            change = TaskUpdate(priority=action.priority)
            await update_task(session, cache, caller, access, task, change, None)
        elif isinstance(action, MoveAction):
            if task.column_id == action.column_id:
                return False
            await move_task(
                session, caller, access, task, TaskMove(column_id=action.column_id), None
            )
        elif isinstance(action, PostMessageAction):
            channel = await channel_access(session, cache, caller.id, action.channel_id)
            if channel.channel.workspace_id != access.project.workspace_id:
                raise NotFound("Channel not found")
            text = await _render(session, action.text, rule, access.project, task)
            await post_system_message(session, caller, channel, text[:MAX_MESSAGE_CHARS])
        return True

    async def _failed(self, rule_id: uuid.UUID, event: Envelope, failure: RunFailed) -> None:
        log.warning(
            "automation %s failed on event %d: %s (%s)",
            rule_id,
            event.id,
            failure.message,
            failure.code,
        )
        async with unit_of_work(self._state, write=True) as session:
            rule = await session.get(Automation, rule_id)
            if rule is None or await _ran(session, rule_id, event.id):
                return
            error = {"code": failure.code, "message": failure.message, "action": failure.action}
            session.add(_run(rule, event, RunStatus.failed, error=error))
            await _prune(session, rule.id)
            if failure.stop and rule.enabled:
                rule.enabled = False
                rule.disabled_reason = failure.message
                rule.updated_at = utcnow()
                await session.flush()
                project = await session.get(Project, rule.project_id)
                if project is not None:
                    actor = Actor(kind="system", rule_id=rule.id)
                    await record_rule_event(
                        session, actor, project.workspace_id, "automation.updated", rule
                    )

    async def aclose(self) -> None:
        return None


async def _ran(session: AsyncSession, rule_id: uuid.UUID, event_id: int) -> bool:
    found = await session.scalar(
        select(AutomationRun.id).where(
            AutomationRun.automation_id == rule_id, AutomationRun.event_id == event_id
        )
    )
    return found is not None


def _run(
    rule: Automation,
    event: Envelope,
    status: RunStatus,
    *,
    actions: list[dict[str, Any]] | None = None,
    error: dict[str, Any] | None = None,
) -> AutomationRun:
    return AutomationRun(
        automation_id=rule.id,
        event_id=event.id,
        event_type=event.type,
        task_id=event.subject_id,
        status=status,
        actions=actions or [],
        error=error,
    )


async def _prune(session: AsyncSession, rule_id: uuid.UUID) -> None:
    """Keep the newest :data:`KEEP_RUNS` runs of a rule."""
    await session.flush()
    oldest_kept = await session.scalar(
        select(AutomationRun.id)
        .where(AutomationRun.automation_id == rule_id)
        .order_by(AutomationRun.id.desc())
        .offset(KEEP_RUNS - 1)
        .limit(1)
    )
    if oldest_kept is not None:
        await session.execute(
            delete(AutomationRun).where(
                AutomationRun.automation_id == rule_id, AutomationRun.id < oldest_kept
            )
        )


class _Values(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


async def _render(
    session: AsyncSession, text: str, rule: Automation, project: Project, task: Task
) -> str:
    """The message with its placeholders filled in from the task as it is now."""
    column = await session.get(BoardColumn, task.column_id)
    assignee = await session.get(User, task.assignee_id) if task.assignee_id else None
    values = _Values(
        title=task.title,
        status=column.key if column else "",
        column=column.name if column else "",
        priority=task.priority.value,
        due_date=task.due_date.isoformat() if task.due_date else "none",
        assignee=f"@{assignee.username}" if assignee else "nobody",
        project=project.name,
        rule=rule.name,
    )
    try:
        return text.format_map(values)
    except (ValueError, IndexError, AttributeError):
        return text
