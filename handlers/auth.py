"""Accounts and tokens."""

from __future__ import annotations

from cadre import auth
from cadre.auth import TokenService
from cadre.connexion.binding import Reply
from cadre.errors import Unauthorized, ValidationFailed
from models_gen.api import User as UserReply
from storage import users


def _user_reply(user: users.User) -> UserReply:
    return UserReply.model_validate(user, from_attributes=True)


async def register_user(body: dict) -> Reply:
    auth.check_password_strength(body["password"], username=body["username"], email=body["email"])
    user = users.create_user(
        email=body["email"],
        username=body["username"],
        full_name=body.get("full_name"),
        password_hash=auth.hash_password(body["password"]),
    )
    return _user_reply(user), 201


async def login(body: dict, tokens: TokenService) -> Reply:
    identifier = body.get("username") or body.get("email")
    if identifier is None:
        raise ValidationFailed(
            "Send a username or an email with the password.",
            details={"body.username": "required unless email is given"},
        )
    scopes = body.get("scopes")
    if scopes is None and body.get("scope"):  # the OAuth2 password flow's form field
        scopes = body["scope"].split()
    return tokens.login(identifier, body["password"], scopes), 200


async def refresh_token(body: dict, tokens: TokenService) -> Reply:
    return tokens.refresh(body["refresh_token"]), 200


async def logout(user: str, tokens: TokenService, body: dict | None = None) -> tuple[None, int]:
    tokens.logout((body or {}).get("refresh_token"), user)
    return None, 204


async def get_me(user: str) -> Reply:
    account = users.get_user(user)
    if account is None:
        raise Unauthorized("The account behind this token no longer exists.", error="invalid_token")
    return _user_reply(account), 200
