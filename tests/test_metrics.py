from __future__ import annotations

import time

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Account


def _samples(text: str, name: str) -> list:
    return [
        sample
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


def test_requests_are_counted_by_route_template_not_raw_path(client, alice: Account):
    client.post("/api/v1/agents", json={"name": "coder"}, headers=alice.headers)
    client.get("/api/v1/agents/coder", headers=alice.headers)
    client.get("/api/v1/agents/missing", headers=alice.headers)
    text = client.get("/metrics").text
    counts = {
        (s.labels["method"], s.labels["route"], s.labels["status"]): s.value
        for s in _samples(text, "cadre_requests_total")
    }
    assert counts[("GET", "/api/v1/agents/{agent_id}", "200")] == 1
    assert counts[("GET", "/api/v1/agents/{agent_id}", "404")] == 1
    assert counts[("POST", "/api/v1/agents", "201")] == 1
    assert not any("coder" in route for _, route, _ in counts)


def test_unmatched_paths_share_one_label(client):
    client.get("/no/such/path/1")
    client.get("/no/such/path/2")
    text = client.get("/metrics").text
    unmatched = [
        s for s in _samples(text, "cadre_requests_total") if s.labels["route"] == "unmatched"
    ]
    assert sum(s.value for s in unmatched) == 2


def _health_count(text: str) -> float:
    buckets = _samples(text, "cadre_request_duration_seconds_count")
    return sum(s.value for s in buckets if s.labels["route"] == "/health")


def test_latency_histogram_and_in_flight_gauge_are_exported(client):
    before = _health_count(client.get("/metrics").text)  # a live server was probed at start
    client.get("/health")
    text = client.get("/metrics").text
    assert _health_count(text) == before + 1
    in_flight = _samples(text, "cadre_requests_in_flight")
    assert in_flight[0].value == 1  # the /metrics request itself


def test_metrics_are_prometheus_text_without_auth(client):
    reply = client.get("/metrics")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/plain")


def _gauge(text: str, name: str) -> float:
    return _samples(text, name)[0].value


def test_engine_gauges_count_running_executions_queue_depth_and_workers(client, alice: Account):
    client.post("/api/v1/agents", json={"name": "slow"}, headers=alice.headers)
    body = {"task": "count", "inputs": {"echo": {"tokens": 400, "delay_ms": 50}}}
    run = client.post("/api/v1/agents/slow/execute", json=body, headers=alice.headers).json()
    deadline = time.monotonic() + 20
    while True:
        status = client.get(f"/api/v1/runs/{run['execution_id']}", headers=alice.headers)
        text = client.get("/metrics").text
        if status.json()["status"] == "running" and _gauge(text, "cadre_workers") == 1:
            break
        assert time.monotonic() < deadline, text
        time.sleep(0.05)
    assert _gauge(text, "cadre_executions_running") == 1
    assert _gauge(text, "cadre_queue_depth") == 0
    client.post(f"/api/v1/runs/{run['execution_id']}/cancel", headers=alice.headers)
