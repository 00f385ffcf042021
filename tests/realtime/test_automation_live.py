"""Issue 13's end-to-end case on a live server: "when a task enters Review, assign it to
the lead and post in #reviews" — a socket subscribed to the project and the channel sees
the user's move, then the rule's assignment and message, live, with the rule as actor."""

from __future__ import annotations


async def test_the_review_handoff_rule_is_seen_live(connect, world):
    w = world
    await w.ok("admin", "POST", "/api/projects/{P}/columns", 201, json={"name": "Review"})
    board = await w.ok("admin", "GET", "/api/projects/{P}/board")
    review = next(c["id"] for c in board["columns"] if c["key"] == "review")
    reviews = (
        await w.ok("admin", "POST", "/api/workspaces/{W}/channels", 201, json={"name": "reviews"})
    )["id"]
    rule = await w.ok(
        "admin",
        "POST",
        "/api/projects/{P}/automations",
        201,
        json={
            "name": "Review handoff",
            "trigger": {"event": "task.moved", "column_id": review},
            "actions": [
                {"type": "assign", "user_id": w.ids["member_id"]},
                {"type": "post_message", "channel_id": reviews, "text": "{assignee}: {title}"},
            ],
        },
    )
    lead = await connect("member")
    for topic in (f"project:{w.ids['P']}", f"channel:{reviews}"):
        await lead.ok("subscribe", topic=topic)

    await w.ok("admin", "POST", "/api/tasks/{TK}/move", json={"column_id": review})

    actor = {"kind": "system", "rule_id": rule["id"], "on_behalf_of": w.ids["admin_id"]}
    moved = await lead.event("task.moved")
    assert moved["actor"] == {"kind": "user", "id": w.ids["admin_id"]}
    assert moved["data"]["column_id"] == review
    assigned = await lead.event("task.updated")
    assert assigned["actor"] == actor and assigned["subject_id"] == w.ids["TK"]
    assert assigned["data"]["assignee_id"] == w.ids["member_id"]
    posted = await lead.event("message.created")
    assert posted["actor"] == actor and posted["topic"] == f"channel:{reviews}"
    assert posted["data"]["author_kind"] == "system"
    title = (await w.ok("member", "GET", "/api/tasks/{TK}"))["title"]
    assert posted["data"]["content"] == f"@member: {title}"
    mention = await lead.event("mention")  # the lead's own topic, implicit
    assert mention["actor"] == actor
    assert moved["id"] < assigned["id"] < posted["id"]

    [run] = (await w.ok("viewer", "GET", f"/api/projects/{{P}}/automations/{rule['id']}/runs"))[
        "items"
    ]
    assert run["status"] == "succeeded" and run["event_id"] == moved["id"]
