"""Text every schema accepts: no NUL characters, no lone surrogates.

PostgreSQL cannot store NUL in text and no database driver can encode a lone UTF-16
surrogate (which JSON's ``"\\ud800"`` produces), so such input would otherwise reach
the database and fail there. Rejecting it at the edge gives a clear 422 instead.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field


def clean_text(value: str) -> str:
    if value is None:  # optional fields pass None through
        return value
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (no lone surrogates)") from None
    return value


CleanStr = Annotated[str, AfterValidator(clean_text)]


class StrictModel(BaseModel):
    """Base of request bodies: unknown fields are a 422, not silently dropped."""

    model_config = ConfigDict(extra="forbid")


# Emails are stored lowercased, so uniqueness and lookups are case-insensitive.
Email = Annotated[EmailStr, Field(max_length=320), AfterValidator(str.lower)]
