"""Client request and response bodies."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from huddle.clients.models import ClientStatus
from huddle.core.validation import Email, StrictModel, clean_text

Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(clean_text),
]
Notes = Annotated[str, Field(max_length=10_000), AfterValidator(clean_text)]
Emails = Annotated[list[Email], Field(max_length=20)]


class ClientCreate(StrictModel):
    name: Name
    contact_emails: Emails = Field(default_factory=list)
    notes: Notes = ""
    status: ClientStatus = ClientStatus.active


class ClientUpdate(StrictModel):
    name: Name | None = None
    contact_emails: Emails | None = None
    notes: Notes | None = None
    status: ClientStatus | None = Field(default=None, description="`archived` hides it by default")


class ClientRead(BaseModel):
    """A client (also the ``data`` of ``client.*`` events)."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    workspace_id: uuid.UUID
    name: str
    contact_emails: list[str]
    notes: str
    status: ClientStatus
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime
