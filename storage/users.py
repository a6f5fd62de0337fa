"""Accounts and their refresh tokens."""

from __future__ import annotations

from datetime import datetime

import peewee

from cadre.errors import Conflict
from storage.db import BaseModel, database
from storage.fields import UTCDateTimeField
from storage.ids import new_id, utcnow

ROLES = ("user", "premium", "admin")


class User(BaseModel):
    id = peewee.CharField(primary_key=True, max_length=40)
    email = peewee.CharField(max_length=254, unique=True)
    username = peewee.CharField(max_length=64, unique=True)
    full_name = peewee.CharField(max_length=200, null=True)
    password_hash = peewee.CharField(max_length=255)
    role = peewee.CharField(max_length=16, default="user")
    is_active = peewee.BooleanField(default=True)
    created_at = UTCDateTimeField(default=utcnow)
    last_login_at = UTCDateTimeField(null=True)


class RefreshToken(BaseModel):
    """One issued refresh token; tokens rotated from one login share a ``family``."""

    id = peewee.CharField(primary_key=True, max_length=40)
    user = peewee.ForeignKeyField(User, backref="refresh_tokens", on_delete="CASCADE")
    family = peewee.CharField(max_length=40, index=True)
    token_hash = peewee.CharField(max_length=64, unique=True)
    expires_at = UTCDateTimeField()
    created_at = UTCDateTimeField(default=utcnow)
    used_at = UTCDateTimeField(null=True)
    revoked_at = UTCDateTimeField(null=True)


def create_user(
    *, email: str, username: str, password_hash: str, full_name: str | None, role: str = "user"
) -> User:
    """Insert a user; 409 when the email or username is taken (case-insensitively)."""
    email = email.strip().lower()
    with database.atomic():
        taken = (
            User.select(User.email, User.username)
            .where((User.email == email) | (peewee.fn.LOWER(User.username) == username.lower()))
            .first()
        )
        if taken is not None:
            field = "email" if taken.email == email else "username"
            raise Conflict(
                f"That {field} is already registered.",
                error=f"{field}_taken",
                details={field: "already registered"},
            )
        try:
            return User.create(
                id=new_id("usr"),
                email=email,
                username=username,
                full_name=full_name,
                password_hash=password_hash,
                role=role,
            )
        except peewee.IntegrityError as exc:  # lost a race with a concurrent registration
            raise Conflict("That email or username is already registered.") from exc


def find_login(identifier: str) -> User | None:
    """The user whose username or email is ``identifier``."""
    ident = identifier.strip()
    return (
        User.select()
        .where((User.email == ident.lower()) | (peewee.fn.LOWER(User.username) == ident.lower()))
        .first()
    )


def get_user(user_id: str) -> User | None:
    return User.get_or_none(User.id == user_id)


def is_active(user_id: str) -> bool:
    """True for an existing, enabled account."""
    return bool(User.select(User.is_active).where(User.id == user_id).scalar())


def inactive_among(user_ids: set[str]) -> set[str]:
    """Those of ``user_ids`` whose accounts are disabled or gone, in one query."""
    if not user_ids:
        return set()
    active = User.select(User.id).where(User.id.in_(list(user_ids)) & (User.is_active == True))  # noqa: E712
    return set(user_ids) - {user.id for user in active}


def set_password_hash(user: User, password_hash: str) -> None:
    User.update(password_hash=password_hash).where(User.id == user.id).execute()


def touch_login(user: User) -> None:
    User.update(last_login_at=utcnow()).where(User.id == user.id).execute()


def store_refresh_token(user_id: str, family: str, token_hash: str, expires_at: datetime) -> None:
    RefreshToken.create(
        id=new_id("rt"), user=user_id, family=family, token_hash=token_hash, expires_at=expires_at
    )


def find_refresh_token(token_hash: str) -> RefreshToken | None:
    return RefreshToken.get_or_none(RefreshToken.token_hash == token_hash)


def mark_refresh_used(token: RefreshToken) -> bool:
    """Consume a refresh token once; False if someone already used or revoked it."""
    updated = (
        RefreshToken.update(used_at=utcnow())
        .where(
            (RefreshToken.id == token.id)
            & RefreshToken.used_at.is_null()
            & RefreshToken.revoked_at.is_null()
        )
        .execute()
    )
    return updated == 1


def revoke_family(family: str) -> None:
    (
        RefreshToken.update(revoked_at=utcnow())
        .where((RefreshToken.family == family) & RefreshToken.revoked_at.is_null())
        .execute()
    )


def family_revoked(family: str) -> bool:
    """True once the login ``family`` was revoked (logout, reuse): one indexed lookup."""
    return (
        RefreshToken.select(RefreshToken.id)
        .where((RefreshToken.family == family) & RefreshToken.revoked_at.is_null(False))
        .exists()
    )
