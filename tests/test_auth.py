"""Accounts and tokens: register, login, refresh rotation with theft detection, logout, me."""

from __future__ import annotations

import time
from datetime import timedelta

import jwt
import pytest

from storage.ids import utcnow
from storage.users import RefreshToken, User
from tests.conftest import PASSWORD, Account, assert_problem, register

REGISTER = "/api/v1/auth/register"
LOGIN = "/api/v1/auth/login"
REFRESH = "/api/v1/auth/refresh"


def claims(settings, **overrides) -> dict:
    now = int(time.time())
    base = {
        "sub": "usr_x",
        "role": "user",
        "scopes": ["agents:read"],
        "iat": now,
        "exp": now + 600,
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
    }
    return {k: v for k, v in {**base, **overrides}.items() if v is not None}


class TestRegister:
    def test_seed_example_registers_and_stores_a_hash(self, client):
        reply = client.post(
            REGISTER,
            json={
                "email": "user@example.com",
                "username": "johndoe",
                "password": "secret123",
                "full_name": "John Doe",
            },
        )
        assert reply.status_code == 201
        body = reply.json()
        assert body["id"].startswith("usr_")
        assert (body["email"], body["username"], body["full_name"], body["role"]) == (
            "user@example.com",
            "johndoe",
            "John Doe",
            "user",
        )
        assert body["created_at"].endswith("Z")
        stored = User.get_by_id(body["id"])
        assert (
            stored.password_hash.startswith("$argon2") and "secret123" not in stored.password_hash
        )

    def test_taken_email_is_409_even_in_another_case(self, client, alice: Account):
        reply = client.post(
            REGISTER, json={"email": "ALICE@example.com", "username": "other", "password": PASSWORD}
        )
        assert_problem(reply, 409, "email_taken")

    def test_taken_username_is_409(self, client, alice: Account):
        reply = client.post(
            REGISTER, json={"email": "new@example.com", "username": "alice", "password": PASSWORD}
        )
        assert_problem(reply, 409, "username_taken")

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"password": "short1"}, "body.password"),
            ({"email": "not-an-email"}, "body.email"),
            ({"username": "x"}, "body.username"),
            ({"extra": 1}, "body.extra"),
        ],
    )
    def test_invalid_fields_are_422_by_name(self, client, body, field):
        base = {"email": "n@example.com", "username": "newbie", "password": PASSWORD}
        reply = client.post(REGISTER, json={**base, **body})
        assert field in assert_problem(reply, 422, "validation_error")["details"]

    @pytest.mark.parametrize("password", ["abcdefgh", "12345678", "newbie-newbie"[:6] + "zz"])
    def test_weak_passwords_are_422(self, client, password):
        reply = client.post(
            REGISTER, json={"email": "n@example.com", "username": "newbie", "password": password}
        )
        body = assert_problem(reply, 422)
        assert "password" in str(body["details"])
        assert User.select().count() == 0

    def test_password_equal_to_username_is_weak(self, client):
        reply = client.post(
            REGISTER, json={"email": "n@example.com", "username": "newbie1", "password": "newbie1"}
        )
        assert_problem(reply, 422)


class TestLogin:
    def test_login_by_username_email_or_email_field(self, client, alice: Account):
        for body in (
            {"username": "alice", "password": PASSWORD},
            {"username": "alice@example.com", "password": PASSWORD},
            {"email": "alice@example.com", "password": PASSWORD},
        ):
            reply = client.post(LOGIN, json=body)
            assert reply.status_code == 200, body
            tokens = reply.json()
            assert tokens["token_type"] == "bearer"
            assert tokens["expires_in"] == 3600
            assert tokens["access_token"] and tokens["refresh_token"]
        assert User.get_by_id(alice.id).last_login_at is not None

    def test_unknown_user_and_wrong_password_get_the_same_reply(self, client, alice: Account):
        wrong = client.post(LOGIN, json={"username": "alice", "password": "nope-nope-1"})
        unknown = client.post(LOGIN, json={"username": "ghost", "password": "nope-nope-1"})
        a, b = assert_problem(wrong, 401, "invalid_credentials"), assert_problem(unknown, 401)
        del a["request_id"], b["request_id"]
        assert a == b

    def test_disabled_account_is_403(self, client, alice: Account):
        User.update(is_active=False).where(User.id == alice.id).execute()
        reply = client.post(LOGIN, json={"username": "alice", "password": PASSWORD})
        assert_problem(reply, 403, "account_disabled")

    def test_scopes_narrow_the_token_and_are_enforced(self, client, alice: Account):
        reply = client.post(
            LOGIN, json={"username": "alice", "password": PASSWORD, "scopes": ["agents:read"]}
        )
        token = reply.json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        assert client.get("/api/v1/agents", headers=headers).status_code == 200
        denied = client.post("/api/v1/agents", json={"name": "x"}, headers=headers)
        body = assert_problem(denied, 403, "insufficient_scope")
        assert body["details"]["required_scopes"] == ["agents:write"]

    def test_scopes_the_account_cannot_have_are_422(self, client, alice: Account):
        reply = client.post(
            LOGIN, json={"username": "alice", "password": PASSWORD, "scopes": ["admin"]}
        )
        assert_problem(reply, 422, "invalid_scope")

    def test_oauth2_password_form_works_for_the_docs_page(self, client, alice: Account):
        reply = client.post(
            LOGIN,
            data={"username": "alice", "password": PASSWORD, "grant_type": "password"},
        )
        assert reply.status_code == 200
        assert reply.json()["token_type"] == "bearer"


class TestAccessTokens:
    def test_missing_token_is_401_with_www_authenticate(self, client):
        reply = client.get("/api/v1/agents")
        assert_problem(reply, 401, "not_authenticated")
        assert reply.headers["www-authenticate"].startswith("Bearer")

    def test_garbage_token_is_401(self, client):
        reply = client.get("/api/v1/agents", headers={"Authorization": "Bearer garbage"})
        assert_problem(reply, 401, "invalid_token")

    @pytest.mark.parametrize(
        ("key", "algorithm", "overrides", "error"),
        [
            ("another-secret-key-that-is-long-enough", "HS256", {}, "invalid_token"),
            (None, "HS256", {"exp": int(time.time()) - 10}, "token_expired"),
            (None, "HS512", {}, "invalid_token"),
            (None, "HS256", {"aud": "someone-else"}, "invalid_token"),
            (None, "HS256", {"iss": "evil"}, "invalid_token"),
            (None, "HS256", {"sub": None}, "invalid_token"),
            (None, "HS256", {"role": "emperor"}, "invalid_token"),
        ],
    )
    def test_forged_expired_or_misaddressed_tokens_are_401(
        self, client, settings, key, algorithm, overrides, error
    ):
        token = jwt.encode(claims(settings, **overrides), key or settings.secret_key, algorithm)
        reply = client.get("/api/v1/agents", headers={"Authorization": f"Bearer {token}"})
        assert_problem(reply, 401, error)

    def test_alg_none_is_refused(self, client, settings):
        token = jwt.encode(claims(settings), None, algorithm="none")
        reply = client.get("/api/v1/agents", headers={"Authorization": f"Bearer {token}"})
        assert_problem(reply, 401, "invalid_token")

    def test_a_well_formed_token_with_our_key_is_accepted(self, client, settings, alice):
        token = jwt.encode(claims(settings, sub=alice.id), settings.secret_key, "HS256")
        reply = client.get("/api/v1/agents", headers={"Authorization": f"Bearer {token}"})
        assert reply.status_code == 200


class TestRefresh:
    def test_refresh_rotates_and_the_old_token_stops_working(self, client, alice: Account):
        first = client.post(REFRESH, json={"refresh_token": alice.refresh_token})
        assert first.status_code == 200
        fresh = first.json()
        assert fresh["refresh_token"] != alice.refresh_token
        me = client.get(
            "/api/v1/auth/me", headers={"Authorization": f"Bearer {fresh['access_token']}"}
        )
        assert me.json()["id"] == alice.id
        again = client.post(REFRESH, json={"refresh_token": fresh["refresh_token"]})
        assert again.status_code == 200

    def test_refresh_token_reuse_revokes_family(self, client, alice: Account):
        rotated = client.post(REFRESH, json={"refresh_token": alice.refresh_token}).json()
        replay = client.post(REFRESH, json={"refresh_token": alice.refresh_token})
        assert_problem(replay, 401, "refresh_token_reused")
        # the thief's replay also kills the legitimate newest token of that login
        newest = client.post(REFRESH, json={"refresh_token": rotated["refresh_token"]})
        assert_problem(newest, 401, "invalid_refresh_token")
        family = RefreshToken.get(RefreshToken.user == alice.id).family
        rows = RefreshToken.select().where(RefreshToken.family == family)
        assert all(row.revoked_at is not None for row in rows)

    def test_reuse_leaves_other_logins_alone(self, client, alice: Account):
        other = client.post(LOGIN, json={"username": "alice", "password": PASSWORD}).json()
        client.post(REFRESH, json={"refresh_token": alice.refresh_token})
        client.post(REFRESH, json={"refresh_token": alice.refresh_token})  # reuse
        assert (
            client.post(REFRESH, json={"refresh_token": other["refresh_token"]}).status_code == 200
        )

    def test_unknown_and_expired_refresh_tokens_are_401(self, client, alice: Account):
        assert_problem(client.post(REFRESH, json={"refresh_token": "nope"}), 401)
        RefreshToken.update(expires_at=utcnow() - timedelta(seconds=1)).execute()
        assert_problem(
            client.post(REFRESH, json={"refresh_token": alice.refresh_token}),
            401,
            "invalid_refresh_token",
        )

    def test_disabled_user_cannot_refresh(self, client, alice: Account):
        User.update(is_active=False).where(User.id == alice.id).execute()
        assert_problem(client.post(REFRESH, json={"refresh_token": alice.refresh_token}), 401)


class TestLogoutAndMe:
    def test_logout_revokes_the_login(self, client, alice: Account):
        reply = client.post(
            "/api/v1/auth/logout",
            json={"refresh_token": alice.refresh_token},
            headers=alice.headers,
        )
        assert reply.status_code == 204
        assert_problem(client.post(REFRESH, json={"refresh_token": alice.refresh_token}), 401)

    def test_logout_without_body_is_fine_and_needs_a_token(self, client, alice: Account):
        assert client.post("/api/v1/auth/logout", headers=alice.headers).status_code == 204
        assert_problem(client.post("/api/v1/auth/logout"), 401)

    def test_logout_cannot_revoke_someone_elses_login(self, client, alice, bob):
        client.post(
            "/api/v1/auth/logout", json={"refresh_token": alice.refresh_token}, headers=bob.headers
        )
        assert client.post(REFRESH, json={"refresh_token": alice.refresh_token}).status_code == 200

    def test_me_returns_the_caller(self, client, alice: Account):
        body = client.get("/api/v1/auth/me", headers=alice.headers).json()
        assert (body["id"], body["username"], body["role"]) == (alice.id, "alice", "user")
        assert_problem(client.get("/api/v1/auth/me"), 401)

    def test_seed_python_client_lists_agents_after_login(self, client, alice: Account):
        token = client.post(
            LOGIN, json={"username": "alice@example.com", "password": PASSWORD}
        ).json()["access_token"]
        client.headers["Authorization"] = f"Bearer {token}"
        assert client.get("/api/v1/agents").json()["agents"] == []


def test_admins_get_the_admin_scope(client):
    root = register(client, "root", role="admin")
    token = jwt.decode(root.access_token, options={"verify_signature": False})
    assert token["role"] == "admin" and "admin" in token["scopes"]
