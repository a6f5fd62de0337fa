"""The same two agent endpoints as Cadre's, in FastAPI and in bare Starlette, for `make bench`.

They share Cadre's storage, token checks and reply models, so a benchmark
compares frameworks, not work done.
"""

from __future__ import annotations

from typing import Any

from cadre.auth import TokenService
from cadre.errors import CadreError, Unauthorized
from cadre.settings import Settings
from handlers.agents import agent_reply
from storage import agents, db


def setup() -> TokenService:
    """Open and migrate the database named by the CADRE_* environment; the token checker."""
    settings = Settings()
    db.migrate(db.open_database(settings.effective_database_url))
    return TokenService(settings)


def user_of(tokens: TokenService, authorization: str | None) -> str:
    if not authorization or not authorization.lower().startswith("bearer "):
        raise Unauthorized("Authentication required.")
    claims = tokens.decode(authorization[7:])
    if "agents:read" not in claims["scopes"]:
        raise CadreError("Insufficient scope.")
    return claims["sub"]


def agent_page(user: str, limit: int, offset: int) -> dict[str, Any]:
    rows, total = agents.list_agents(user, parent=None, status=None, limit=limit, offset=offset)
    return {
        "agents": [agent_reply(r) for r in agents.resolve(rows)],
        "total": total,
        "limit": limit,
        "offset": offset,
    }


def new_agent(user: str, fields: dict[str, Any]):
    return agent_reply(agents.resolve([agents.create_agent(user, fields)])[0])
