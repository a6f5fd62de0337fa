"""GET and POST /api/v1/agents in FastAPI, idiomatically (response models, dependencies).

No `from __future__ import annotations`: FastAPI must see the Depends() objects.
"""

from typing import Annotated

from fastapi import Depends, FastAPI, Header, Query
from fastapi.responses import JSONResponse

from cadre.errors import CadreError
from models_gen.api import Agent, AgentCreate, AgentList
from scripts.bench_apps import agent_page, new_agent, setup, user_of


def create_app() -> FastAPI:
    tokens = setup()
    app = FastAPI()

    @app.exception_handler(CadreError)
    async def problem(_request, exc: CadreError) -> JSONResponse:
        return JSONResponse({"error": exc.error, "message": exc.message}, status_code=exc.status)

    def current_user(authorization: Annotated[str | None, Header()] = None) -> str:
        return user_of(tokens, authorization)

    @app.get("/api/v1/agents", response_model=AgentList)
    async def list_agents(
        user: Annotated[str, Depends(current_user)],
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
    ) -> AgentList:
        return AgentList(**agent_page(user, limit, offset))

    @app.post("/api/v1/agents", response_model=Agent, status_code=201)
    async def create_agent(body: AgentCreate, user: Annotated[str, Depends(current_user)]) -> Agent:
        return new_agent(user, body.model_dump(mode="json", exclude_unset=True))

    return app
