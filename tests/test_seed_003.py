"""Seed 003's session and session-template examples, sent as written (under /api/v1,
with a bearer token), and the fields of each reply the seed shows."""

from __future__ import annotations

from tests.conftest import Account


def test_seed_003_sessions_and_templates_as_written(client, alice: Account):
    headers = alice.headers

    # POST /api/v1/session-templates
    template = client.post(
        "/api/v1/session-templates",
        json={
            "name": "DevOps Investigation Template",
            "description": "Pre-configured for infrastructure debugging",
            "category": "DEVOPS",
            "sdk_options": {
                "allowed_tools": ["Bash", "Read", "Write"],
                "permission_mode": "default",
            },
            "default_mode": "interactive",
            "is_public": False,
        },
        headers=headers,
    )
    assert template.status_code == 201, template.text
    template = template.json()
    assert {"id", "name", "category", "created_at"} <= set(template)

    # GET /api/v1/session-templates?category=&is_public=
    templates = client.get(
        "/api/v1/session-templates?category=DEVOPS&is_public=false", headers=headers
    ).json()
    assert templates["total"] == 1
    assert {"id", "name", "category", "is_public"} <= set(templates["templates"][0])

    # GET /api/v1/session-templates/{template_id}
    one = client.get(f"/api/v1/session-templates/{template['id']}", headers=headers).json()
    assert {"id", "name", "description", "sdk_options", "default_mode", "created_at"} <= set(one)

    # POST /api/v1/sessions
    session = client.post(
        "/api/v1/sessions",
        json={
            "name": "My Investigation Session",
            "mode": "interactive",
            "sdk_options": {
                "allowed_tools": ["Read", "Write", "Bash"],
                "permission_mode": "default",
            },
            "template_id": template["id"],
        },
        headers=headers,
    )
    assert session.status_code == 201, session.text
    session = session.json()
    assert {
        "id",
        "user_id",
        "name",
        "mode",
        "status",
        "sdk_options",
        "working_directory_path",
        "created_at",
    } <= set(session)
    assert session["status"] == "created"
    assert session["sdk_options"]["allowed_tools"] == [
        "filesystem_read",
        "filesystem_write",
        "shell",
    ]
    session_id = session["id"]

    # GET /api/v1/sessions?status=&mode=&limit=
    listed = client.get(
        "/api/v1/sessions?limit=100&status=created&mode=interactive", headers=headers
    ).json()
    assert listed["total"] == 1 and listed["offset"] == 0 and listed["limit"] == 100
    assert {"id", "name", "status", "mode", "created_at"} <= set(listed["sessions"][0])

    # POST /api/v1/sessions/{session_id}/query
    answer = client.post(
        f"/api/v1/sessions/{session_id}/query",
        json={"message": "Analyze the error logs in /var/log/app.log"},
        headers=headers,
    )
    assert answer.status_code == 200, answer.text
    answer = answer.json()
    assert {"session_id", "message_id", "content", "tool_calls", "metrics"} <= set(answer)
    assert answer["content"]["type"] == "text"
    assert answer["content"]["text"] == "Analyze the error logs in /var/log/app.log"
    assert set(answer["metrics"]) == {"duration_ms", "input_tokens", "output_tokens", "cost_usd"}

    # GET /api/v1/sessions/{session_id}
    details = client.get(f"/api/v1/sessions/{session_id}", headers=headers).json()
    for key in (
        "total_messages",
        "total_tool_calls",
        "total_cost_usd",
        "api_input_tokens",
        "api_output_tokens",
        "created_at",
        "started_at",
    ):
        assert key in details
    assert details["total_messages"] == 2 and details["status"] == "completed"

    # GET /api/v1/sessions/{session_id}/messages and /tool-calls
    messages = client.get(f"/api/v1/sessions/{session_id}/messages", headers=headers).json()
    assert [m["message_type"] for m in messages["messages"]] == ["user", "assistant"]
    assert messages["messages"][0]["content"] == {
        "content": "Analyze the error logs in /var/log/app.log"
    }
    assert messages["messages"][1]["model"] == "echo"
    calls = client.get(f"/api/v1/sessions/{session_id}/tool-calls", headers=headers).json()
    assert calls["total"] == 0

    # POST /api/v1/sessions/{session_id}/fork
    fork = client.post(
        f"/api/v1/sessions/{session_id}/fork", json={"name": "Forked Session"}, headers=headers
    )
    assert fork.status_code == 201, fork.text
    fork = fork.json()
    assert fork["parent_session_id"] == session_id
    assert fork["is_fork"] is True and fork["mode"] == "forked" and fork["status"] == "created"
    assert fork["name"] == "Forked Session"

    # POST /api/v1/sessions/{session_id}/archive
    archive = client.post(
        f"/api/v1/sessions/{session_id}/archive", json={"compression": "gzip"}, headers=headers
    )
    assert archive.status_code == 200, archive.text
    assert set(archive.json()) == {"archive_id", "archive_path", "archive_size_bytes", "file_count"}

    # DELETE /api/v1/sessions/{session_id}
    assert client.delete(f"/api/v1/sessions/{session_id}", headers=headers).status_code == 204
