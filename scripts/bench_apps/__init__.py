"""Cadre's two agent endpoints again, in FastAPI and in bare Starlette, for `make bench`.

Both apps do the work a Cadre request does, with Cadre's own code: the bearer
JWT checked by ``cadre.auth.TokenService`` (PyJWT, same key, algorithm, issuer,
audience and required claims), the query and body validated by the pydantic
models in ``models_gen.api``, rows read and written by the ``storage`` package
over Peewee/SQLite, and replies built as ``models_gen.api.Agent``/``AgentList``
by ``handlers.agents.agent_reply``. A benchmark then compares frameworks, not work.
"""

from __future__ import annotations

from typing import Any

from cadre.auth import TokenService, owner_scope
from cadre.errors import InsufficientScope, Unauthorized
from cadre.pagination import next_link
from cadre.settings import Settings
from handlers.agents import agent_reply
from models_gen.api import Agent, AgentCreate, AgentList, ApiV1AgentsGetParametersQuery
from storage import agents, db

READ_SCOPE = "agents:read"
WRITE_SCOPE = "agents:write"


def setup() -> TokenService:
    """Open and migrate the database the CADRE_* environment names; return the token checker."""
    settings = Settings()
    db.migrate(db.open_database(settings.effective_database_url))
    return TokenService(settings)


def authorize(tokens: TokenService, authorization: str | None, scope: str) -> dict[str, Any]:
    """The verified claims of the ``Authorization: Bearer`` token, which must grant ``scope``."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("Authentication required.")
    claims = tokens.decode(token)
    if scope not in claims["scopes"]:
        raise InsufficientScope(f"This operation needs the '{scope}' scope.")
    return claims


def agent_page(claims: dict[str, Any], query: ApiV1AgentsGetParametersQuery) -> AgentList:
    """What ``handlers.agents.list_agents`` builds, as a model (each framework dumps its way)."""
    owner = owner_scope(claims["sub"], claims, query.all)
    page = agents.list_agents(
        owner,
        parent=query.parent,
        status=query.status.value if query.status else None,
        limit=query.limit,
        offset=query.offset,
        after=query.after,
    )
    return AgentList(
        agents=[agent_reply(r) for r in agents.resolve_rows(page.rows)],
        total=page.total,
        limit=query.limit,
        offset=query.offset,
        next=next_link("/api/v1/agents", page, query.limit, parent=query.parent, all=query.all),
    )


def new_agent(claims: dict[str, Any], body: AgentCreate) -> Agent:
    """What ``handlers.agents.create_agent`` builds, as a model."""
    fields = body.model_dump(mode="json", exclude_unset=True)
    return agent_reply(agents.resolve([agents.create_agent(claims["sub"], fields)])[0])
