"""Logging setup: every line carries the request id (and user id) of its request.

``HUDDLE_LOG_FORMAT=text`` (the default) writes readable lines; ``json`` writes one JSON
object per line — ``timestamp``, ``level``, ``logger``, ``message``, ``request_id``,
``user_id`` and a record's extra fields (the access log's ``route``, ``status``,
``duration_ms``, ``db_ms``, …), rendered by structlog's formatter for the standard
library's log records.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

import structlog

from huddle.core.requestid import current_request_id, current_user_id


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id() or "-"
        if not hasattr(record, "user_id"):
            record.user_id = current_user_id()
        return True


def _context(logger: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    record: logging.LogRecord | None = event.get("_record")
    if record is not None:
        event["logger"] = record.name
        event.setdefault("request_id", getattr(record, "request_id", None))
        event.setdefault("user_id", getattr(record, "user_id", None))
    if event.get("request_id") == "-":
        event["request_id"] = None
    return event


def json_formatter() -> logging.Formatter:
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.stdlib.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.stdlib.ExtraAdder(),
            _context,
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.EventRenamer("message"),
            structlog.processors.JSONRenderer(),
        ],
    )


def configure_logging(level: str, fmt: str = "text") -> None:
    """Install a handler on the ``huddle`` logger once (idempotent; the format of the
    first call stays)."""
    logger = logging.getLogger("huddle")
    logger.setLevel(level.upper())
    if any(getattr(h, "_huddle", False) for h in logger.handlers):
        return
    handler = logging.StreamHandler()
    handler._huddle = True  # type: ignore[attr-defined]
    handler.addFilter(_RequestIdFilter())
    if fmt == "json":
        handler.setFormatter(json_formatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
        )
    logger.addHandler(handler)
