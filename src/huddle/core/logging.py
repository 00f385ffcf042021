"""Logging setup: every line carries the request id of the request it belongs to."""

from __future__ import annotations

import logging

from huddle.core.requestid import current_request_id


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = current_request_id() or "-"
        return True


def configure_logging(level: str) -> None:
    """Install a handler on the ``huddle`` logger once (idempotent)."""
    logger = logging.getLogger("huddle")
    logger.setLevel(level.upper())
    if any(getattr(h, "_huddle", False) for h in logger.handlers):
        return
    handler = logging.StreamHandler()
    handler._huddle = True  # type: ignore[attr-defined]
    handler.addFilter(_RequestIdFilter())
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
    )
    logger.addHandler(handler)
