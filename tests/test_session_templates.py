"""Session templates over HTTP: own and public ones, filters, and who may change them."""

from __future__ import annotations

from tests.conftest import Account, assert_problem

SEED_TEMPLATE = {
    "name": "DevOps Investigation Template",
    "description": "Pre-configured for infrastructure debugging",
    "category": "DEVOPS",
    "sdk_options": {"allowed_tools": ["Read", "Write"], "permission_mode": "default"},
    "default_mode": "interactive",
    "is_public": False,
}


def create(client, account: Account, **body) -> dict:
    reply = client.post(
        "/api/v1/session-templates", json={**SEED_TEMPLATE, **body}, headers=account.headers
    )
    assert reply.status_code == 201, reply.text
    return reply.json()


class TestCreateTemplate:
    def test_seed_request_gives_the_seed_fields(self, client, alice: Account):
        body = create(client, alice)
        assert body["id"].startswith("tmpl_")
        assert body["name"] == SEED_TEMPLATE["name"]
        assert body["category"] == "DEVOPS"
        assert body["owner_id"] == alice.id
        assert body["is_public"] is False
        assert body["default_mode"] == "interactive"
        assert body["sdk_options"] == {
            "allowed_tools": ["filesystem_read", "filesystem_write"],
            "permission_mode": "default",
        }
        assert "created_at" in body

    def test_name_alone_is_enough(self, client, alice: Account):
        reply = client.post(
            "/api/v1/session-templates", json={"name": "bare"}, headers=alice.headers
        )
        assert reply.status_code == 201, reply.text
        body = reply.json()
        assert body["sdk_options"] == {}
        assert body["category"] is None and body["is_public"] is False
        assert body["description"] == "" and body["default_mode"] == "interactive"

    def test_unknown_tool_is_a_422_naming_it(self, client, alice: Account):
        reply = client.post(
            "/api/v1/session-templates",
            json={"name": "x", "sdk_options": {"allowed_tools": ["Warp"]}},
            headers=alice.headers,
        )
        body = assert_problem(reply, 422, "validation_error")
        assert "Warp" in body["message"]

    def test_unknown_fields_are_a_422(self, client, alice: Account):
        reply = client.post(
            "/api/v1/session-templates", json={"name": "x", "color": "red"}, headers=alice.headers
        )
        assert_problem(reply, 422, "validation_error")


class TestListAndGetTemplates:
    def test_own_and_public_templates_are_listed_and_filtered(
        self, client, alice: Account, bob: Account
    ):
        mine = create(client, alice, name="mine")
        shared = create(client, bob, name="shared", is_public=True, category="OPS")
        create(client, bob, name="bobs secret")
        page = client.get("/api/v1/session-templates", headers=alice.headers).json()
        assert set(page) == {"templates", "total", "limit", "offset", "next"}
        assert {t["id"] for t in page["templates"]} == {mine["id"], shared["id"]}
        public = client.get(
            "/api/v1/session-templates?is_public=true", headers=alice.headers
        ).json()
        assert [t["id"] for t in public["templates"]] == [shared["id"]]
        ops = client.get("/api/v1/session-templates?category=OPS", headers=alice.headers).json()
        assert [t["id"] for t in ops["templates"]] == [shared["id"]]
        assert (
            client.get(f"/api/v1/session-templates/{shared['id']}", headers=alice.headers).json()[
                "name"
            ]
            == "shared"
        )

    def test_another_users_private_template_is_a_404(self, client, alice: Account, bob: Account):
        secret = create(client, bob, name="secret")
        for method, body in (("GET", None), ("PATCH", {"name": "x"}), ("DELETE", None)):
            reply = client.request(
                method,
                f"/api/v1/session-templates/{secret['id']}",
                json=body,
                headers=alice.headers,
            )
            assert_problem(reply, 404, "template_not_found")

    def test_a_public_template_is_changed_only_by_its_owner(
        self, client, alice: Account, bob: Account
    ):
        shared = create(client, bob, name="shared", is_public=True)
        for method, body in (("PATCH", {"name": "mine now"}), ("DELETE", None)):
            reply = client.request(
                method,
                f"/api/v1/session-templates/{shared['id']}",
                json=body,
                headers=alice.headers,
            )
            assert_problem(reply, 403, "not_template_owner")
        assert (
            client.get(f"/api/v1/session-templates/{shared['id']}", headers=bob.headers).json()[
                "name"
            ]
            == "shared"
        )

    def test_a_public_template_fills_another_users_session(
        self, client, alice: Account, bob: Account
    ):
        shared = create(client, bob, is_public=True, sdk_options={"permission_mode": "plan"})
        reply = client.post(
            "/api/v1/sessions",
            json={"name": "from a template", "template_id": shared["id"]},
            headers=alice.headers,
        )
        assert reply.status_code == 201
        assert reply.json()["sdk_options"]["permission_mode"] == "plan"


class TestUpdateAndDeleteTemplates:
    def test_patch_changes_the_given_fields(self, client, alice: Account):
        template = create(client, alice)
        reply = client.patch(
            f"/api/v1/session-templates/{template['id']}",
            json={"is_public": True, "sdk_options": {"allowed_tools": ["Read"]}, "category": None},
            headers=alice.headers,
        )
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["is_public"] is True
        assert body["category"] is None
        assert body["sdk_options"] == {"allowed_tools": ["filesystem_read"]}
        assert body["name"] == SEED_TEMPLATE["name"]
        assert body["updated_at"] >= body["created_at"]

    def test_empty_patch_is_a_422(self, client, alice: Account):
        template = create(client, alice)
        reply = client.patch(
            f"/api/v1/session-templates/{template['id']}", json={}, headers=alice.headers
        )
        assert_problem(reply, 422, "validation_error")

    def test_delete_leaves_sessions_made_from_it_alone(self, client, alice: Account):
        template = create(client, alice)
        session = client.post(
            "/api/v1/sessions",
            json={"name": "s", "template_id": template["id"]},
            headers=alice.headers,
        ).json()
        reply = client.delete(f"/api/v1/session-templates/{template['id']}", headers=alice.headers)
        assert reply.status_code == 204
        assert_problem(
            client.get(f"/api/v1/session-templates/{template['id']}", headers=alice.headers),
            404,
            "template_not_found",
        )
        kept = client.get(f"/api/v1/sessions/{session['id']}", headers=alice.headers).json()
        assert kept["sdk_options"]["allowed_tools"] == ["filesystem_read", "filesystem_write"]
