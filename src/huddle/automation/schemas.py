"""Automation rules over HTTP: the trigger, the actions, the rule and its runs."""

from __future__ import annotations

import string
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from huddle.automation.models import RunStatus
from huddle.core.validation import StrictModel, clean_text
from huddle.tasks.models import Priority

TriggerEvent = Literal["task.created", "task.moved", "task.updated"]

#: What ``{…}`` placeholders a message action's text may use.
PLACEHOLDERS = ("title", "status", "column", "priority", "due_date", "assignee", "project", "rule")
MAX_TEXT = 4000


def _placeholders(text: str) -> str:
    """Only the known ``{name}`` placeholders; ``{{`` and ``}}`` write braces."""
    try:
        parts = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise ValueError(f"unbalanced braces ({exc}); write {{{{ and }}}} for braces") from exc
    for _literal, name, spec, conversion in parts:
        if name is None:
            continue
        if name not in PLACEHOLDERS or spec or conversion:
            known = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
            raise ValueError(f"unknown placeholder {{{name}}}: use {known}")
    return text


Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(clean_text),
]
Text = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TEXT),
    AfterValidator(clean_text),
    AfterValidator(_placeholders),
]


class Trigger(StrictModel):
    """Which events run the rule. Every condition given must hold for the task as the
    event describes it."""

    event: TriggerEvent = Field(
        description="`task.moved` counts only moves between columns (not reordering)."
    )
    column_id: uuid.UUID | None = Field(
        default=None,
        description="`task.moved`: the column the task entered; otherwise the column it is in.",
    )
    priority: Priority | None = Field(default=None, description="The task has this priority.")
    due_passed: bool = Field(
        default=False,
        description="The task has a due date before the day of the event (UTC) and is open.",
    )


class AssignAction(StrictModel):
    type: Literal["assign"]
    user_id: uuid.UUID | None = Field(description="`null` unassigns.")


class SetPriorityAction(StrictModel):
    type: Literal["set_priority"]
    priority: Priority


class MoveAction(StrictModel):
    type: Literal["move"]
    column_id: uuid.UUID = Field(description="To the end of this column (workflow rules apply).")


class PostMessageAction(StrictModel):
    type: Literal["post_message"]
    channel_id: uuid.UUID
    text: Text = Field(
        description="Placeholders: " + ", ".join("{" + p + "}" for p in PLACEHOLDERS) + "."
    )


Action = Annotated[
    AssignAction | SetPriorityAction | MoveAction | PostMessageAction,
    Field(discriminator="type"),
]
Actions = Annotated[list[Action], Field(min_length=1, max_length=10)]


class AutomationCreate(StrictModel):
    name: Name
    trigger: Trigger
    actions: Actions
    enabled: bool = True


class AutomationUpdate(StrictModel):
    """Fields to change. Whoever changes a rule becomes its owner: it acts with their
    permissions from then on (which is how an admin revives a switched-off rule)."""

    name: Name | None = None
    trigger: Trigger | None = None
    actions: Actions | None = None
    enabled: bool | None = None


class AutomationRead(BaseModel):
    """A rule (also the ``data`` of ``automation.*`` events)."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    project_id: uuid.UUID
    name: str
    enabled: bool
    trigger: Trigger
    actions: list[Action]
    owner_id: uuid.UUID | None = Field(description="Whose permissions the rule acts with.")
    created_by: uuid.UUID | None
    disabled_reason: str | None = Field(description="Why the rule was switched off, if it was.")
    created_at: datetime
    updated_at: datetime


class ActionOutcome(BaseModel):
    type: str
    result: Literal["done", "unchanged"]


class RunError(BaseModel):
    code: str
    message: str
    action: int | None = Field(description="The index of the action that failed, if one did.")


class AutomationRunRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    automation_id: uuid.UUID
    event_id: int = Field(description="The seq of the event that ran the rule.")
    event_type: str
    task_id: uuid.UUID | None
    status: RunStatus
    actions: list[ActionOutcome] = Field(description="What each action did (all or none).")
    error: RunError | None
    created_at: datetime


def dump(value: Any) -> Any:
    return value.model_dump(mode="json")
