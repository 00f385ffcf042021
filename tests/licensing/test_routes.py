"""GET /api/license, the require_license guard, and the licensed AI usage report."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select

from huddle.ai.models import AIUsage
from huddle.app import create_app
from huddle.core.time import utcnow
from huddle.licensing.service import MALFORMED, NO_KEY
from tests.helpers import assert_error
from tests.licensing.keys import install_license, make_token
from tests.world import World, add_user, build_world

USAGE = "/api/workspaces/{W}/ai/usage"
LICENSE_FIELDS = {
    "mode",
    "reason",
    "license_id",
    "licensee",
    "seats",
    "seats_used",
    "features",
    "issued_at",
    "not_before",
    "expires_at",
}


class TestLicenseStatus:
    async def test_who_may_see_it(self, client, app):
        world = await build_world(client, app)
        expected = {
            "anonymous": 401,
            "outsider": 200,  # admin of their own workspace W2
            "viewer": 403,
            "member": 403,
            "admin": 200,
            "superuser": 200,  # a site admin, in no workspace
            "newcomer": 403,  # in no workspace at all
        }
        for role, status in expected.items():
            response = await world.call(role, "GET", "/api/license")
            assert response.status_code == status, (role, response.text)
            if status == 401:
                assert_error(response, 401, "not_authenticated")
            elif status == 403:
                body = assert_error(response, 403, "forbidden")
                assert "admin" in body["error"]

    async def test_open_source_mode(self, client, app):
        world = await build_world(client, app)
        body = await world.ok("admin", "GET", "/api/license")
        assert set(body) == LICENSE_FIELDS
        assert body["mode"] == "open_source" and body["reason"] == NO_KEY
        assert body["features"] == [] and body["licensee"] is None and body["seats"] is None
        assert body["seats_used"] == 8  # every active account of the world
        await world.ok(
            "superuser", "PATCH", "/api/admin/users/{bystander_id}", json={"is_active": False}
        )
        assert (await world.ok("admin", "GET", "/api/license"))["seats_used"] == 7

    async def test_licensed(self, client, app):
        world = await build_world(client, app)
        token = make_token(licensee="Globex", seats=50)
        verification = install_license(app, token)
        response = await world.call("superuser", "GET", "/api/license")
        assert response.status_code == 200, response.text
        assert token not in response.text and token.split(".")[2] not in response.text
        body = response.json()
        assert body["mode"] == "licensed" and body["reason"] is None
        assert (body["licensee"], body["seats"], body["seats_used"]) == ("Globex", 50, 8)
        assert body["features"] == ["usage_reports"]
        assert body["license_id"] == verification.license.id
        assert datetime.fromisoformat(body["expires_at"]) == verification.license.expires_at

    async def test_the_admin_of_a_deleted_workspace_no_longer_sees_it(self, client, app):
        world = await build_world(client, app)
        await world.ok("outsider", "DELETE", "/api/workspaces/{W2}", 204)
        assert_error(await world.call("outsider", "GET", "/api/license"), 403, "forbidden")


class TestStartup:
    async def test_the_license_key_setting_is_verified_at_startup(
        self, make_settings, start_app, vendor_key
    ):
        app = create_app(make_settings(license_key=make_token(licensee="Initech")))
        client = await start_app(app)
        _, headers = await add_user(app, "root", superuser=True)
        body = (await client.get("/api/license", headers=headers)).json()
        assert (body["mode"], body["licensee"]) == ("licensed", "Initech")

    async def test_a_bad_key_never_stops_the_server(self, make_settings, start_app, caplog):
        with caplog.at_level(logging.WARNING, logger="huddle.licensing"):
            app = create_app(make_settings(license_key="not-a-license"))
        assert any("HUDDLE_LICENSE_KEY refused" in r.getMessage() for r in caplog.records)
        client = await start_app(app)
        assert (await client.get("/health")).status_code == 200
        _, headers = await add_user(app, "root", superuser=True)
        body = (await client.get("/api/license", headers=headers)).json()
        assert (body["mode"], body["reason"]) == ("open_source", MALFORMED)


# --- the licensed usage report ---------------------------------------------------------------


async def seed_usage(world: World) -> dict[str, int]:
    """AI usage rows around workspace W; returns what W's report must add up to."""
    member_conv = await world.ok(
        "member", "POST", "/api/ai/conversations", 201, json={"workspace_id": world.ids["W"]}
    )
    outsider_conv = await world.ok(
        "outsider", "POST", "/api/ai/conversations", 201, json={"workspace_id": world.ids["W2"]}
    )
    w3 = await world.ok("member", "POST", "/api/workspaces", 201, json={"name": "Side"})
    member_elsewhere = await world.ok(
        "member", "POST", "/api/ai/conversations", 201, json={"workspace_id": w3["id"]}
    )
    now = utcnow()
    member, admin, outsider = (world.ids_uuid(f"{n}_id") for n in ("member", "admin", "outsider"))
    rows = [
        # counted: member's conversation in W, and member's conversation-less calls
        (member, member_conv["id"], "chat", 100, 20, now),
        (member, member_conv["id"], "chat", 50, 10, now),
        (member, None, "summary", 7, 3, now),
        # counted: an admin's search answer ten days ago
        (admin, None, "answer", 1000, 1, now - timedelta(days=10)),
        # not counted: another workspace's conversations, calls of non-members
        (outsider, outsider_conv["id"], "chat", 999, 999, now),
        (member, member_elsewhere["id"], "chat", 4444, 4444, now),
        (outsider, None, "mention", 5, 5, now),
        (world.ids_uuid("newcomer_id"), None, "answer", 6, 6, now),
    ]
    async with world.app.state.db.write_session() as session:
        for user_id, conversation_id, purpose, tokens_in, tokens_out, created_at in rows:
            session.add(
                AIUsage(
                    user_id=user_id,
                    conversation_id=uuid.UUID(conversation_id) if conversation_id else None,
                    purpose=purpose,
                    model="test-model",
                    input_tokens=tokens_in,
                    output_tokens=tokens_out,
                    created_at=created_at,
                )
            )
        await session.commit()
    return {"rows": len(rows)}


async def usage_rows(world: World) -> int:
    async with world.app.state.db.write_session() as session:
        return int(await session.scalar(select(func.count()).select_from(AIUsage)) or 0)


def _user_totals(body: dict) -> list[tuple[str, int, int, int, int]]:
    return [
        (
            item["user"]["username"],
            item["calls"],
            item["input_tokens"],
            item["output_tokens"],
            item["total_tokens"],
        )
        for item in body["items"]
    ]


class TestUsageReportUnlicensed:
    async def test_open_source_mode_answers_license_required_to_admins_only(self, client, app):
        world = await build_world(client, app)
        expected = {
            "anonymous": (401, "not_authenticated"),
            "outsider": (404, "not_found"),
            "viewer": (403, "forbidden"),
            "member": (403, "forbidden"),
            "admin": (403, "license_required"),
            "superuser": (404, "not_found"),
        }
        for role, (status, code) in expected.items():
            body = assert_error(await world.call(role, "GET", USAGE), status, code)
            if code == "license_required":
                assert body["details"] == {"feature": "usage_reports", "reason": NO_KEY}
                assert "usage_reports" in body["error"] and NO_KEY in body["error"]

    async def test_a_license_without_the_feature(self, client, app):
        world = await build_world(client, app)
        install_license(app, features=[])
        body = assert_error(await world.call("admin", "GET", USAGE), 403, "license_required")
        assert body["details"]["reason"] == "the license does not include usage_reports"

    def test_openapi_names_the_code(self, app):
        operation = app.openapi()["paths"]["/api/workspaces/{wid}/ai/usage"]["get"]
        assert "license_required" in operation["responses"]["403"]["description"]


class TestUsageReport:
    async def test_per_user_totals_of_the_workspace(self, client, app):
        world = await build_world(client, app)
        await seed_usage(world)
        install_license(app)
        body = await world.ok("admin", "GET", USAGE)
        assert body["workspace_id"] == world.ids["W"]
        assert (body["since"], body["until"]) == (None, None)
        assert _user_totals(body) == [("admin", 1, 1000, 1, 1001), ("member", 3, 157, 33, 190)]
        assert body["items"][1]["user"] == {
            "id": world.ids["member_id"],
            "username": "member",
            "email": "member@example.com",
            "full_name": "Member",
        }
        assert body["totals"] == {
            "calls": 4,
            "input_tokens": 1157,
            "output_tokens": 34,
            "total_tokens": 1191,
        }

    async def test_since_and_until(self, client, app):
        world = await build_world(client, app)
        await seed_usage(world)
        install_license(app)
        cut = (utcnow() - timedelta(days=1)).isoformat()
        recent = await world.ok("admin", "GET", USAGE, params={"since": cut})
        assert _user_totals(recent) == [("member", 3, 157, 33, 190)]
        assert datetime.fromisoformat(recent["since"]) == datetime.fromisoformat(cut)
        older = await world.ok("admin", "GET", USAGE, params={"until": cut})
        assert _user_totals(older) == [("admin", 1, 1000, 1, 1001)]
        empty = await world.ok(
            "admin",
            "GET",
            USAGE,
            params={"since": "2001-01-01T00:00:00Z", "until": "2001-02-01T00:00:00Z"},
        )
        assert empty["items"] == [] and empty["totals"]["calls"] == 0

    @pytest.mark.parametrize(
        "params",
        [
            {"since": "2027-01-02T00:00:00Z", "until": "2027-01-01T00:00:00Z"},
            {"since": "2027-01-01T00:00:00Z", "until": "2027-01-01T00:00:00Z"},
            {"since": "2027-01-01T00:00:00"},  # no time zone
            {"until": "yesterday"},
        ],
    )
    async def test_bad_periods(self, client, app, params):
        world = await build_world(client, app)
        install_license(app)
        assert_error(
            await world.call("admin", "GET", USAGE, params=params), 422, "validation_error"
        )

    async def test_an_expired_license_degrades_at_once_and_loses_nothing(
        self, client, app, advance_clock
    ):
        world = await build_world(client, app)
        seeded = await seed_usage(world)
        install_license(app, expires_at=utcnow() + timedelta(hours=1))
        report = await world.ok("admin", "GET", USAGE)

        advance_clock(timedelta(hours=2))  # the license expires while the server runs
        body = assert_error(await world.call("admin", "GET", USAGE), 403, "license_required")
        assert body["details"]["reason"].startswith("the license expired on ")
        status = await world.ok("admin", "GET", "/api/license")
        assert status["mode"] == "open_source"
        assert status["reason"] == body["details"]["reason"]
        assert status["licensee"] == "Acme Corp" and status["features"] == []
        # Nothing else is affected, and nothing is deleted.
        await world.ok("admin", "GET", "/api/workspaces/{W}")
        assert await usage_rows(world) == seeded["rows"]

        install_license(app, expires_at=utcnow() + timedelta(days=365))  # the renewal
        assert await world.ok("admin", "GET", USAGE) == report
        assert (await world.ok("admin", "GET", "/api/license"))["mode"] == "licensed"
