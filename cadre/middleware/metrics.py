"""Prometheus request metrics, labelled by route template rather than raw path."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class RequestMetrics:
    """The three request metrics, in a registry of their own (one per app)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "cadre_requests_total",
            "HTTP requests served",
            ["method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "cadre_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.in_flight = Gauge(
            "cadre_requests_in_flight", "HTTP requests being served", registry=registry
        )
        # labels() checks and converts its values on every call: keep each labelled child.
        self._counted: dict[tuple[str, str, int], Any] = {}
        self._timed: dict[tuple[str, str], Any] = {}

    def record(self, method: str, route: str, status: int, seconds: float) -> None:
        counted = self._counted.get((method, route, status))
        if counted is None:
            counted = self.requests.labels(method, route, str(status))
            self._counted[(method, route, status)] = counted
        timed = self._timed.get((method, route))
        if timed is None:
            timed = self._timed[(method, route)] = self.latency.labels(method, route)
        counted.inc()
        timed.observe(seconds)


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: RequestMetrics, routes: dict[str, str]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes  # operationId -> path template

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()
        # Connexion's routing records the operation in ``scope["extensions"]``, writing into a
        # copy of the scope. uvicorn's scope has no ``extensions`` key (a test client's does),
        # so the copy would get a dict of its own: create it here, where it is then shared.
        extensions = scope.get("extensions")
        if extensions is None:
            extensions = scope["extensions"] = {}

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, record_status)
        finally:
            self.metrics.in_flight.dec()
            routing = extensions.get("connexion_routing", {})
            route = self.routes.get(routing.get("operation_id"), "unmatched")
            self.metrics.record(scope["method"], route, status, time.perf_counter() - started)
