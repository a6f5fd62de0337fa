"""Check every stream message the tests receive against its schema in asyncapi.yaml."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

ASYNCAPI = Path(__file__).resolve().parent.parent / "asyncapi.yaml"


@cache
def document() -> dict[str, Any]:
    return yaml.safe_load(ASYNCAPI.read_text())


@cache
def _validator(message_name: str) -> jsonschema.Draft7Validator:
    doc = document()
    payload = doc["components"]["messages"][message_name]["payload"]
    return jsonschema.Draft7Validator(
        {**payload, "components": doc["components"]},
        format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER,
    )


def check_server_message(message: dict[str, Any]) -> dict[str, Any]:
    """Validate one message the server sent; returns it for chaining."""
    name = message.get("type")
    assert name in document()["components"]["messages"], f"undocumented message: {message}"
    errors = [e.message for e in _validator(name).iter_errors(message)]
    assert not errors, f"{name} message breaks asyncapi.yaml: {errors} in {message}"
    return message
