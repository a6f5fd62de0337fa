"""Accounts and tokens."""

from __future__ import annotations

from typing import Any

from cadre import auth
from cadre.auth import TokenService
from cadre.connexion.binding import Reply
from cadre.db_calls import DatabaseCalls
from cadre.errors import AccountDisabled, BadRequest, Unauthorized, ValidationFailed
from models_gen.api import User as UserReply
from storage import users

# RFC 6749 5.1: replies that carry tokens must not be stored by any cache.
TOKEN_REPLY_HEADERS = {
    "Content-Type": "application/json",
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
}


def token_reply(tokens: dict[str, Any]) -> tuple[dict[str, Any], int, dict[str, str]]:
    """A 200 carrying tokens, marked uncacheable: every endpoint that issues tokens uses it."""
    return tokens, 200, TOKEN_REPLY_HEADERS


def _user_reply(user: users.User) -> UserReply:
    return UserReply.model_validate(user, from_attributes=True)


async def register_user(body: dict, tokens: TokenService, db: DatabaseCalls) -> Reply:
    auth.check_password_strength(body["password"], username=body["username"], email=body["email"])
    password_hash = await tokens.hash_password(body["password"])  # off the event loop
    user = await db(
        users.create_user,
        email=body["email"],
        username=body["username"],
        full_name=body.get("full_name"),
        password_hash=password_hash,
    )
    return _user_reply(user), 201


async def login(body: dict, tokens: TokenService) -> tuple[dict[str, Any], int, dict[str, str]]:
    identifier = body.get("username") or body.get("email")
    if identifier is None:
        raise ValidationFailed(
            "Send a username or an email with the password.",
            details={"body.username": "required unless email is given"},
        )
    return token_reply(await tokens.login(identifier, body["password"], body.get("scopes")))


def _oauth_error(error: str, description: str) -> BadRequest:
    """An RFC 6749 §5.2 error (``error``, ``error_description``) that is also a problem."""
    return BadRequest(description, error=error, extra={"error_description": description})


async def create_token(
    body: dict, tokens: TokenService
) -> tuple[dict[str, Any], int, dict[str, str]]:
    """RFC 6749 §4.3 password grant; parameters it does not name (client_id, …) are ignored."""
    if body["grant_type"] != "password":
        raise _oauth_error("unsupported_grant_type", "Only grant_type=password is supported.")
    scopes = body["scope"].split() if body.get("scope") else None
    try:
        pair = await tokens.login(body["username"], body["password"], scopes)
    except (Unauthorized, AccountDisabled) as exc:
        raise _oauth_error("invalid_grant", exc.message) from exc
    except ValidationFailed as exc:
        if exc.error != "invalid_scope":
            raise
        raise _oauth_error("invalid_scope", exc.message) from exc
    return token_reply(pair)


def refresh_token(body: dict, tokens: TokenService) -> tuple[dict[str, Any], int, dict[str, str]]:
    return token_reply(tokens.refresh(body["refresh_token"]))


def logout(user: str, tokens: TokenService, body: dict | None = None) -> tuple[None, int]:
    tokens.logout((body or {}).get("refresh_token"), user)
    return None, 204


def get_me(user: str) -> Reply:
    account = users.get_user(user)
    if account is None:
        raise Unauthorized("The account behind this token no longer exists.", error="invalid_token")
    return _user_reply(account), 200
