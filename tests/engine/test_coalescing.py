"""Token runs a lagging subscriber has not been sent yet go out as one frame."""

from __future__ import annotations

import json

from cadre.engine.events import Event, encode
from cadre.streams import coalesced


def frame(seq: int, type_: str, **data) -> tuple[Event, str]:
    event = {"type": type_, "execution_id": "exec_1", "seq": seq, "timestamp": f"t{seq}", **data}
    return event, encode(event)


def test_consecutive_tokens_become_one_frame_with_the_first_and_last_seq():
    batch = [
        frame(1, "status", status="running"),
        frame(2, "token", content="a"),
        frame(3, "token", content=" b"),
        frame(4, "token", content=" c"),
        frame(5, "tool_call", call_id="c1", tool="t", args={}),
        frame(6, "token", content="d"),
        frame(7, "complete", status="completed"),
    ]

    sent = [json.loads(text) for _, text in coalesced(batch)]

    assert [m["type"] for m in sent] == ["status", "token", "tool_call", "token", "complete"]
    merged = sent[1]
    assert (merged["first_seq"], merged["seq"], merged["content"]) == (2, 4, "a b c")
    assert merged["timestamp"] == "t4"
    assert "first_seq" not in sent[3]  # a lone token is sent as it is
    assert sent[3] == batch[5][0]


def test_a_subscriber_that_keeps_up_gets_the_events_as_they_are():
    batch = [frame(9, "token", content="x")]
    assert coalesced(batch) == batch
