"""Publishing events to other services through a Dapr sidecar (``HUDDLE_EVENT_BUS=dapr``).

Each event becomes one call to the sidecar's pub/sub API, in ``seq`` order::

    POST {HUDDLE_DAPR_HTTP_ENDPOINT}/v1.0/publish/{HUDDLE_DAPR_PUBSUB_NAME}/{event type}
    Content-Type: application/cloudevents+json
    dapr-api-token: {HUDDLE_DAPR_API_TOKEN}          (only when set)

The Dapr topic is the event *type* (DESIGN.md §5), so a service subscribes to exactly
the changes it cares about; the Huddle topic (who may read it) travels in the envelope.
The body is our own CloudEvent 1.0, which Dapr passes on instead of wrapping the
payload in one of its own:

* ``id`` — the event's ``seq`` as a string; ``source`` — ``HUDDLE_PUBLIC_URL`` (the
  deployment; ``seq`` is unique per deployment, so ``(source, id)`` is unique), which
  is what consumers deduplicate by: delivery is at least once, and after a refused
  batch the forwarder publishes the whole batch again;
* ``type``, ``time`` (``created_at``, RFC 3339), ``subject`` (``subject_id``, when the
  event has one), ``datacontenttype`` ``application/json``;
* ``data`` — the full envelope, the same JSON as on every other path.

The sidecar answers 204 when the message is delivered (200 is taken as delivered too);
403 (forbidden by access controls), 404 (no such pub/sub) and 500 (delivery failed)
mean the batch was not accepted, so :class:`BusUnavailable` is raised and the
forwarder (:mod:`huddle.events.forwarder`) retries with backoff. Misconfiguration (a
wrong pub/sub name) therefore holds Dapr's events back, loudly, instead of losing them.

Dapr documentation relied on (docs.dapr.io):

* Pub/sub API reference (``reference/api/pubsub_api``): the publish URL, the response
  codes 204/403/404/500, and ``Content-Type: application/cloudevents+json`` for a
  custom CloudEvent;
* "Publishing & subscribing messages with CloudEvents" (``pubsub-cloudevents``): a
  CloudEvent written by the app is passed through with its own ``id``/``source``;
* "Enable API token authentication in Dapr" (``operations/security/api-token``): with
  ``DAPR_API_TOKEN`` set on daprd, every HTTP call must carry ``dapr-api-token``.

Plain ``httpx`` rather than the Dapr SDK: publishing is one HTTP call, and the SDK
client blocks for about a minute at start-up waiting for a sidecar.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx

from huddle.config import Settings
from huddle.events.bus import BusUnavailable
from huddle.events.schemas import Envelope

CLOUDEVENTS_JSON = "application/cloudevents+json"
_ACCEPTED = frozenset({200, 204})
_BODY_SNIPPET = 200


def rfc3339(moment: datetime) -> str:
    """A UTC timestamp as RFC 3339 with a ``Z`` (naive datetimes are taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def cloud_event(event: Envelope, source: str) -> dict[str, Any]:
    """The CloudEvent 1.0 (structured JSON) that carries ``event`` to Dapr."""
    body: dict[str, Any] = {
        "specversion": "1.0",
        "id": str(event.id),
        "source": source,
        "type": event.type,
        "time": rfc3339(event.created_at),
        "datacontenttype": "application/json",
        "data": event.model_dump(mode="json"),
    }
    if event.subject_id is not None:
        body["subject"] = str(event.subject_id)
    return body


class DaprBus:
    """The Dapr sidecar's pub/sub API as an :class:`~huddle.events.bus.EventBus`."""

    def __init__(self, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None):
        self.source = settings.public_url.rstrip("/")
        self._base = (
            f"{settings.dapr_http_endpoint.rstrip('/')}/v1.0/publish/"
            f"{quote(settings.dapr_pubsub_name, safe='')}/"
        )
        headers = {"Content-Type": CLOUDEVENTS_JSON}
        if settings.dapr_api_token:
            headers["dapr-api-token"] = settings.dapr_api_token
        # trust_env=False: HTTP(S)_PROXY meant for the internet must not capture the
        # sidecar on localhost.
        self._client = httpx.AsyncClient(
            headers=headers,
            timeout=settings.dapr_timeout,
            trust_env=False,
            transport=transport,
        )

    def url(self, event_type: str) -> str:
        return self._base + quote(event_type, safe="")

    async def publish(self, events: Sequence[Envelope]) -> None:
        """POST each event in order; raise :class:`BusUnavailable` at the first refusal."""
        for event in events:
            url = self.url(event.type)
            try:
                body = json.dumps(cloud_event(event, self.source), separators=(",", ":"))
                response = await self._client.post(url, content=body.encode())
            except httpx.HTTPError as exc:
                raise BusUnavailable(
                    f"Dapr sidecar unreachable publishing event {event.id} ({event.type}) "
                    f"to {url}: {type(exc).__name__}: {exc}"
                ) from exc
            if response.status_code not in _ACCEPTED:
                snippet = response.text[:_BODY_SNIPPET].strip()
                raise BusUnavailable(
                    f"Dapr refused event {event.id} ({event.type}) at {url}: "
                    f"HTTP {response.status_code}: {snippet or '(empty body)'}"
                )

    async def aclose(self) -> None:
        await self._client.aclose()
