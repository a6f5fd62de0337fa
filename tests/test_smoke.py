from tests.conftest import Account


def test_registered_user_can_create_and_list_an_agent(client, alice: Account):
    created = client.post("/api/v1/agents", json={"name": "coder"}, headers=alice.headers)
    assert created.status_code == 201
    listed = client.get("/api/v1/agents", headers=alice.headers)
    assert [a["name"] for a in listed.json()["agents"]] == ["coder"]
