"""asyncapi.yaml is a valid AsyncAPI 2.6 document (checked against the official JSON Schema)."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import jsonschema
import pytest

from tests.asyncapi_check import check_server_message, document

SPEC_SCHEMA = Path(sys.prefix) / "asyncapi-specs" / "package" / "schemas" / "2.6.0-without-$id.json"


@pytest.fixture(scope="module")
def official_validator() -> jsonschema.Draft7Validator:
    assert SPEC_SCHEMA.exists(), f"{SPEC_SCHEMA} is missing: `make install` fetches it"
    return jsonschema.Draft7Validator(json.loads(SPEC_SCHEMA.read_text()))


def test_asyncapi_document_is_valid(official_validator):
    errors = [e.message for e in official_validator.iter_errors(json.loads(json.dumps(document())))]
    assert errors == []


def test_the_official_schema_catches_a_broken_document(official_validator):
    broken = copy.deepcopy(document())
    broken["channels"]["/api/v1/agents/{agent_id}/stream"]["subscribe"]["message"] = 42
    assert list(official_validator.iter_errors(json.loads(json.dumps(broken))))


def test_message_check_refuses_a_message_that_breaks_its_schema():
    with pytest.raises(AssertionError):
        check_server_message({"type": "token", "execution_id": "exec_1", "seq": 0})
    with pytest.raises(AssertionError):
        check_server_message({"type": "mystery"})


@pytest.mark.inprocess  # reads the app's route table
def test_websocket_channels_match_the_routes_the_app_serves(client):
    from starlette.routing import WebSocketRoute

    served = {r.path for r in client.app.routes if isinstance(r, WebSocketRoute)}
    channels = document()["channels"]
    assert served == {name for name, channel in channels.items() if "ws" in channel["bindings"]}
    # The others are Server-Sent Event replies of HTTP operations (openapi.yaml).
    assert all(set(channel["bindings"]) & {"ws", "http"} for channel in channels.values())


def test_every_message_has_a_unique_message_id_and_a_title():
    messages = document()["components"]["messages"]
    ids = [message["messageId"] for message in messages.values()]
    assert len(ids) == len(set(ids)) == len(messages)
    assert all(message["title"] for message in messages.values())
