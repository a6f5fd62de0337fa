"""GET and POST /api/v1/agents in bare Starlette: the floor for a Python ASGI app."""

from __future__ import annotations

import orjson
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cadre.errors import CadreError
from models_gen.api import AgentCreate, AgentList
from scripts.bench_apps import agent_page, new_agent, setup, user_of


def _json(body: object, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def create_app() -> Starlette:
    tokens = setup()

    async def agents(request: Request) -> Response:
        try:
            user = user_of(tokens, request.headers.get("authorization"))
            if request.method == "GET":
                limit = int(request.query_params.get("limit", 100))
                offset = int(request.query_params.get("offset", 0))
                if not (1 <= limit <= 1000 and 0 <= offset <= 1_000_000_000):
                    return _json({"error": "validation_error"}, 422)
                return _json(AgentList(**agent_page(user, limit, offset)).model_dump(mode="json"))
            body = AgentCreate.model_validate_json(await request.body())
            agent = new_agent(user, body.model_dump(mode="json", exclude_unset=True))
            return _json(agent.model_dump(mode="json"), 201)
        except ValidationError as exc:
            return _json({"error": "validation_error", "details": exc.errors()}, 422)
        except CadreError as exc:
            return _json({"error": exc.error, "message": exc.message}, exc.status)

    return Starlette(routes=[Route("/api/v1/agents", agents, methods=["GET", "POST"])])
