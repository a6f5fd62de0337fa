"""Agents, and parent inheritance: a child's unset fields come from its parent chain."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import orjson
import peewee

from cadre.errors import Conflict, NotFound, ValidationFailed
from storage import counts
from storage.db import BaseModel, database
from storage.fields import UTCDateTimeField
from storage.ids import new_id, utcnow
from storage.queries import Page, fetch_rows, owned, paginate
from storage.users import User

INHERITABLE = ("provider", "model", "temperature", "instructions", "tools")
DEFAULTS: dict[str, Any] = {
    "provider": "echo",
    "model": "echo",
    "temperature": 0.7,
    "instructions": "",
    "tools": [],
}
MAX_DEPTH = 32


class Agent(BaseModel):
    id = peewee.CharField(primary_key=True, max_length=40)
    owner = peewee.ForeignKeyField(User, backref="agents", on_delete="CASCADE")
    name = peewee.CharField(max_length=64)
    provider = peewee.CharField(max_length=32, null=True)
    model = peewee.CharField(max_length=128, null=True)
    temperature = peewee.FloatField(null=True)
    instructions = peewee.TextField(null=True)
    tools = peewee.TextField(null=True)  # JSON list of tool names
    tags = peewee.TextField(default="[]")  # JSON list of labels; never inherited
    parent = peewee.ForeignKeyField("self", null=True, backref="children", on_delete="RESTRICT")
    status = peewee.CharField(max_length=16, default="active")
    created_at = UTCDateTimeField(default=utcnow)
    updated_at = UTCDateTimeField(default=utcnow)

    class Meta:
        indexes = ((("owner", "name"), True), (("owner", "created_at", "id"), False))


Row = dict[str, Any]  # an agent's column values by field name (a model's ``__data__``)


class Resolved(NamedTuple):
    """An agent's row with the values it runs with, and which of them it inherited (a
    tuple: a page builds one per agent, and a frozen dataclass costs several times more)."""

    row: Row
    parent_name: str | None
    values: dict[str, Any]
    inherited: tuple[str, ...]


def _load_ancestors(rows: Iterable[Row]) -> dict[str, Row]:
    """Every ancestor of the agents ``rows`` holds, one query per generation."""
    known: dict[str, Row] = {row["id"]: row for row in rows}
    pending = _unknown_parents(known)
    for _ in range(MAX_DEPTH):
        if not pending:
            break
        for parent in fetch_rows(Agent.select().where(Agent.id.in_(list(pending)))):
            known[parent["id"]] = parent
        pending = _unknown_parents(known)
    return known


def _unknown_parents(known: dict[str, Row]) -> set[str]:
    parents = (row.get("parent") for row in known.values())
    return {p for p in parents if p and p not in known}


def _own(data: dict[str, Any], field: str) -> Any:
    """An agent's own value of ``field`` from its row's values; None when unset."""
    value = data.get(field)
    return orjson.loads(value) if field == "tools" and value is not None else value


def resolve(agents: Sequence[Agent]) -> list[Resolved]:
    """Each agent's values: its own, else the nearest ancestor's, else the default."""
    return resolve_rows([agent.__data__ for agent in agents])


def resolve_rows(rows: Sequence[Row]) -> list[Resolved]:
    """``resolve`` for agents' rows (a page's ``list_agents`` gives): no model needed."""
    known = _load_ancestors(rows)
    out = []
    for data in rows:
        values = {field: data.get(field) for field in INHERITABLE}
        if values["tools"] is not None:
            values["tools"] = orjson.loads(values["tools"])
        if not data.get("parent"):  # most agents: their own values, else the defaults
            for field, value in values.items():
                if value is None:
                    values[field] = DEFAULTS[field]
            out.append(Resolved(data, None, values, ()))
            continue
        ancestors = []  # nearest first
        parent_id = data.get("parent")
        while parent_id and parent_id in known and len(ancestors) < MAX_DEPTH - 1:
            ancestors.append(known[parent_id])
            parent_id = ancestors[-1].get("parent")
        inherited = []
        for field in INHERITABLE:
            if values[field] is not None:
                continue
            for ancestor in ancestors:
                value = _own(ancestor, field)
                if value is not None:
                    values[field] = value
                    inherited.append(field)
                    break
            else:
                values[field] = DEFAULTS[field]
        parent = ancestors[0].get("name") if ancestors else None
        out.append(Resolved(data, parent, values, tuple(inherited)))
    return out


def _by_ref(ref: str, owner_id: str | None) -> Agent | None:
    """An agent by id, else by name, among ``owner_id``'s (all when None)."""
    query = owned(Agent.select(), Agent, owner_id)
    found = query.where(Agent.id == ref).first() if ref.startswith("agent_") else None
    return found or query.where(Agent.name == ref).first()


def get_agent(ref: str, owner_id: str) -> Agent:
    """The owner's agent by id, else by name (``_by_ref``'s rule, with prepared reads:
    every execution starts with this lookup)."""
    agent = Agent.get_where(id=ref, owner=owner_id) if ref.startswith("agent_") else None
    agent = agent or Agent.get_where(owner=owner_id, name=ref)
    if agent is None:
        raise NotFound(f"No agent '{ref}'.", error="agent_not_found")
    return agent


def _has_tag(tag: str) -> peewee.Expression:
    """``tags`` (a JSON list) holds ``tag``: tags are ``[a-z0-9._:-]``, so the quoted tag
    matches only a whole element, and ``_`` is escaped as the one LIKE wildcard they allow."""
    pattern = '%"' + tag.replace("_", "\\_") + '"%'
    return peewee.NodeList((Agent.tags, peewee.SQL("LIKE"), pattern, peewee.SQL("ESCAPE '\\'")))


def list_agents(
    owner_id: str | None,
    *,
    parent: str | None,
    status: str | None,
    limit: int,
    offset: int,
    tag: str | None = None,
    after: str | None = None,
) -> Page:
    """A page of the owner's agents (all when None), its rows as values by field name
    (``Row``s, for ``resolve_rows``): a page reads them and needs no model per agent."""
    query = owned(Agent.select(), Agent, owner_id)
    unfiltered = owner_id is not None and tag is None and parent is None and status is None
    if tag is not None:
        query = query.where(_has_tag(tag))
    if parent is not None:
        # every matching parent: with owner_id None (an admin's all=true) a name may be many users'
        Parent = Agent.alias()
        parents = owned(Parent.select(Parent.id), Parent, owner_id).where(
            (Parent.id == parent) | (Parent.name == parent)
        )
        query = query.where(Agent.parent.in_(parents))
    if status is not None:
        query = query.where(Agent.status == status)
    return paginate(
        query,
        (Agent.created_at, Agent.id),
        limit=limit,
        offset=offset,
        after=after,
        count=(lambda: counts.count(owner_id, "agent")) if unfiltered else None,
        plain=True,
    )


def _parent_for(owner_id: str, ref: str | None, child: Agent | None) -> Agent | None:
    """The owner's agent ``ref`` (id or name), refusing unknown parents, cycles, too-deep chains."""
    if ref is None:
        return None
    parent = _by_ref(ref, owner_id)
    if parent is None:
        raise ValidationFailed(
            f"Parent agent '{ref}' does not exist.",
            error="invalid_parent",
            details={"parent": f"no agent '{ref}'"},
        )
    chain = _load_ancestors([parent.__data__])
    node: Row | None = parent.__data__
    depth = 0  # levels from the parent up to its root (MAX_DEPTH + 1 when the chain is longer)
    while node is not None and depth <= MAX_DEPTH:
        if child is not None and node["id"] == child.id:
            raise ValidationFailed(
                f"Making '{parent.name}' the parent of '{child.name}' would create a cycle.",
                error="parent_cycle",
                details={"parent": "would create a cycle"},
            )
        depth += 1
        node = chain.get(node["parent"]) if node.get("parent") else None
    if depth + (_height(child) if child is not None else 1) > MAX_DEPTH:
        raise ValidationFailed(
            f"Agent chains are limited to {MAX_DEPTH} levels.",
            error="parent_too_deep",
            details={"parent": f"chain deeper than {MAX_DEPTH}"},
        )
    return parent


def _height(agent: Agent) -> int:
    """Levels of ``agent``'s subtree, itself included (capped past MAX_DEPTH); a query a level."""
    height, level = 1, [agent.id]
    while height <= MAX_DEPTH:
        level = [row.id for row in Agent.select(Agent.id).where(Agent.parent.in_(level))]
        if not level:
            break
        height += 1
    return height


def _column_values(fields: dict[str, Any]) -> dict[str, Any]:
    """The columns of validated fields (tool names are the spec's ``ToolName`` enum)."""
    return {
        key: (json.dumps(value) if key in ("tools", "tags") and value is not None else value)
        for key, value in fields.items()
        if key in (*INHERITABLE, "name", "status", "tags")
    }


def _name_conflict(name: str) -> Conflict:
    return Conflict(
        f"You already have an agent named '{name}'.",
        error="agent_name_taken",
        details={"name": "already used by another of your agents"},
    )


def create_agent(owner_id: str, fields: dict[str, Any]) -> Agent:
    with database.atomic():
        parent = _parent_for(owner_id, fields.get("parent"), None)
        now = utcnow()
        try:  # the (owner, name) unique index answers "is the name taken" in the same statement
            agent = Agent.create(
                id=new_id("agent"),
                owner=owner_id,
                parent=parent,
                created_at=now,
                updated_at=now,
                **_column_values(fields),
            )
        except peewee.IntegrityError as exc:
            raise _name_conflict(fields["name"]) from exc
        counts.bump(owner_id, "agent")
        return agent


def update_agent(agent: Agent, changes: dict[str, Any]) -> Agent:
    with database.atomic():
        if "parent" in changes:
            parent = _parent_for(agent.owner_id, changes["parent"], agent)
            agent.parent = parent
        name = changes.get("name")
        if name is not None and name != agent.name:
            taken = Agent.select().where(
                (Agent.owner == agent.owner_id) & (Agent.name == name) & (Agent.id != agent.id)
            )
            if taken.exists():
                raise _name_conflict(name)
        for column, value in _column_values(changes).items():
            setattr(agent, column, value)
        agent.updated_at = utcnow()
        try:
            agent.save()
        except peewee.IntegrityError as exc:  # lost a race with a concurrent use of that name
            if name is None:
                raise
            raise _name_conflict(name) from exc
    return agent


def delete_agent(agent: Agent) -> None:
    with database.atomic():
        children = Agent.select(Agent.name).where(Agent.parent == agent.id).limit(5)
        names = [child.name for child in children]
        if names:
            raise Conflict(
                f"Agent '{agent.name}' still has child agents; delete or re-parent them first.",
                error="agent_has_children",
                details={"children": names},
            )
        agent.delete_instance()
        counts.bump(agent.owner_id, "agent", -1)
