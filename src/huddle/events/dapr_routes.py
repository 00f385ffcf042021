"""The routes the Dapr sidecar calls: subscription discovery and command delivery.

* ``GET /dapr/subscribe`` — Dapr's programmatic subscription: the sidecar asks at start
  which topics to deliver, and where. Huddle subscribes to ``HUDDLE_DAPR_INBOUND_TOPIC``
  only while ``HUDDLE_DAPR_APP_API_TOKEN`` is set (``[]`` otherwise): commands are never
  accepted unauthenticated.
* ``POST /dapr/inbound`` — one CloudEvent per call, run by
  :func:`huddle.events.commands.handle`. The sidecar proves itself with the
  ``dapr-api-token`` header, which daprd sends to the app when started with
  ``APP_API_TOKEN`` (set it to ``HUDDLE_DAPR_APP_API_TOKEN``). The answer is Dapr's
  contract: 200 ``{"status": "SUCCESS" | "DROP" | "RETRY"}``; a 404 (inbound disabled)
  makes Dapr drop the message, any other status (401) makes it retry.

Both are for the sidecar, not API clients, so they stay out of the OpenAPI schema.

Dapr documentation relied on (docs.dapr.io): Pub/sub API reference
(``reference/api/pubsub_api``: ``/dapr/subscribe`` answer shape, delivery route,
expected responses), "Declarative, streaming, and programmatic subscription types"
(``pubsub/subscription-methods``), and "Authenticate requests from Dapr using token
authentication" (``operations/security/app-api-token``: ``APP_API_TOKEN``, header
``dapr-api-token``).
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request

from huddle.config import Settings
from huddle.core.errors import NotAuthenticated, NotFound
from huddle.events import commands

router = APIRouter(tags=["dapr"], include_in_schema=False)

INBOUND_ROUTE = "/dapr/inbound"


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def require_sidecar(
    request: Request,
    token: Annotated[str | None, Header(alias="dapr-api-token")] = None,
) -> None:
    """Only the sidecar, holding the app API token, may deliver commands."""
    expected = _settings(request).dapr_app_api_token
    if expected is None:
        raise NotFound("Dapr inbound commands are disabled (HUDDLE_DAPR_APP_API_TOKEN unset)")
    # Header values arrive latin-1 decoded: compare the bytes that were sent.
    given = (token or "").encode("latin-1", errors="replace")
    if not token or not hmac.compare_digest(given, expected.encode()):
        raise NotAuthenticated(
            "Missing or wrong dapr-api-token header",
            headers={"WWW-Authenticate": "dapr-api-token"},
        )


@router.get("/dapr/subscribe")
async def dapr_subscribe(request: Request) -> list[dict[str, str]]:
    """Topics the sidecar should deliver to Huddle (none while inbound is disabled)."""
    settings = _settings(request)
    if settings.dapr_app_api_token is None:
        return []
    return [
        {
            "pubsubname": settings.dapr_pubsub_name,
            "topic": settings.dapr_inbound_topic,
            "route": INBOUND_ROUTE,
        }
    ]


@router.post(INBOUND_ROUTE, dependencies=[Depends(require_sidecar)])
async def dapr_inbound(request: Request) -> dict[str, str]:
    """Run one command CloudEvent; answer SUCCESS, DROP or RETRY."""
    outcome = await commands.handle(request.app.state, await request.body())
    return {"status": outcome.value}
