"""Invitations: create, mail (console and real SMTP), list, revoke, accept."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from email import message_from_bytes

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select, update

from huddle.app import create_app
from huddle.core.time import utcnow
from huddle.core.tokens import hash_secret
from huddle.workspaces.models import Invitation, Membership
from tests.e2e.server import free_port
from tests.helpers import assert_error
from tests.world import add_user, build_world, events


class Inbox:
    """An aiosmtpd handler that keeps every message it receives."""

    def __init__(self) -> None:
        self.messages: list = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.rcpt_tos, message_from_bytes(envelope.content)))
        return "250 OK"


@pytest.fixture
def smtp_server():
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, inbox
    controller.stop()


async def _invite(world, email="guest2@example.com", role="member"):
    return await world.ok(
        "admin", "POST", "/api/workspaces/{W}/invitations", 201, json={"email": email, "role": role}
    )


async def test_invitation_is_mailed_over_smtp_with_the_accept_link(
    make_settings, start_app, smtp_server
):
    controller, inbox = smtp_server
    settings = make_settings(
        smtp_host="127.0.0.1",
        smtp_port=controller.port,
        smtp_starttls=False,
        mail_from="Huddle <noreply@huddle.test>",
        public_url="https://huddle.example.com",
    )
    app = create_app(settings)
    client = await start_app(app)
    world = await build_world(client, app)
    created = await _invite(world, "Invitee@Example.com", "viewer")
    assert created["email"] == "invitee@example.com" and created["role"] == "viewer"
    async with asyncio.timeout(10):
        while not any(rcpt == ["invitee@example.com"] for rcpt, _ in inbox.messages):
            await asyncio.sleep(0.02)
    message = next(m for rcpt, m in inbox.messages if rcpt == ["invitee@example.com"])
    assert message["From"] == "Huddle <noreply@huddle.test>"
    assert "Acme" in message["Subject"]
    body = message.get_payload(decode=True).decode()
    link = re.search(r"https://huddle\.example\.com/invitations/accept\?token=(\S+)", body)
    assert link and link.group(1) == created["token"]
    # The token in the mail accepts the invitation.
    invitee, headers = await add_user(app, "invitee")
    response = await client.post(
        "/api/invitations/accept", json={"token": link.group(1)}, headers=headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["member"]["role"] == "viewer"
    assert response.json()["workspace"]["id"] == world.ids["W"]
    assert invitee["id"] == response.json()["member"]["user"]["id"]


async def test_rolled_back_invitation_sends_no_mail(make_settings, start_app, smtp_server):
    controller, inbox = smtp_server
    app = create_app(
        make_settings(smtp_host="127.0.0.1", smtp_port=controller.port, smtp_starttls=False)
    )
    client = await start_app(app)
    world = await build_world(client, app)
    await app.state.background.drain()
    sent = len(inbox.messages)
    # Inviting an existing member is refused: nothing is stored, nothing is sent.
    response = await world.call(
        "admin", "POST", "/api/workspaces/{W}/invitations", json={"email": "member@example.com"}
    )
    assert_error(response, 409, "conflict")
    await app.state.background.drain()
    assert len(inbox.messages) == sent


async def test_console_backend_logs_the_link(client, app):
    world = await build_world(client, app)
    created = await _invite(world)
    await app.state.background.drain()
    sent = app.state.mailer.backend.sent
    assert any(m.to == "guest2@example.com" and created["token"] in m.body for m in sent)


async def test_token_is_stored_hashed_and_listed_without_it(client, app):
    world = await build_world(client, app)
    created = await _invite(world)
    async with app.state.db.read_session() as session:
        row = await session.get(Invitation, __import__("uuid").UUID(created["id"]))
    assert row.token_hash == hash_secret(created["token"]) != created["token"]
    listed = await world.ok("admin", "GET", "/api/workspaces/{W}/invitations")
    assert created["id"] in [i["id"] for i in listed["items"]]
    assert all("token" not in i for i in listed["items"])
    assert timedelta(days=6, hours=23) < row.expires_at - utcnow() <= timedelta(days=7)


async def test_accept_rules(client, app):
    world = await build_world(client, app)
    created = await _invite(world, "guest2@example.com", "member")
    token = created["token"]
    guest, guest_headers = await add_user(app, "guest2")

    async def accept(headers, tok=token):
        return await client.post("/api/invitations/accept", json={"token": tok}, headers=headers)

    assert_error(
        await client.post("/api/invitations/accept", json={"token": token}),
        401,
        "not_authenticated",
    )
    assert_error(await accept(guest_headers, "unknown"), 404, "not_found")
    assert_error(await accept(world.headers["newcomer"]), 403, "forbidden")  # another email
    accepted = await accept(guest_headers)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["workspace"]["role"] == "member"
    assert_error(await accept(guest_headers), 410, "gone")  # used once
    async with app.state.db.read_session() as session:
        membership = await session.scalar(
            select(Membership).where(Membership.user_id == __import__("uuid").UUID(guest["id"]))
        )
    assert membership is not None and membership.role.value == "member"
    # The new member now sees the workspace; events: member.added for all, accepted for admins.
    assert (
        await client.get(f"/api/workspaces/{world.ids['W']}", headers=guest_headers)
    ).status_code == 200
    member_events = [e["type"] for e in await events(world, "member")]
    admin_events = [e["type"] for e in await events(world, "admin")]
    assert member_events[-1] == "member.added" and "invitation.accepted" not in member_events
    assert admin_events[-2:] == ["member.added", "invitation.accepted"]


async def test_expired_revoked_and_already_member(client, app):
    world = await build_world(client, app)
    _, headers = await add_user(app, "guest2")
    expired = await _invite(world)
    async with app.state.db.write_session() as session:
        await session.execute(update(Invitation).values(expires_at=utcnow() - timedelta(seconds=1)))
        await session.commit()
    body = assert_error(
        await client.post(
            "/api/invitations/accept", json={"token": expired["token"]}, headers=headers
        ),
        410,
        "gone",
    )
    assert "expired" in body["error"]
    revoked = await _invite(world)
    await world.ok("admin", "DELETE", f"/api/workspaces/{{W}}/invitations/{revoked['id']}", 204)
    await world.ok(
        "admin", "DELETE", f"/api/workspaces/{{W}}/invitations/{revoked['id']}", 204
    )  # idempotent
    body = assert_error(
        await client.post(
            "/api/invitations/accept", json={"token": revoked["token"]}, headers=headers
        ),
        410,
        "gone",
    )
    assert "revoked" in body["error"]
    pending = await world.ok(
        "admin", "GET", "/api/workspaces/{W}/invitations", params={"pending": "true"}
    )
    assert revoked["id"] not in [i["id"] for i in pending["items"]]
    # An invitation for someone who joined another way: 409 on accept.
    twice = await _invite(world, "newcomer@example.com")
    await world.ok(
        "admin", "POST", "/api/workspaces/{W}/members", 201, json={"email": "newcomer@example.com"}
    )
    assert_error(
        await client.post(
            "/api/invitations/accept",
            json={"token": twice["token"]},
            headers=world.headers["newcomer"],
        ),
        409,
        "conflict",
    )


async def test_accepted_invitation_cannot_be_revoked_and_events_once(client, app):
    world = await build_world(client, app)
    created = await _invite(world)
    _, headers = await add_user(app, "guest2")
    await client.post("/api/invitations/accept", json={"token": created["token"]}, headers=headers)
    assert_error(
        await world.call("admin", "DELETE", f"/api/workspaces/{{W}}/invitations/{created['id']}"),
        409,
        "conflict",
    )
    types = [e["type"] for e in await events(world, "admin") if e["subject_id"] == created["id"]]
    assert types == ["invitation.created", "invitation.accepted"]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"email": "nope"},
        {"email": "a@example.com", "role": "owner"},
        {"email": "a@example.com", "x": 1},
    ],
)
async def test_invalid_invitations_are_422(client, app, body):
    world = await build_world(client, app)
    assert_error(
        await world.call("admin", "POST", "/api/workspaces/{W}/invitations", json=body),
        422,
        "validation_error",
    )


async def test_concurrent_accepts_join_once(client, app):
    world = await build_world(client, app)
    created = await _invite(world)
    _, headers = await add_user(app, "guest2")
    responses = await asyncio.gather(
        *[
            client.post(
                "/api/invitations/accept", json={"token": created["token"]}, headers=headers
            )
            for _ in range(4)
        ]
    )
    assert sorted(r.status_code for r in responses).count(200) == 1
    assert all(r.status_code in (200, 409, 410) for r in responses)
