"""Agents: the caller's own, with inherited values resolved."""

from __future__ import annotations

from typing import Any

import orjson

from cadre.auth import owner_scope
from cadre.connexion.binding import Reply
from cadre.replies import page_reply
from models_gen.api import Agent as AgentReply
from models_gen.api import AgentList
from storage import agents


def agent_fields(resolved: agents.Resolved) -> dict[str, Any]:
    """Exactly the ``Agent`` reply's fields: the values it runs with, where they came
    from, and its own columns (a list writes this dict as it is)."""
    data = resolved.row
    return {
        "id": data["id"],
        "name": data["name"],
        **resolved.values,
        "tags": orjson.loads(data["tags"]),
        "parent": resolved.parent_name,
        "parent_id": data.get("parent"),
        "status": data["status"],
        "inherited": resolved.inherited,
        "owner_id": data["owner"],
        "created_at": data["created_at"],
        "updated_at": data["updated_at"],
    }


def agent_reply(resolved: agents.Resolved) -> AgentReply:
    return AgentReply.model_validate(agent_fields(resolved))


def _one(agent: agents.Agent) -> AgentReply:
    return agent_reply(agents.resolve([agent])[0])


def list_agents(
    user: str,
    token_info: dict,
    limit: int,
    offset: int,
    parent: str | None = None,
    status: str | None = None,
    tag: str | None = None,
    all_: bool = False,
    after: str | None = None,
) -> Reply:
    owner = owner_scope(user, token_info, all_)
    page = agents.list_agents(
        owner, parent=parent, status=status, tag=tag, limit=limit, offset=offset, after=after
    )
    filters = {"parent": parent, "status": status, "tag": tag, "all": all_ or None}
    items = map(agent_fields, agents.resolve_rows(page.rows))
    return page_reply(
        AgentList, page, items, path="/api/v1/agents", limit=limit, offset=offset, **filters
    )


def create_agent(user: str, body: dict) -> Reply:
    return _one(agents.create_agent(user, body)), 201


def get_agent(user: str, agent_id: str) -> Reply:
    return _one(agents.get_agent(agent_id, user)), 200


def update_agent(user: str, agent_id: str, body: dict) -> Reply:
    agent = agents.get_agent(agent_id, user)
    return _one(agents.update_agent(agent, body)), 200


def delete_agent(user: str, agent_id: str) -> tuple[None, int]:
    agents.delete_agent(agents.get_agent(agent_id, user))
    return None, 204
