"""List replies written straight from rows: a dict per item, encoded once by orjson.

Validating a page of rows into ``models_gen`` models and serialising them again cost
more than everything else a list does. Each item keeps exactly the fields of the list
model's item model (the row's other columns are dropped, an absent optional field
gets the model's default), and timestamps are written as pydantic writes them
(``…Z``). That the result is what the models would have written is proved by tests
(``tests/test_list_replies.py``) rather than checked on every request; with
``CADRE_VALIDATE_RESPONSES`` on, the OpenAPI schema still checks every reply.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from typing import Any, get_args

import orjson
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from cadre.pagination import next_link
from storage.queries import Page


class JSONBody(bytes):
    """A reply body already encoded as JSON: the binding sends it as it is."""


Shape = tuple[frozenset[str], tuple[tuple[str, Any], ...], tuple[tuple[str, type[BaseModel]], ...]]


@functools.cache
def _fields(model: type[BaseModel]) -> Shape:
    """``model``'s field names; the fields with their defaults (None for required ones: a
    row always gives those); and those of them that hold a model (``usage``…)."""
    fields = tuple(
        (key, None if spec.default is PydanticUndefined else spec.default)
        for key, spec in model.model_fields.items()
    )
    nested = tuple(
        (key, inner)
        for key, spec in model.model_fields.items()
        for inner in (spec.annotation, *get_args(spec.annotation))
        if isinstance(inner, type) and issubclass(inner, BaseModel)
    )
    return frozenset(model.model_fields), fields, nested


@functools.cache
def _items(model: type[BaseModel]) -> tuple[str, type[BaseModel]]:
    """The list model's member holding its items, and their model."""
    for name, spec in model.model_fields.items():
        (item,) = get_args(spec.annotation) or (None,)
        if isinstance(item, type) and issubclass(item, BaseModel):
            return name, item
    raise TypeError(f"{model.__name__} has no list of models")


def _project(item: Mapping[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    """``item``'s values of ``model``'s fields, as the model would hold them: the other
    keys dropped (a row's own columns), an absent optional one given its default. An
    item built with exactly those keys (``handlers.agents.agent_fields``) is used as is."""
    names, fields, nested = _fields(model)
    if type(item) is dict and item.keys() == names:
        row = item
    else:
        row = {key: item.get(key, default) for key, default in fields}
    for key, inner in nested:
        value = row[key]
        if isinstance(value, Mapping):
            row[key] = _project(value, inner)
    return row


def list_reply(
    model: type[BaseModel], items: Iterable[Mapping[str, Any]], **fields: Any
) -> tuple[JSONBody, int]:
    """``model``'s reply (a list model: ``AgentList``, ``CostList``…) as JSON: its items
    from ``items``, its other members (``total``, ``next``…) from ``fields``."""
    member, item_model = _items(model)
    names, _, nested = _fields(item_model)
    # An item built with exactly the model's flat fields is written as it is.
    rows = [
        item
        if not nested and type(item) is dict and item.keys() == names
        else _project(item, item_model)
        for item in items
    ]
    return JSONBody(orjson.dumps({member: rows, **fields}, option=orjson.OPT_UTC_Z)), 200


def page_reply(
    model: type[BaseModel],
    page: Page,
    items: Iterable[Mapping[str, Any]],
    *,
    path: str,
    limit: int,
    offset: int,
    **filters: Any,
) -> tuple[JSONBody, int]:
    """A paginated list's reply: ``page``'s items (as ``items`` shapes its rows), its
    ``total``, ``limit`` and ``offset``, and the ``next`` link to ``path`` with the same
    ``filters``."""
    link = next_link(path, page, limit, **filters)
    return list_reply(model, items, total=page.total, limit=limit, offset=offset, next=link)
