"""GET and POST /api/v1/agents in bare Starlette: one route, no dependency injection.

The floor for a Python ASGI app doing this work: pydantic validates the query
and body, orjson encodes the dumped reply (as Cadre's jsonifier does).
"""

from __future__ import annotations

import orjson
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cadre.errors import CadreError
from models_gen.api import AgentCreate, ApiV1AgentsGetParametersQuery
from scripts.bench_apps import READ_SCOPE, WRITE_SCOPE, agent_page, authorize, new_agent, setup


def _json(body: object, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def create_app() -> Starlette:
    """The Starlette app, over the database and token settings of the CADRE_* environment."""
    tokens = setup()

    async def agents(request: Request) -> Response:
        authorization = request.headers.get("authorization")
        try:
            if request.method == "GET":
                claims = authorize(tokens, authorization, READ_SCOPE)
                query = ApiV1AgentsGetParametersQuery.model_validate(dict(request.query_params))
                return _json(agent_page(claims, query).model_dump(mode="json"))
            claims = authorize(tokens, authorization, WRITE_SCOPE)
            body = AgentCreate.model_validate_json(await request.body())
            return _json(new_agent(claims, body).model_dump(mode="json"), 201)
        except ValidationError as exc:
            details = exc.errors(include_url=False, include_context=False, include_input=False)
            return _json({"error": "validation_error", "details": details}, 422)
        except CadreError as exc:
            return _json({"error": exc.error, "message": exc.message}, exc.status)

    return Starlette(routes=[Route("/api/v1/agents", agents, methods=["GET", "POST"])])
