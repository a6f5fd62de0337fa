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


class JSONBody(bytes):
    """A reply body already encoded as JSON: the binding sends it as it is."""


@functools.cache
def _shape(model: type[BaseModel]) -> tuple[str, tuple[tuple[str, Any], ...]]:
    """The list model's items member, and its item model's fields with their defaults
    (None for required ones: a row always gives those)."""
    for name, field in model.model_fields.items():
        (item,) = get_args(field.annotation) or (None,)
        if isinstance(item, type) and issubclass(item, BaseModel):
            fields = tuple(
                (key, None if spec.default is PydanticUndefined else spec.default)
                for key, spec in item.model_fields.items()
            )
            return name, fields
    raise TypeError(f"{model.__name__} has no list of models")


def list_reply(
    model: type[BaseModel], items: Iterable[Mapping[str, Any]], **fields: Any
) -> tuple[JSONBody, int]:
    """``model``'s reply (a list model: ``AgentList``, ``CostList``…) as JSON: its items
    from ``items``, its other members (``total``, ``next``…) from ``fields``."""
    member, shape = _shape(model)
    rows = [{key: item.get(key, default) for key, default in shape} for item in items]
    return JSONBody(orjson.dumps({member: rows, **fields}, option=orjson.OPT_UTC_Z)), 200
