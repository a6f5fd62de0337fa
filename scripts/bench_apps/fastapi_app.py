"""GET and POST /api/v1/agents in FastAPI, written the idiomatic way.

Dependencies check the token, a query model and the body model validate the
input, and ``response_model`` serialises the reply. The dependencies are
``async def``: a plain ``def`` would send every request through the thread pool.

No ``from __future__ import annotations``: FastAPI reads the annotations at runtime.
"""

from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.responses import JSONResponse

from cadre.errors import CadreError
from models_gen.api import Agent, AgentCreate, AgentList, ApiV1AgentsGetParametersQuery
from scripts.bench_apps import READ_SCOPE, WRITE_SCOPE, agent_page, authorize, new_agent, setup


def create_app() -> FastAPI:
    """The FastAPI app, over the database and token settings of the CADRE_* environment."""
    tokens = setup()
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @app.exception_handler(CadreError)
    async def problem(_request: Request, exc: CadreError) -> JSONResponse:
        body = {"error": exc.error, "message": exc.message}
        return JSONResponse(body, status_code=exc.status, headers=exc.headers)

    async def reader(authorization: Annotated[str | None, Header()] = None) -> dict[str, Any]:
        return authorize(tokens, authorization, READ_SCOPE)

    async def writer(authorization: Annotated[str | None, Header()] = None) -> dict[str, Any]:
        return authorize(tokens, authorization, WRITE_SCOPE)

    @app.get("/api/v1/agents", response_model=AgentList)
    async def list_agents(
        claims: Annotated[dict[str, Any], Depends(reader)],
        query: Annotated[ApiV1AgentsGetParametersQuery, Query()],
    ) -> AgentList:
        return agent_page(claims, query)

    @app.post("/api/v1/agents", response_model=Agent, status_code=201)
    async def create_agent(
        body: AgentCreate, claims: Annotated[dict[str, Any], Depends(writer)]
    ) -> Agent:
        return new_agent(claims, body)

    return app
