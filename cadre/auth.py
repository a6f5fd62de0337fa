"""Passwords, access tokens (JWT) and rotating refresh tokens.

Access tokens are short-lived HS* JWTs checked without a database hit; refresh
tokens are random strings stored hashed. Each login starts a token *family*;
presenting a refresh token that was already rotated revokes the whole family,
since only a thief or a replay would do that. A refresh token carries the scopes
its login granted, so rotating it never widens a narrowed login.

Access tokens carry their family (``fam``): once the family is revoked (logout, a
reused refresh token) they are refused too, within ``ACTIVE_RECHECK_SECONDS``, by every
worker, since the check reads the revocation from the database (once per family every
few seconds, cached). Tokens issued before ``fam`` existed work until they expire.

Password hashing (argon2: tens of MiB and tens of milliseconds each) runs in a small
thread pool of its own, never on the event loop, at most
``CADRE_MAX_CONCURRENT_PASSWORD_HASHES`` at once per worker.
"""

from __future__ import annotations

import asyncio
import functools
import gzip
import hashlib
import math
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from cadre.db_calls import DatabaseCalls
from cadre.errors import (
    AccountDisabled,
    Forbidden,
    InsufficientScope,
    Unauthorized,
    ValidationFailed,
)
from cadre.login_throttle import LoginThrottle
from cadre.settings import Settings
from storage import users
from storage.ids import new_id, utcnow

USER_SCOPES = (
    "agents:read",
    "agents:write",
    "executions:read",
    "executions:write",
    "tools:read",
    "tools:execute",
    "costs:read",
    "sessions:read",
    "sessions:write",
    # seed 002's
    "supervisor:read",
    "supervisor:write",
    "jobs:read",
    "jobs:write",
    "resources:read",
    "resources:write",
)
ADMIN_SCOPES = (*USER_SCOPES, "admin")

ACTIVE_RECHECK_SECONDS = 5.0  # how long a disabled account's or revoked login's tokens still work

# 20,000 common passwords (lower case), as Django ships them: see cadre/wordlists/README.
COMMON_PASSWORDS_FILE = Path(__file__).parent / "wordlists" / "common-passwords.txt.gz"


def password_hasher(settings: Settings) -> PasswordHasher:
    """argon2id with the settings' cost (default: OWASP's minimum, 19 MiB, t=2, p=1).

    A stored hash carries its own parameters, so changing them never locks anyone
    out: older hashes still verify and are upgraded at the next login.
    """
    return PasswordHasher(
        time_cost=settings.argon2_time_cost,
        memory_cost=settings.argon2_memory_kib,
        parallelism=settings.argon2_parallelism,
    )


def hash_password(password: str, hasher: PasswordHasher) -> str:
    return hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches; the parameters are read from the hash itself."""
    try:
        return PasswordHasher().verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def check_password_strength(password: str, *, username: str, email: str) -> None:
    """Refuse passwords that are easy to guess (length is enforced by the spec)."""
    problems = []
    if password.isalpha() or password.isdigit():
        problems.append("must mix letters with digits or symbols")
    lowered = password.lower()
    if lowered in {username.lower(), email.lower(), email.split("@")[0].lower()}:
        problems.append("must differ from the username and email")
    if len(set(password)) < 4:
        problems.append("must use at least 4 different characters")
    if not problems and lowered in common_passwords():
        problems.append("is one of the most commonly used passwords")
    if problems:
        raise ValidationFailed(
            "The password is too weak: " + "; ".join(problems) + ".",
            error="weak_password",
            details={"password": "; ".join(problems)},
        )


@functools.cache
def common_passwords() -> frozenset[str]:
    """The common-password list, read once (NIST SP 800-63B 3.1.1.2: refuse known passwords)."""
    with gzip.open(COMMON_PASSWORDS_FILE, "rt", encoding="utf-8") as handle:
        return frozenset(line.strip().lower() for line in handle if line.strip())


def scopes_for(role: str) -> tuple[str, ...]:
    return ADMIN_SCOPES if role == "admin" else USER_SCOPES


class TokenService:
    """Issues and checks tokens with the settings' key, algorithm, issuer and audience."""

    def __init__(self, settings: Settings, db: DatabaseCalls | None = None) -> None:
        """``db``: the app's, so that token reads share its turn budget on SQLite."""
        self.key = settings.signing_key()
        self.algorithm = settings.jwt_algorithm
        self.issuer = settings.jwt_issuer
        self.audience = settings.jwt_audience
        self.access_ttl = settings.jwt_expire_minutes * 60
        self.refresh_ttl = timedelta(days=settings.refresh_expire_days)
        self._cache: dict[str, dict[str, Any]] = {}
        self._active: dict[str, float] = {}  # user id -> when it was last seen active
        self._live: dict[str, float] = {}  # token family -> when it was last seen unrevoked
        self._revoked: dict[str, None] = {}  # families known revoked (never undone), bounded
        self.db = db or DatabaseCalls(settings.effective_database_url)
        self.hasher = password_hasher(settings)
        # An unknown user's login costs what a real one does: no timing oracle.
        self._dummy_hash = hash_password("cadre-timing-equaliser", self.hasher)
        self._hashing = ThreadPoolExecutor(
            settings.max_concurrent_password_hashes, thread_name_prefix="cadre-argon2"
        )
        self.throttle = LoginThrottle(
            settings.redis_url,
            max_failures=settings.login_max_failures,
            window=settings.login_lockout_seconds,
        )

    async def aclose(self) -> None:
        await self.throttle.aclose()
        self._hashing.shutdown(wait=False)

    async def hash_password(self, password: str) -> str:
        """``hash_password`` off the event loop, in the capped pool."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._hashing, lambda: hash_password(password, self.hasher)
        )

    async def verify_password(self, password_hash: str, password: str) -> bool:
        """``verify_password`` off the event loop, in the capped pool."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._hashing, lambda: verify_password(password_hash, password)
        )

    def issue_access(
        self, user_id: str, role: str, scopes: tuple[str, ...], family: str | None = None
    ) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "sub": user_id,
            "role": role,
            "scopes": list(scopes),
            "iat": now,
            "exp": now + self.access_ttl,
            "iss": self.issuer,
            "aud": self.audience,
            "jti": secrets.token_hex(8),
        }
        if family is not None:
            claims["fam"] = family
        return jwt.encode(claims, self.key, algorithm=self.algorithm)

    def decode(self, token: str, *, fresh: bool = False) -> dict[str, Any]:
        """Verified claims of ``token``; 401 for anything forged, expired or malformed,
        and for the tokens of an account that was disabled or of a login that was revoked
        (within a few seconds).

        Verified claims are cached until they expire: decoding is a measurable
        share of every request, and a token's signature cannot change. ``fresh`` reads
        the account and the login from the database now, whenever they were last read.
        """
        claims = self._cache.get(token)
        if claims is not None and claims["exp"] > time.time():
            self._check_active(claims["sub"], fresh)
            self._check_family(claims.get("fam"), fresh)
            return claims
        try:
            claims = jwt.decode(
                token,
                self.key,
                algorithms=[self.algorithm],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("The access token has expired.", error="token_expired") from exc
        except jwt.PyJWTError as exc:
            raise Unauthorized("The access token is not valid.", error="invalid_token") from exc
        if not isinstance(claims.get("scopes"), list) or claims.get("role") not in users.ROLES:
            raise Unauthorized("The access token is not valid.", error="invalid_token")
        if "fam" in claims and not isinstance(claims["fam"], str):
            raise Unauthorized("The access token is not valid.", error="invalid_token")
        self._check_active(claims["sub"], fresh)
        self._check_family(claims.get("fam"), fresh)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[token] = claims
        return claims

    async def authenticate(self, token: str) -> dict[str, Any]:
        """``decode`` for a request, on the event loop unless it must read the database (a
        token not seen yet, an account or login not read for a few seconds): then, on
        PostgreSQL, in a worker thread (``cadre.db_calls``)."""
        claims = self._cache.get(token)
        if self.db.inline or (claims is not None and not self._reads_due(claims)):
            return self.decode(token)
        return await self.db(self.decode, token)

    def _reads_due(self, claims: dict[str, Any]) -> bool:
        """Whether checking ``claims`` would read the database now (``_check_active``,
        ``_check_family``)."""
        now = time.monotonic()
        if now - self._active.get(claims["sub"], -math.inf) >= ACTIVE_RECHECK_SECONDS:
            return True
        family = claims.get("fam")
        if family is None or family in self._revoked:
            return False
        return now - self._live.get(family, -math.inf) >= ACTIVE_RECHECK_SECONDS

    async def recheck(self, claims: dict[str, Any], *, fresh: bool = False) -> None:
        """For an open stream: 401 once its token expired, its account was disabled or its
        login revoked (the last two read as ``decode`` reads them, cached a few seconds, or
        now if ``fresh``; on PostgreSQL in a worker thread, as ``authenticate`` does).

        WebSocket and Server-Sent Event streams call it every ``TOKEN_RECHECK_SECONDS``
        with the claims they were opened with (``cadre.streams.token_problem``).
        """
        if self.db.inline or not (fresh or self._reads_due(claims)):
            self._recheck(claims, fresh)
        else:
            await self.db(self._recheck, claims, fresh)

    def _recheck(self, claims: dict[str, Any], fresh: bool) -> None:
        if claims["exp"] <= time.time():
            raise Unauthorized("The access token has expired.", error="token_expired")
        self._check_active(claims["sub"], fresh)
        self._check_family(claims.get("fam"), fresh)

    def _check_active(self, user_id: str, fresh: bool = False) -> None:
        """401 once the account is disabled or gone; checked every few seconds, not per request."""
        now = time.monotonic()
        checked = self._active.get(user_id)
        if not fresh and checked is not None and now - checked < ACTIVE_RECHECK_SECONDS:
            return
        if not users.is_active(user_id):
            self._active.pop(user_id, None)
            raise Unauthorized(
                "This account is disabled or no longer exists.", error="account_disabled"
            )
        if len(self._active) > 100_000:
            self._active.clear()
        self._active[user_id] = now

    def _check_family(self, family: str | None, fresh: bool = False) -> None:
        """401 once the token's login was revoked; read every few seconds, not per request.

        Tokens without a family (issued before access tokens carried one) are not checked.
        """
        if family is None:
            return
        if family not in self._revoked:
            now = time.monotonic()
            checked = self._live.get(family)
            if not fresh and checked is not None and now - checked < ACTIVE_RECHECK_SECONDS:
                return
            if not users.family_revoked(family):
                if len(self._live) > 100_000:
                    self._live.clear()
                self._live[family] = now
                return
            self._forget(family)
        raise Unauthorized(
            "This login was revoked (logged out, or its refresh token was reused).",
            error="token_revoked",
        )

    def _forget(self, family: str) -> None:
        """Remember ``family`` as revoked, so its tokens need no more database reads here."""
        self._live.pop(family, None)
        if len(self._revoked) > 100_000:
            self._revoked.clear()  # the database still knows
        self._revoked[family] = None

    def _revoke(self, family: str) -> None:
        users.revoke_family(family)
        self._forget(family)

    def issue_pair(
        self, user: users.User, scopes: tuple[str, ...], family: str | None = None
    ) -> dict[str, Any]:
        raw = _new_refresh_token(scopes)
        family = family or new_id("fam")
        users.store_refresh_token(user.id, family, _digest(raw), utcnow() + self.refresh_ttl)
        return {
            "access_token": self.issue_access(user.id, user.role, scopes, family),
            "refresh_token": raw,
            "token_type": "bearer",
            "expires_in": self.access_ttl,
            "scope": " ".join(scopes),
        }

    async def login(
        self, identifier: str, password: str, scopes: list[str] | None
    ) -> dict[str, Any]:
        """A token pair for the right password; 429 while the account is locked out.

        The throttle counts per account (the username and the email share a count); an
        unknown name gets a count of its own and the same replies, so nothing shows
        whether it exists. Only wrong passwords count: simultaneous right ones all succeed.
        """
        user = await self.db(users.find_login, identifier)
        account = user.id if user is not None else "unknown:" + identifier.strip().lower()
        await self.throttle.reserve(account)
        try:
            # the same work for unknown users: no timing oracle
            right = await self.verify_password(
                self._dummy_hash if user is None else user.password_hash, password
            )
        except BaseException:
            with anyio.CancelScope(shield=True):  # a cancelled check counts as a failure
                await self.throttle.failed(account)
            raise
        if user is None or not right:
            await self.throttle.failed(account)
            raise _bad_credentials()
        await self.throttle.succeeded(account)
        if not user.is_active:
            raise AccountDisabled("This account is disabled.")
        allowed = scopes_for(user.role)
        granted = allowed if scopes is None else tuple(s for s in allowed if s in scopes)
        unknown = sorted(set(scopes or ()) - set(allowed))
        if unknown:
            raise ValidationFailed(
                "Some requested scopes are not available to this account.",
                error="invalid_scope",
                details={"scopes": f"not grantable: {', '.join(unknown)}"},
            )
        if self.hasher.check_needs_rehash(user.password_hash):  # cost settings changed
            await self.db(users.set_password_hash, user, await self.hash_password(password))
        await self.db(users.touch_login, user)
        return await self.db(self.issue_pair, user, granted)

    def refresh(self, raw: str) -> dict[str, Any]:
        token = users.find_refresh_token(_digest(raw))
        if token is None or token.revoked_at is not None or token.expires_at < utcnow():
            raise Unauthorized("The refresh token is not valid.", error="invalid_refresh_token")
        if not users.mark_refresh_used(token):
            self._revoke(token.family)
            raise Unauthorized(
                "This refresh token was already used; every token of its login is now revoked.",
                error="refresh_token_reused",
            )
        user = users.get_user(token.user_id)
        if user is None or not user.is_active:
            self._revoke(token.family)
            raise Unauthorized("The refresh token is not valid.", error="invalid_refresh_token")
        allowed = scopes_for(user.role)
        granted = _granted_scopes(raw)
        scopes = allowed if granted is None else tuple(s for s in allowed if s in granted)
        return self.issue_pair(user, scopes, family=token.family)

    def logout(self, raw: str | None, user_id: str) -> None:
        """Revoke the family of ``raw`` (when it is the caller's own)."""
        if raw is None:
            return
        token = users.find_refresh_token(_digest(raw))
        if token is not None and token.user_id == user_id:
            self._revoke(token.family)


def owner_scope(user: str, claims: dict[str, Any], everyone: bool) -> str | None:
    """Whose rows a list shows: the caller's, or (``?all=true``, admins only) everyone's.

    Everyone's rows need the admin role *and* the ``admin`` scope: an admin who
    logged in with narrowed scopes holds a token that acts as an ordinary user's.
    """
    if not everyone:
        return user
    if claims["role"] != "admin":
        raise Forbidden("Only admins may see every user's resources.", error="admin_required")
    if "admin" not in claims.get("scopes", ()):
        raise InsufficientScope(
            "Seeing every user's resources needs a token with the 'admin' scope; "
            "this one was narrowed at login.",
            details={"scopes": "the 'admin' scope is missing"},
        )
    return None


def _new_refresh_token(scopes: tuple[str, ...]) -> str:
    """A random refresh token ending in the scopes it grants (``<random>.<scope>,<scope>``).

    The suffix cannot be altered: only the digest of the whole string is stored,
    so a token with a changed suffix is an unknown token.
    """
    return f"{secrets.token_urlsafe(48)}.{','.join(scopes)}"


def _granted_scopes(raw: str) -> set[str] | None:
    """The scopes a refresh token was issued with; None for tokens issued before they were."""
    _, dot, scopes = raw.partition(".")  # token_urlsafe never yields a dot
    return {scope for scope in scopes.split(",") if scope} if dot else None


def _digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def _bad_credentials() -> Unauthorized:
    return Unauthorized("Incorrect username/email or password.", error="invalid_credentials")
