"""Accounts and tokens over HTTP: register, login, bearer access tokens, refresh, logout, me."""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from cadre import auth
from cadre.auth import ADMIN_SCOPES, USER_SCOPES, TokenService, verify_password
from storage.ids import utcnow
from storage.users import RefreshToken, User
from tests.conftest import PASSWORD, Account, assert_problem, register

REGISTER = "/api/v1/auth/register"
LOGIN = "/api/v1/auth/login"
TOKEN = "/api/v1/auth/token"
REFRESH = "/api/v1/auth/refresh"
LOGOUT = "/api/v1/auth/logout"
ME = "/api/v1/auth/me"
AGENTS = "/api/v1/agents"

SEED_REGISTRATION = {
    "email": "user@example.com",
    "username": "johndoe",
    "password": "j0hn-s3cret",
    "full_name": "John Doe",
}
OTHER_KEY = "another-secret-key-that-is-long-enough-for-every-hs-algorithm-9876543210"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def login(client, username: str = "alice", password: str = PASSWORD, **extra) -> dict:
    reply = client.post(LOGIN, json={"username": username, "password": password, **extra})
    assert reply.status_code == 200, reply.text
    return reply.json()


def refresh(client, refresh_token: str):
    return client.post(REFRESH, json={"refresh_token": refresh_token})


def row_of(refresh_token: str) -> RefreshToken:
    """The stored row of a refresh token (rows hold only its SHA-256 digest)."""
    digest = hashlib.sha256(refresh_token.encode()).hexdigest()
    return RefreshToken.get(RefreshToken.token_hash == digest)


def family_rows(refresh_token: str) -> list[RefreshToken]:
    family = row_of(refresh_token).family
    return list(RefreshToken.select().where(RefreshToken.family == family))


def claims_of(access_token: str) -> dict:
    return jwt.decode(access_token, options={"verify_signature": False})


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def forge(settings, account: Account, *, key: str | None = None, algorithm="HS256", **claims):
    """An access token shaped like the server's own; a claim set to None is left out."""
    service = TokenService(settings)
    now = int(time.time())
    base = {
        "sub": account.id,
        "role": "user",
        "scopes": list(USER_SCOPES),
        "iat": now,
        "exp": now + 600,
        "iss": service.issuer,
        "aud": service.audience,
    }
    payload = {name: value for name, value in {**base, **claims}.items() if value is not None}
    return jwt.encode(payload, key or settings.secret_key, algorithm=algorithm)


def assert_token_pair(body: dict, scopes: tuple[str, ...] = USER_SCOPES) -> dict:
    """A complete token pair reply; returns the access token's claims."""
    assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in", "scope"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 3600
    assert body["scope"] == " ".join(scopes)
    assert body["refresh_token"] and body["refresh_token"] != body["access_token"]
    claims = claims_of(body["access_token"])
    assert claims["scopes"] == list(scopes)
    assert claims["exp"] - claims["iat"] == 3600
    return claims


class TestRegister:
    def test_seed_example_creates_a_user_account(self, client):
        reply = client.post(REGISTER, json=SEED_REGISTRATION)
        assert reply.status_code == 201, reply.text
        assert reply.headers["content-type"] == "application/json"
        body = reply.json()
        assert body["id"].startswith("usr_")
        assert abs(moment(body["created_at"]) - datetime.now(UTC)) < timedelta(minutes=1)
        assert {k: v for k, v in body.items() if k not in ("id", "created_at")} == {
            "email": "user@example.com",
            "username": "johndoe",
            "full_name": "John Doe",
            "role": "user",
            "is_active": True,
            "last_login_at": None,
        }
        stored = User.get_by_id(body["id"])
        assert (stored.email, stored.username, stored.role) == (
            "user@example.com",
            "johndoe",
            "user",
        )

    def test_password_is_stored_as_an_argon2_hash(self, client):
        user_id = client.post(REGISTER, json=SEED_REGISTRATION).json()["id"]
        stored = User.get_by_id(user_id).password_hash
        assert stored.startswith("$argon2id$")
        assert "j0hn-s3cret" not in stored
        assert verify_password(stored, "j0hn-s3cret")
        assert not verify_password(stored, "secret124")

    def test_full_name_is_optional(self, client):
        body = {k: v for k, v in SEED_REGISTRATION.items() if k != "full_name"}
        reply = client.post(REGISTER, json=body)
        assert reply.status_code == 201, reply.text
        assert reply.json()["full_name"] is None

    def test_email_is_taken_whatever_its_case(self, client, alice: Account):
        reply = client.post(
            REGISTER,
            json={"email": "ALICE@Example.com", "username": "alice2", "password": PASSWORD},
        )
        body = assert_problem(reply, 409, "email_taken")
        assert body["details"] == {"email": "already registered"}
        assert User.select().count() == 1

    def test_username_is_taken_whatever_its_case(self, client, alice: Account):
        reply = client.post(
            REGISTER, json={"email": "new@example.com", "username": "ALICE", "password": PASSWORD}
        )
        body = assert_problem(reply, 409, "username_taken")
        assert body["details"] == {"username": "already registered"}
        assert User.select().count() == 1

    @pytest.mark.parametrize(
        ("change", "field"),
        [
            ({"password": "abc-12"}, "body.password"),  # 6 characters
            ({"password": "abc-123"}, "body.password"),  # 7 characters
            ({"email": "not-an-email"}, "body.email"),
            ({"email": "two@at@example.com"}, "body.email"),
            ({"username": "has space"}, "body.username"),
            ({"username": "ab"}, "body.username"),
            ({"role": "admin"}, "body.role"),  # unknown field: no self-promotion
            ({"is_active": True}, "body.is_active"),
            ({"email": None}, "body.email"),
        ],
    )
    def test_schema_violation_is_422_naming_the_field(self, client, change, field):
        body = {"email": "new@example.com", "username": "newbie", "password": PASSWORD, **change}
        reply = client.post(REGISTER, json=body)
        problem = assert_problem(reply, 422, "validation_error")
        assert list(problem["details"]) == [field]
        assert User.select().count() == 0

    @pytest.mark.parametrize("missing", ["email", "username", "password"])
    def test_missing_field_is_422_naming_it(self, client, missing):
        body = {"email": "new@example.com", "username": "newbie", "password": PASSWORD}
        del body[missing]
        problem = assert_problem(client.post(REGISTER, json=body), 422, "validation_error")
        assert problem["details"] == {f"body.{missing}": f"'{missing}' is a required property"}
        assert User.select().count() == 0

    def test_eight_character_password_is_long_enough(self, client):
        body = {"email": "new@example.com", "username": "newbie", "password": "abc-1234"}
        assert client.post(REGISTER, json=body).status_code == 201

    @pytest.mark.parametrize(
        ("password", "reason"),
        [
            ("abcdefghij", "must mix letters with digits or symbols"),
            ("1234567890", "must mix letters with digits or symbols"),
            ("JohnDoe99", "must differ from the username and email"),
            ("john.doe@example.com", "must differ from the username and email"),
            ("john.doe", "must differ from the username and email"),  # the email's local part
            ("aaaa1111", "must use at least 4 different characters"),
            ("password1", "is one of the most commonly used passwords"),
            ("Qwerty123", "is one of the most commonly used passwords"),
        ],
    )
    def test_weak_password_is_422_naming_the_password(self, client, password, reason):
        body = {"email": "john.doe@example.com", "username": "johndoe99", "password": password}
        problem = assert_problem(client.post(REGISTER, json=body), 422, "weak_password")
        assert problem["details"] == {"password": reason}
        assert User.select().count() == 0


class TestLogin:
    def test_username_and_password_get_a_token_pair(self, client, alice: Account, settings):
        reply = client.post(LOGIN, json={"username": "alice", "password": PASSWORD})
        assert reply.status_code == 200, reply.text
        body = reply.json()
        claims = assert_token_pair(body)
        service = TokenService(settings)
        verified = jwt.decode(
            body["access_token"],
            settings.secret_key,
            algorithms=["HS256"],
            audience=service.audience,
            issuer=service.issuer,
        )
        assert verified == claims
        assert (claims["sub"], claims["role"]) == (alice.id, "user")
        assert client.get(ME, headers=bearer(body["access_token"])).json()["id"] == alice.id

    def test_seed_000_example_logs_in_with_the_email_as_username(self, client):
        registration = {"email": "user@example.com", "username": "someone"}
        client.post(REGISTER, json={**registration, "password": "secure_password"})
        reply = client.post(
            LOGIN, json={"username": "user@example.com", "password": "secure_password"}
        )
        assert reply.status_code == 200, reply.text
        assert_token_pair(reply.json())
        # seed 000's Python client: set the header, then list agents
        client.headers["Authorization"] = f"Bearer {reply.json()['access_token']}"
        agents = client.get(AGENTS)
        assert agents.status_code == 200
        assert agents.json()["agents"] == []

    def test_seed_003_example_logs_in_with_email_and_password(self, client):
        user_id = client.post(REGISTER, json=SEED_REGISTRATION).json()["id"]
        reply = client.post(LOGIN, json={"email": "user@example.com", "password": "j0hn-s3cret"})
        assert reply.status_code == 200, reply.text
        assert assert_token_pair(reply.json())["sub"] == user_id

    def test_username_and_email_match_whatever_their_case(self, client, alice: Account):
        for identifier in ("ALICE", "Alice@Example.COM", " alice "):
            assert claims_of(login(client, identifier)["access_token"])["sub"] == alice.id

    def test_form_body_is_415_now_that_the_token_endpoint_takes_it(self, client, alice):
        reply = client.post(
            LOGIN, data={"username": "alice", "password": PASSWORD, "grant_type": "password"}
        )
        assert_problem(reply, 415, "unsupported_media_type")

    def test_unknown_user_and_wrong_password_get_the_same_reply(self, client, alice: Account):
        replies = [
            client.post(LOGIN, json={"username": "alice", "password": "wrong-pass-1"}),
            client.post(LOGIN, json={"username": "ghost", "password": "wrong-pass-1"}),
            client.post(LOGIN, json={"email": "ghost@example.com", "password": PASSWORD}),
        ]
        bodies = [assert_problem(reply, 401, "invalid_credentials") for reply in replies]
        assert len({body.pop("request_id") for body in bodies}) == 3
        assert bodies[0] == bodies[1] == bodies[2]
        assert bodies[0]["detail"] == "Incorrect username/email or password."
        assert len({reply.headers["www-authenticate"] for reply in replies}) == 1

    @pytest.mark.inprocess  # counts the server's password checks
    def test_unknown_user_costs_a_password_check_like_a_wrong_password(
        self, client, alice: Account, monkeypatch
    ):
        """No timing oracle: an unknown name still pays for one argon2 verification."""
        checks: list[str] = []
        real_verify = auth.verify_password

        def counting_verify(password_hash: str, password: str) -> bool:
            checks.append(password)
            return real_verify(password_hash, password)

        monkeypatch.setattr(auth, "verify_password", counting_verify)
        client.post(LOGIN, json={"username": "alice", "password": "wrong-pass-1"})
        client.post(LOGIN, json={"username": "ghost", "password": "ghost-pass-1"})
        assert checks == ["wrong-pass-1", "ghost-pass-1"]

    def test_disabled_account_is_403_account_disabled(self, client, alice: Account):
        User.update(is_active=False).where(User.id == alice.id).execute()
        tokens_before = RefreshToken.select().count()
        reply = client.post(LOGIN, json={"username": "alice", "password": PASSWORD})
        assert_problem(reply, 403, "account_disabled")
        assert RefreshToken.select().count() == tokens_before

    def test_disabled_account_with_a_wrong_password_does_not_reveal_it(
        self, client, alice: Account
    ):
        User.update(is_active=False).where(User.id == alice.id).execute()
        reply = client.post(LOGIN, json={"username": "alice", "password": "wrong-pass-1"})
        assert_problem(reply, 401, "invalid_credentials")

    def test_scopes_narrow_the_token(self, client, alice: Account):
        body = login(client, scopes=["agents:read"])
        assert_token_pair(body, ("agents:read",))

    @pytest.mark.parametrize("scope", ["admin", "agents:delete"])
    def test_scope_the_account_cannot_have_is_422(self, client, alice: Account, scope):
        tokens_before = RefreshToken.select().count()
        reply = client.post(
            LOGIN,
            json={"username": "alice", "password": PASSWORD, "scopes": ["agents:read", scope]},
        )
        problem = assert_problem(reply, 422, "invalid_scope")
        assert problem["details"] == {"scopes": f"not grantable: {scope}"}
        assert RefreshToken.select().count() == tokens_before

    def test_admin_gets_the_admin_scope_and_may_ask_for_it_alone(self, client, admin: Account):
        assert claims_of(admin.access_token)["scopes"] == list(ADMIN_SCOPES)
        assert claims_of(admin.access_token)["role"] == "admin"
        assert_token_pair(login(client, "root", scopes=["admin"]), ("admin",))

    def test_missing_username_and_email_is_422(self, client, alice: Account):
        reply = client.post(LOGIN, json={"password": PASSWORD})
        problem = assert_problem(reply, 422, "validation_error")
        assert list(problem["details"]) == ["body.username"]

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"username": "alice"}, "body.password"),
            ({"username": "alice", "password": PASSWORD, "remember": True}, "body.remember"),
            ({"username": "alice", "password": PASSWORD, "scopes": "agents:read"}, "body.scopes"),
        ],
    )
    def test_malformed_body_is_422_naming_the_field(self, client, alice: Account, body, field):
        problem = assert_problem(client.post(LOGIN, json=body), 422, "validation_error")
        assert list(problem["details"]) == [field]

    def test_login_records_last_login_at(self, client):
        user_id = client.post(REGISTER, json=SEED_REGISTRATION).json()["id"]
        assert User.get_by_id(user_id).last_login_at is None
        login(client, "johndoe", "j0hn-s3cret")
        last = User.get_by_id(user_id).last_login_at
        assert last is not None and abs(utcnow() - last) < timedelta(minutes=1)
        me = client.get(ME, headers=bearer(login(client, "johndoe", "j0hn-s3cret")["access_token"]))
        assert moment(me.json()["last_login_at"]) >= last.replace(tzinfo=UTC)

    def test_each_login_starts_its_own_token_family(self, client, alice: Account):
        second = login(client)
        assert row_of(second["refresh_token"]).family != row_of(alice.refresh_token).family
        assert row_of(second["refresh_token"]).user_id == alice.id


class TestAccessTokens:
    @pytest.mark.parametrize("path", [ME, AGENTS])
    def test_missing_token_is_401_with_www_authenticate(self, client, path):
        reply = client.get(path)
        assert_problem(reply, 401, "not_authenticated")
        assert reply.headers["www-authenticate"] == 'Bearer realm="cadre"'

    @pytest.mark.parametrize(
        "header",
        [
            "Bearer",
            # HTTP clients refuse to send a value ending in whitespace (servers strip it).
            pytest.param("Bearer ", marks=pytest.mark.inprocess),
            "Basic YWxpY2U6cHc=",
            "Token abc",
        ],
    )
    def test_header_without_a_bearer_token_is_401(self, client, alice: Account, header):
        reply = client.get(ME, headers={"Authorization": header})
        assert_problem(reply, 401, "not_authenticated")
        assert reply.headers["www-authenticate"].startswith("Bearer")

    @pytest.mark.parametrize("token", ["garbage", "a.b.c", "eyJhbGciOiJIUzI1NiJ9.e30."])
    def test_garbage_token_is_401_invalid_token(self, client, token):
        reply = client.get(ME, headers=bearer(token))
        assert_problem(reply, 401, "invalid_token")
        assert reply.headers["www-authenticate"].startswith("Bearer")

    def test_token_built_like_the_servers_own_is_accepted(self, client, settings, alice):
        # the baseline every forged token below departs from in one way only
        reply = client.get(ME, headers=bearer(forge(settings, alice)))
        assert reply.status_code == 200, reply.text
        assert reply.json()["id"] == alice.id

    @pytest.mark.parametrize(
        ("key", "algorithm", "claims"),
        [
            pytest.param(OTHER_KEY, "HS256", {}, id="signed-with-another-key"),
            pytest.param(None, "HS512", {}, id="hs512-when-hs256-is-pinned"),
            pytest.param(None, "HS384", {}, id="hs384-when-hs256-is-pinned"),
            pytest.param(None, "HS256", {"sub": None}, id="no-sub"),
            pytest.param(None, "HS256", {"aud": None}, id="no-aud"),
            pytest.param(None, "HS256", {"iss": None}, id="no-iss"),
            pytest.param(None, "HS256", {"exp": None}, id="no-exp"),
            pytest.param(None, "HS256", {"aud": "someone-else"}, id="wrong-audience"),
            pytest.param(None, "HS256", {"iss": "someone-else"}, id="wrong-issuer"),
            pytest.param(None, "HS256", {"role": "emperor"}, id="unknown-role"),
            pytest.param(None, "HS256", {"scopes": "agents:read"}, id="scopes-not-a-list"),
            pytest.param(None, "HS256", {"iat": int(time.time()) + 3600}, id="issued-in-future"),
        ],
    )
    def test_forged_or_misaddressed_token_is_401_invalid_token(
        self, client, settings, alice, key, algorithm, claims
    ):
        token = forge(settings, alice, key=key, algorithm=algorithm, **claims)
        for path in (ME, AGENTS):
            reply = client.get(path, headers=bearer(token))
            assert_problem(reply, 401, "invalid_token")
            assert reply.headers["www-authenticate"].startswith("Bearer")

    def test_expired_token_is_401_token_expired(self, client, settings, alice: Account):
        now = int(time.time())
        token = forge(settings, alice, iat=now - 7200, exp=now - 60)
        reply = client.get(ME, headers=bearer(token))
        body = assert_problem(reply, 401, "token_expired")
        assert body["detail"] == "The access token has expired."
        assert reply.headers["www-authenticate"].startswith("Bearer")

    def test_alg_none_token_is_401(self, client, settings, alice: Account):
        unsigned = jwt.encode(claims_of(forge(settings, alice)), None, algorithm="none")
        assert jwt.get_unverified_header(unsigned)["alg"] == "none"
        assert_problem(client.get(ME, headers=bearer(unsigned)), 401, "invalid_token")

    def test_server_pinned_to_hs512_refuses_hs256_tokens(self, make_client, make_settings):
        client = make_client(jwt_algorithm="HS512")
        account = register(client, "alice")
        assert jwt.get_unverified_header(account.access_token)["alg"] == "HS512"
        assert client.get(ME, headers=account.headers).status_code == 200
        downgraded = forge(make_settings(), account, algorithm="HS256")
        assert_problem(client.get(ME, headers=bearer(downgraded)), 401, "invalid_token")

    def test_agents_read_only_token_can_list_but_not_create_agents(self, client, alice: Account):
        narrow = bearer(login(client, scopes=["agents:read"])["access_token"])
        listing = client.get(AGENTS, headers=narrow)
        assert listing.status_code == 200, listing.text
        assert listing.json()["agents"] == []
        denied = client.post(AGENTS, json={"name": "coder"}, headers=narrow)
        body = assert_problem(denied, 403, "insufficient_scope")
        assert body["details"] == {"required_scopes": ["agents:write"]}
        assert client.get(AGENTS, headers=narrow).json()["agents"] == []
        # the same request with a full token is fine: the scope was the only obstacle
        assert client.post(AGENTS, json={"name": "coder"}, headers=alice.headers).status_code == 201


class TestToken:
    """The OAuth2 token endpoint: RFC 6749 §4.3 password grant, form-encoded."""

    @staticmethod
    def grant(client, **fields):
        return client.post(TOKEN, data={"grant_type": "password", **fields})

    def test_password_grant_gets_an_rfc6749_token_response_that_is_not_cached(
        self, client, alice: Account
    ):
        reply = self.grant(client, username="alice", password=PASSWORD)
        assert reply.status_code == 200, reply.text
        assert reply.headers["content-type"] == "application/json"
        assert reply.headers["cache-control"] == "no-store"
        assert reply.headers["pragma"] == "no-cache"
        assert assert_token_pair(reply.json())["sub"] == alice.id
        assert client.get(ME, headers=bearer(reply.json()["access_token"])).status_code == 200

    def test_client_credentials_and_unknown_parameters_are_ignored(self, client, alice):
        # what oauthlib / requests-oauthlib's LegacyApplicationClient send in the body
        reply = self.grant(
            client,
            username="alice@example.com",
            password=PASSWORD,
            client_id="swagger-ui",
            client_secret="anything",
            include_client_id="true",
        )
        assert reply.status_code == 200, reply.text
        assert assert_token_pair(reply.json())["sub"] == alice.id

    def test_client_authentication_by_basic_header_is_ignored(self, client, alice: Account):
        # RFC 6749 §2.3.1 client_secret_basic, as Swagger UI's Authorize dialog may send it
        reply = client.post(
            TOKEN,
            data={"grant_type": "password", "username": "alice", "password": PASSWORD},
            auth=("swagger-ui", "client-secret"),
        )
        assert reply.status_code == 200, reply.text
        assert assert_token_pair(reply.json())["sub"] == alice.id

    def test_space_separated_scope_narrows_the_token(self, client, alice: Account):
        reply = self.grant(
            client, username="alice", password=PASSWORD, scope="tools:read agents:read"
        )
        assert reply.status_code == 200, reply.text
        assert_token_pair(reply.json(), ("agents:read", "tools:read"))

    def test_refresh_token_from_the_token_endpoint_rotates(self, client, alice: Account):
        pair = self.grant(client, username="alice", password=PASSWORD).json()
        assert refresh(client, pair["refresh_token"]).status_code == 200

    @pytest.mark.parametrize("grant_type", ["client_credentials", "authorization_code", "x"])
    def test_other_grant_type_is_400_unsupported_grant_type(self, client, alice, grant_type):
        reply = client.post(
            TOKEN, data={"grant_type": grant_type, "username": "alice", "password": PASSWORD}
        )
        problem = assert_problem(reply, 400, "unsupported_grant_type")
        assert problem["error_description"] == problem["message"]

    def test_wrong_password_is_400_invalid_grant(self, client, alice: Account):
        problem = assert_problem(
            self.grant(client, username="alice", password="wrong-pass-1"), 400, "invalid_grant"
        )
        assert problem["error_description"] == "Incorrect username/email or password."

    def test_disabled_account_is_400_invalid_grant(self, client, alice: Account):
        User.update(is_active=False).where(User.id == alice.id).execute()
        reply = self.grant(client, username="alice", password=PASSWORD)
        assert_problem(reply, 400, "invalid_grant")

    def test_scope_the_account_cannot_have_is_400_invalid_scope(self, client, alice: Account):
        reply = self.grant(client, username="alice", password=PASSWORD, scope="agents:read admin")
        assert_problem(reply, 400, "invalid_scope")

    @pytest.mark.parametrize("missing", ["grant_type", "username", "password"])
    def test_missing_parameter_is_422_naming_it(self, client, alice: Account, missing):
        fields = {"grant_type": "password", "username": "alice", "password": PASSWORD}
        del fields[missing]
        problem = assert_problem(client.post(TOKEN, data=fields), 422, "validation_error")
        assert list(problem["details"]) == [f"body.{missing}"]

    def test_json_body_is_415(self, client, alice: Account):
        reply = client.post(
            TOKEN, json={"grant_type": "password", "username": "alice", "password": PASSWORD}
        )
        assert_problem(reply, 415, "unsupported_media_type")

    def test_bearer_scheme_points_oauth2_clients_at_the_token_endpoint(self):
        from cadre.spec_docs import authored_spec

        flow = authored_spec()["components"]["securitySchemes"]["bearer"]["flows"]["password"]
        assert (flow["tokenUrl"], flow["refreshUrl"]) == (TOKEN, REFRESH)


class TestRefresh:
    def test_refresh_returns_a_new_pair_whose_access_token_works(self, client, alice: Account):
        reply = refresh(client, alice.refresh_token)
        assert reply.status_code == 200, reply.text
        body = reply.json()
        claims = assert_token_pair(body)
        assert claims["sub"] == alice.id
        assert body["refresh_token"] != alice.refresh_token
        assert body["access_token"] != alice.access_token
        me = client.get(ME, headers=bearer(body["access_token"]))
        assert me.status_code == 200 and me.json()["id"] == alice.id
        old, new = row_of(alice.refresh_token), row_of(body["refresh_token"])
        assert old.used_at is not None and old.revoked_at is None
        assert (new.family, new.used_at, new.revoked_at) == (old.family, None, None)

    def test_seed_000_example_body_refreshes(self, client, alice: Account):
        reply = client.post(
            REFRESH,
            headers={"Content-Type": "application/json"},
            content=f'{{\n  "refresh_token": "{alice.refresh_token}"\n}}',
        )
        assert reply.status_code == 200, reply.text
        assert_token_pair(reply.json())

    def test_rotated_refresh_token_is_refused(self, client, alice: Account):
        assert refresh(client, alice.refresh_token).status_code == 200
        reply = refresh(client, alice.refresh_token)
        assert_problem(reply, 401, "refresh_token_reused")
        assert reply.headers["www-authenticate"].startswith("Bearer")

    def test_refresh_token_reuse_revokes_family(self, client, alice: Account):
        second = refresh(client, alice.refresh_token).json()
        newest = refresh(client, second["refresh_token"]).json()
        assert all(row.revoked_at is None for row in family_rows(alice.refresh_token))

        assert_problem(refresh(client, alice.refresh_token), 401, "refresh_token_reused")

        rows = family_rows(alice.refresh_token)
        assert len(rows) == 3
        assert all(row.revoked_at is not None for row in rows)
        # the legitimate holder's newest token dies with the replayed one
        assert_problem(refresh(client, newest["refresh_token"]), 401, "invalid_refresh_token")

    def test_reuse_leaves_an_independent_login_alone(self, client, alice: Account):
        other = login(client)
        refresh(client, alice.refresh_token)
        assert_problem(refresh(client, alice.refresh_token), 401, "refresh_token_reused")
        assert row_of(other["refresh_token"]).revoked_at is None
        reply = refresh(client, other["refresh_token"])
        assert reply.status_code == 200, reply.text

    def test_refresh_keeps_the_scopes_of_a_narrowed_login(self, client, alice: Account):
        narrow = login(client, scopes=["agents:read"])
        body = refresh(client, narrow["refresh_token"]).json()
        assert_token_pair(body, ("agents:read",))
        denied = client.post(AGENTS, json={"name": "x"}, headers=bearer(body["access_token"]))
        assert_problem(denied, 403, "insufficient_scope")
        again = refresh(client, body["refresh_token"]).json()  # and over further rotations
        assert_token_pair(again, ("agents:read",))

    def test_refresh_token_scope_suffix_cannot_be_widened(self, client, alice: Account):
        narrow = login(client, scopes=["agents:read"])["refresh_token"]
        random_part, _, scopes = narrow.rpartition(".")
        assert scopes == "agents:read"
        widened = f"{random_part}.{','.join(USER_SCOPES)}"
        assert_problem(refresh(client, widened), 401, "invalid_refresh_token")
        assert row_of(narrow).used_at is None

    def test_refresh_drops_scopes_the_role_no_longer_has(self, client, admin: Account):
        User.update(role="user").where(User.id == admin.id).execute()
        body = refresh(client, admin.refresh_token).json()
        claims = assert_token_pair(body, USER_SCOPES)
        assert claims["role"] == "user"

    @pytest.mark.parametrize("token", ["nope", "x" * 64, "eyJhbGciOiJIUzI1NiJ9.e30.sig"])
    def test_unknown_refresh_token_is_401(self, client, alice: Account, token):
        assert_problem(refresh(client, token), 401, "invalid_refresh_token")

    def test_access_token_is_not_a_refresh_token(self, client, alice: Account):
        assert_problem(refresh(client, alice.access_token), 401, "invalid_refresh_token")

    def test_expired_refresh_token_is_401(self, client, alice: Account):
        RefreshToken.update(expires_at=utcnow() - timedelta(seconds=1)).where(
            RefreshToken.user == alice.id
        ).execute()
        assert_problem(refresh(client, alice.refresh_token), 401, "invalid_refresh_token")
        assert row_of(alice.refresh_token).used_at is None

    def test_refresh_token_lives_for_the_configured_days(self, client, alice: Account):
        row = row_of(alice.refresh_token)
        assert abs(row.expires_at - row.created_at - timedelta(days=30)) < timedelta(seconds=5)

    def test_disabled_user_cannot_refresh(self, client, alice: Account):
        User.update(is_active=False).where(User.id == alice.id).execute()
        assert_problem(refresh(client, alice.refresh_token), 401, "invalid_refresh_token")
        assert all(row.revoked_at is not None for row in family_rows(alice.refresh_token))
        User.update(is_active=True).where(User.id == alice.id).execute()
        assert_problem(refresh(client, alice.refresh_token), 401, "invalid_refresh_token")

    @pytest.mark.parametrize(
        ("body", "field"),
        [({}, "body.refresh_token"), ({"refresh_token": ""}, "body.refresh_token")],
    )
    def test_malformed_body_is_422(self, client, body, field):
        problem = assert_problem(client.post(REFRESH, json=body), 422, "validation_error")
        assert list(problem["details"]) == [field]


class TestLogout:
    def test_logout_revokes_the_refresh_token_and_its_family(self, client, alice: Account):
        newest = refresh(client, alice.refresh_token).json()["refresh_token"]
        reply = client.post(LOGOUT, json={"refresh_token": newest}, headers=alice.headers)
        assert reply.status_code == 204
        assert reply.content == b""
        rows = family_rows(newest)
        assert len(rows) == 2
        assert all(row.revoked_at is not None for row in rows)
        assert_problem(refresh(client, newest), 401, "invalid_refresh_token")

    def test_logout_leaves_the_callers_other_logins_alone(self, client, alice: Account):
        other = login(client)["refresh_token"]
        reply = client.post(
            LOGOUT, json={"refresh_token": alice.refresh_token}, headers=alice.headers
        )
        assert reply.status_code == 204
        assert row_of(other).revoked_at is None
        assert refresh(client, other).status_code == 200

    def test_logout_without_body_is_204_and_revokes_nothing(self, client, alice: Account):
        reply = client.post(LOGOUT, headers=alice.headers)
        assert reply.status_code == 204
        assert reply.content == b""
        assert RefreshToken.select().where(RefreshToken.revoked_at.is_null(False)).count() == 0
        assert refresh(client, alice.refresh_token).status_code == 200

    def test_logout_with_an_unknown_refresh_token_is_204(self, client, alice: Account):
        reply = client.post(LOGOUT, json={"refresh_token": "nope"}, headers=alice.headers)
        assert reply.status_code == 204
        assert row_of(alice.refresh_token).revoked_at is None

    def test_logout_needs_a_bearer_token(self, client, alice: Account):
        reply = client.post(LOGOUT, json={"refresh_token": alice.refresh_token})
        assert_problem(reply, 401, "not_authenticated")
        assert reply.headers["www-authenticate"].startswith("Bearer")
        assert row_of(alice.refresh_token).revoked_at is None

    def test_logout_does_not_revoke_another_users_refresh_token(self, client, alice, bob):
        reply = client.post(
            LOGOUT, json={"refresh_token": alice.refresh_token}, headers=bob.headers
        )
        assert reply.status_code == 204
        assert row_of(alice.refresh_token).revoked_at is None
        assert refresh(client, alice.refresh_token).status_code == 200

    def test_malformed_body_is_422(self, client, alice: Account):
        reply = client.post(LOGOUT, json={"token": alice.refresh_token}, headers=alice.headers)
        problem = assert_problem(reply, 422, "validation_error")
        assert list(problem["details"]) == ["body.token"]
        assert row_of(alice.refresh_token).revoked_at is None


class TestMe:
    def test_me_returns_the_caller(self, client, alice: Account, bob: Account):
        reply = client.get(ME, headers=alice.headers)
        assert reply.status_code == 200, reply.text
        body = reply.json()
        stored = User.get_by_id(alice.id)
        assert moment(body.pop("created_at")) == stored.created_at.replace(tzinfo=UTC)
        assert moment(body.pop("last_login_at")) == stored.last_login_at.replace(tzinfo=UTC)
        assert body == {
            "id": alice.id,
            "email": "alice@example.com",
            "username": "alice",
            "full_name": None,
            "role": "user",
            "is_active": True,
        }
        assert client.get(ME, headers=bob.headers).json()["id"] == bob.id

    def test_me_without_a_token_is_401(self, client):
        reply = client.get(ME)
        assert_problem(reply, 401, "not_authenticated")
        assert reply.headers["www-authenticate"].startswith("Bearer")

    def test_me_for_a_deleted_account_is_401(self, client, alice: Account):
        User.delete().where(User.id == alice.id).execute()
        assert_problem(client.get(ME, headers=alice.headers), 401, "account_disabled")


class TestDisabledAccounts:
    @pytest.mark.inprocess  # shortens the server's recheck interval
    def test_access_tokens_stop_working_once_the_account_is_disabled(
        self, client, alice, monkeypatch
    ):
        from cadre import auth

        monkeypatch.setattr(auth, "ACTIVE_RECHECK_SECONDS", 0.0)
        assert client.get("/api/v1/auth/me", headers=alice.headers).status_code == 200
        User.update(is_active=False).where(User.id == alice.id).execute()
        reply = client.get("/api/v1/agents", headers=alice.headers)
        assert_problem(reply, 401, "account_disabled")
        User.update(is_active=True).where(User.id == alice.id).execute()
        assert client.get("/api/v1/agents", headers=alice.headers).status_code == 200

    @pytest.mark.inprocess  # counts the server's queries
    def test_the_active_check_is_cached_between_requests(self, client, alice):
        from playhouse.test_utils import count_queries

        client.get("/api/v1/auth/me", headers=alice.headers)
        with count_queries() as counter:
            client.get("/api/v1/auth/me", headers=alice.headers)
        assert counter.count == 1  # the user row /me reads, and no activity check


class TestRevocation:
    """Access tokens name their login (``fam``) and die with it."""

    def test_access_token_names_its_login_and_keeps_it_over_refreshes(self, client, alice):
        first = login(client)
        family = row_of(first["refresh_token"]).family
        assert claims_of(first["access_token"])["fam"] == family
        second = refresh(client, first["refresh_token"]).json()
        assert claims_of(second["access_token"])["fam"] == family

    def test_logout_revokes_the_access_tokens_of_that_login_only(self, client, alice):
        gone, kept = login(client), login(client)
        reply = client.post(
            LOGOUT, json={"refresh_token": gone["refresh_token"]}, headers=alice.headers
        )
        assert reply.status_code == 204
        assert_problem(client.get(ME, headers=bearer(gone["access_token"])), 401, "token_revoked")
        assert client.get(ME, headers=bearer(kept["access_token"])).status_code == 200

    def test_refresh_reuse_revokes_every_access_token_of_the_login(self, client, alice):
        first = login(client)
        second = refresh(client, first["refresh_token"]).json()
        assert_problem(refresh(client, first["refresh_token"]), 401, "refresh_token_reused")
        for access in (first["access_token"], second["access_token"]):
            assert_problem(client.get(ME, headers=bearer(access)), 401, "token_revoked")

    def test_revocation_by_another_worker_is_seen_at_the_next_recheck(self, settings, alice):
        """Another process revoked the login: only the database knows."""
        service = TokenService(settings)
        family = row_of(alice.refresh_token).family
        token = service.issue_access(alice.id, "user", USER_SCOPES, family)
        assert service.decode(token)["sub"] == alice.id
        RefreshToken.update(revoked_at=utcnow()).execute()
        assert service.decode(token)["sub"] == alice.id  # read again after a few seconds
        service._live[family] -= auth.ACTIVE_RECHECK_SECONDS + 1  # ... which have passed
        with pytest.raises(auth.Unauthorized) as refused:
            service.decode(token)
        assert refused.value.error == "token_revoked"
        other = TokenService(settings)  # a worker that saw the login live a moment ago
        other._live[family] = time.monotonic()
        assert other.decode(token)["sub"] == alice.id
        with pytest.raises(auth.Unauthorized):  # unless it asks the database now
            other.decode(token, fresh=True)

    def test_token_without_a_family_works_until_it_expires(self, client, settings, alice):
        """Tokens issued before ``fam`` existed: nothing names their login."""
        old = forge(settings, alice)
        RefreshToken.update(revoked_at=utcnow()).execute()
        assert client.get(ME, headers=bearer(old)).status_code == 200

    def test_family_must_be_a_string(self, client, settings, alice):
        token = forge(settings, alice, fam=["x"])
        assert_problem(client.get(ME, headers=bearer(token)), 401, "invalid_token")


class TestLoginThrottle:
    def test_sixth_attempt_after_five_failures_is_429_even_with_the_right_password(
        self, client, alice
    ):
        for _ in range(5):
            wrong = client.post(LOGIN, json={"username": "alice", "password": "wrong-pass-1"})
            assert_problem(wrong, 401, "invalid_credentials")
        reply = client.post(LOGIN, json={"username": "alice@example.com", "password": PASSWORD})
        body = assert_problem(reply, 429, "too_many_login_attempts")
        assert body["retry_after"] == int(reply.headers["retry-after"])
        assert 0 < body["retry_after"] <= 300

    def test_zero_failures_switches_the_throttle_off(self, make_client):
        client = make_client(login_max_failures=0)
        register(client, "alice")
        for _ in range(8):
            wrong = client.post(LOGIN, json={"username": "alice", "password": "wrong-pass-1"})
            assert_problem(wrong, 401, "invalid_credentials")
        assert login(client)["access_token"]


def test_login_rehashes_a_password_stored_with_other_argon2_costs(client, settings):
    """A hash made with older (here: heavier) parameters still verifies, and the login
    stores it again with the configured ones (OWASP's minimum by default)."""
    from argon2 import PasswordHasher

    account = register(client, "rehash")
    old = PasswordHasher(time_cost=3, memory_cost=64 * 1024, parallelism=4).hash(account.password)
    User.update(password_hash=old).where(User.id == account.id).execute()
    login = {"username": "rehash", "password": account.password}
    assert client.post("/api/v1/auth/login", json=login).status_code == 200
    stored = User.get_by_id(account.id).password_hash
    assert stored != old and verify_password(stored, account.password)
    assert "m=19456,t=2,p=1" in stored and "m=65536,t=3,p=4" in old
    assert client.post("/api/v1/auth/login", json=login).status_code == 200
    assert User.get_by_id(account.id).password_hash == stored  # already current: kept
