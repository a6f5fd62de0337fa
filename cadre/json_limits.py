"""Bounds on free-form JSON: how deep it nests, and how large a stored value may be.

Free-form values (an execution's ``inputs``, a tool's ``args``) are checked by no
schema below their top level, yet they are stored, serialised into every reply
that shows them and walked by recursive code (orjson refuses to serialise more
than 255 levels; Python's own recursion limit is 1000). Every request body and
WebSocket message is held to ``CADRE_MAX_JSON_DEPTH`` here, before anything
stores or walks it; ``inputs`` also to ``CADRE_MAX_INPUTS_BYTES``.
"""

from __future__ import annotations

from typing import Any

import orjson

from cadre.errors import ValidationFailed

DEFAULT_MAX_JSON_DEPTH = 32  # CADRE_MAX_JSON_DEPTH's default

# How deep a stored value may be and still be shown: pydantic-core and orjson, which
# serialise replies, give up at about 255 levels, with the reply's own levels counted.
REPLY_DEPTH = 128


def depth(value: Any, limit: int) -> int:
    """How deeply ``value`` nests (a scalar is 0, ``[]`` is 1), counted up to ``limit + 1``.

    Iterative, so a value nested far past the recursion limit is measured safely,
    and it stops as soon as the limit is passed.
    """
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        level += 1
        if level > limit:
            return level
        deepest = max(deepest, level)
        stack.extend((child, level) for child in children)
    return deepest


def too_deep(value: Any, limit: int, where: str) -> dict[str, str]:
    """``details`` naming each member of ``value`` (an object) nested deeper than ``limit``.

    ``value``'s own level is not counted: ``{"inputs": {...}}`` is measured from
    ``inputs``, so the limit reads the same for a member as for the value itself.
    """
    members = value.items() if isinstance(value, dict) else [("", value)]
    return {
        f"{where}.{name}" if name else where: f"nested deeper than {limit} levels"
        for name, member in members
        if depth(member, limit) > limit
    }


def check_depth(value: Any, limit: int, where: str = "body") -> None:
    """422 naming the members of ``value`` nested deeper than ``limit`` levels."""
    details = too_deep(value, limit, where)
    if details:
        raise ValidationFailed(
            f"JSON values may nest at most {limit} levels: check {', '.join(details)}.",
            error="validation_error",
            details=details,
        )


def shown(value: Any, keep: tuple[str, ...] = ()) -> Any:
    """A stored value as a reply may show it: itself, or a note if no serialiser could.

    Values stored before ``CADRE_MAX_JSON_DEPTH`` existed may nest too deep to
    serialise; one such row must not break every list that includes it. The
    members named in ``keep`` (an event's envelope) are kept as they are.
    """
    if depth(value, REPLY_DEPTH) <= REPLY_DEPTH:
        return value
    kept = {name: value[name] for name in keep if name in value} if keep else {}
    return {**kept, "_omitted": f"this stored value nests deeper than {REPLY_DEPTH} levels"}


def check_size(value: Any, limit: int, where: str) -> None:
    """422 when ``value`` takes more than ``limit`` bytes as compact JSON."""
    size = len(orjson.dumps(value))  # depth is checked first: orjson stops at 255 levels
    if size > limit:
        raise ValidationFailed(
            f"{where} takes {size} bytes as JSON; at most {limit} are allowed.",
            error="validation_error",
            details={where: f"larger than {limit} bytes as JSON"},
        )
