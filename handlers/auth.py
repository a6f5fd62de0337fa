"""Accounts and tokens."""

from __future__ import annotations

from cadre import auth, runtime
from cadre.binding import Reply
from cadre.errors import AccountDisabled, BadRequest, Unauthorized, ValidationFailed
from models_gen.api import User as UserReply
from storage import users
from storage.ids import aware


def _user_reply(user: users.User) -> UserReply:
    return UserReply(
        id=user.id,
        email=user.email,
        username=user.username,
        full_name=user.full_name,
        role=user.role,
        is_active=user.is_active,
        created_at=aware(user.created_at),
        last_login_at=aware(user.last_login_at),
    )


async def register_user(body: dict) -> Reply:
    auth.check_password_strength(body["password"], username=body["username"], email=body["email"])
    user = users.create_user(
        email=body["email"],
        username=body["username"],
        full_name=body.get("full_name"),
        password_hash=auth.hash_password(body["password"]),
    )
    return _user_reply(user), 201


async def login(body: dict) -> Reply:
    identifier = body.get("username") or body.get("email")
    if identifier is None:
        raise ValidationFailed(
            "Send a username or an email with the password.",
            details={"body.username": "required unless email is given"},
        )
    return runtime.current().tokens.login(identifier, body["password"], body.get("scopes")), 200


def _oauth_error(error: str, description: str) -> BadRequest:
    """An RFC 6749 §5.2 error (``error``, ``error_description``) that is also a problem."""
    return BadRequest(description, error=error, extra={"error_description": description})


async def create_token(body: dict) -> tuple[dict, int, dict[str, str]]:
    """RFC 6749 §4.3 password grant; parameters it does not name (client_id, …) are ignored."""
    if body["grant_type"] != "password":
        raise _oauth_error("unsupported_grant_type", "Only grant_type=password is supported.")
    scopes = body["scope"].split() if body.get("scope") else None
    try:
        pair = runtime.current().tokens.login(body["username"], body["password"], scopes)
    except (Unauthorized, AccountDisabled) as exc:
        raise _oauth_error("invalid_grant", exc.message) from exc
    except ValidationFailed as exc:
        if exc.error != "invalid_scope":
            raise
        raise _oauth_error("invalid_scope", exc.message) from exc
    headers = {
        "Content-Type": "application/json",
        "Cache-Control": "no-store",
        "Pragma": "no-cache",
    }
    return pair, 200, headers


async def refresh_token(body: dict) -> Reply:
    return runtime.current().tokens.refresh(body["refresh_token"]), 200


async def logout(user: str, body: dict | None = None) -> tuple[None, int]:
    runtime.current().tokens.logout((body or {}).get("refresh_token"), user)
    return None, 204


async def get_me(user: str) -> Reply:
    account = users.get_user(user)
    if account is None:
        raise Unauthorized("The account behind this token no longer exists.", error="invalid_token")
    return _user_reply(account), 200
