from __future__ import annotations

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
