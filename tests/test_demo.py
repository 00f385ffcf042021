"""`huddle demo` seeds a workspace a newcomer can log in to and look around in."""

from __future__ import annotations

import httpx

from huddle.demo import PASSWORD, WORKSPACE
from tests.e2e.server import Server, huddle_env, run_cli


def test_demo_seeds_a_workspace_to_log_in_to(tmp_path, database_url):
    env = huddle_env(tmp_path, database_url=database_url)
    first = run_cli("demo", env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "demo workspace created" in first.stdout and PASSWORD in first.stdout
    again = run_cli("demo", env=env, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "already here" in again.stdout

    server = Server(env, tmp_path)
    try:
        server.wait_ready()
        with httpx.Client(base_url=server.url, timeout=30) as http:
            token = http.post("/api/auth/token", data={"username": "ada", "password": PASSWORD})
            assert token.status_code == 200, token.text
            auth = {"Authorization": f"Bearer {token.json()['access_token']}"}
            [ws] = http.get("/api/workspaces", headers=auth).json()["items"]
            assert ws["name"] == WORKSPACE
            members = http.get(f"/api/workspaces/{ws['id']}/members", headers=auth).json()
            roles = {m["user"]["username"]: m["role"] for m in members["items"]}
            assert roles == {"ada": "admin", "ben": "member", "cleo": "member", "dev": "viewer"}
            projects = http.get(f"/api/workspaces/{ws['id']}/projects", headers=auth).json()
            assert {p["name"] for p in projects["items"]} == {"Website relaunch", "Mobile app"}
            site = next(p for p in projects["items"] if p["name"] == "Website relaunch")
            board = http.get(f"/api/projects/{site['id']}/board", headers=auth).json()
            counts = {c["key"]: c["task_count"] for c in board["columns"]}
            assert counts == {"todo": 3, "in_progress": 2, "review": 1, "done": 2}
            assert board["workflow"]["wip_limits"]
            channels = http.get(f"/api/workspaces/{ws['id']}/channels", headers=auth).json()
            by_name = {c["name"]: c for c in channels["items"] if c.get("name")}
            assert {"general", "design"} <= set(by_name)
            history = http.get(
                f"/api/channels/{by_name['design']['id']}/messages", headers=auth
            ).json()["items"]
            [root] = [m for m in history if m["reply_count"]]
            assert root["reply_count"] == 2 and root["reactions"]
            docs = http.get(f"/api/projects/{site['id']}/documents", headers=auth).json()
            assert [d["title"] for d in docs["items"]] == ["Launch checklist"]
            files = http.get(f"/api/projects/{site['id']}/files", headers=auth).json()
            assert [f["filename"] for f in files["items"]] == ["brand-notes.md"]
            # every demo user can log in with the printed password
            for user in ("ben", "cleo", "dev"):
                login = http.post("/api/auth/token", data={"username": user, "password": PASSWORD})
                assert login.status_code == 200, (user, login.text)
    finally:
        server.stop()
