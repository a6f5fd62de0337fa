"""The app factory: one outer Starlette app around the Connexion app built from openapi.yaml.

The outer app owns the lifespan (a wrapped Connexion app's never runs) and the
WebSocket routes Connexion cannot serve; HTTP requests pass the middleware that
must see every response (request ids, security headers, metrics, body limit,
CORS) on their way to Connexion.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import json
import logging
import re
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import connexion
import peewee
from connexion.options import SwaggerUIOptions
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from cadre import streams
from cadre.auth import TokenService
from cadre.connexion import (
    RESPONSE_VALIDATORS,
    CadreConnexionApp,
    TagResolver,
    jsonifier,
    middleware_stack,
    validator_map,
)
from cadre.db_calls import DatabaseCalls
from cadre.engine.events import EventBus
from cadre.engine.executor import EngineConfig, Executor
from cadre.engine.load import LoadMetrics
from cadre.engine.pricing import PriceTable
from cadre.engine.providers.registry import ProviderSettings
from cadre.engine.supervisor import Supervisor, SupervisorConfig
from cadre.middleware.body_limit import BodyLimitMiddleware
from cadre.middleware.docs_policy import DocsPolicyMiddleware
from cadre.middleware.metrics import MetricsMiddleware, RequestMetrics
from cadre.middleware.rate_limit import RateLimiter, RateLimitMiddleware
from cadre.middleware.request_context import RequestContextMiddleware
from cadre.problems import make_error_handler
from cadre.services import Services
from cadre.settings import Settings
from cadre.spec_docs import authored_spec
from storage import db
from storage.wal import Checkpointer

if TYPE_CHECKING:  # imported where used: Redis and Procrastinate load only when configured
    from cadre.engine.fanout import Fanout
    from cadre.engine.queue import ExecutionQueue

HTTP_METHODS = {"get", "put", "post", "patch", "delete", "head", "options", "trace"}
DOCS_PATH, SPEC_URL = "/docs", "/openapi.json"  # Connexion's Swagger UI; the spec is an operation
REDOC_PATH = "/redoc"


def operation_routes(spec: dict[str, Any]) -> dict[str, str]:
    """operationId -> path template, for metrics labels."""
    return {
        operation["operationId"]: path
        for path, item in spec["paths"].items()
        for operation in item.values()
        if isinstance(operation, dict) and "operationId" in operation
    }


def method_index(spec: dict[str, Any]) -> Callable[[str], list[str]]:
    """A lookup of the methods the spec declares for a concrete request path."""
    compiled = [
        (
            re.compile("^" + re.sub(r"\{[^/}]+\}", "[^/]+", path) + "$"),
            sorted(m.upper() for m in item if m in HTTP_METHODS),
        )
        for path, item in spec["paths"].items()
    ]

    def allowed(path: str) -> list[str]:
        return next((methods for pattern, methods in compiled if pattern.match(path)), [])

    return allowed


def engine_config(settings: Settings) -> EngineConfig:
    prices = PriceTable.default()
    if settings.prices_file is not None:
        prices = prices.with_overrides(json.loads(settings.prices_file.read_text()))
    return EngineConfig(
        data_dir=settings.data_dir,
        providers=ProviderSettings(
            openai_api_key=settings.openai_api_key,
            openai_base_url=settings.openai_base_url,
            anthropic_api_key=settings.anthropic_api_key,
            anthropic_base_url=settings.anthropic_base_url,
            request_timeout=settings.provider_timeout,
        ),
        prices=prices,
        max_concurrent=settings.max_concurrent_executions,
        max_concurrent_per_user=settings.max_concurrent_executions_per_user,
        max_execution_seconds=settings.max_execution_seconds,
        max_steps=settings.max_execution_steps,
        max_tokens=settings.max_output_tokens,
        max_inputs_bytes=settings.max_inputs_bytes,
        path_limits=settings.path_limits,
        ast_limits=settings.ast_limits,
        workspace_quota_bytes=settings.workspace_quota_bytes,
        shell_limits=settings.shell_limits,
        shutdown_grace_seconds=settings.shutdown_grace_seconds,
    )


def execution_queue(settings: Settings) -> ExecutionQueue | None:
    """The Procrastinate queue on PostgreSQL; none on SQLite (runs stay in-process, and
    Procrastinate is not even imported)."""
    url = settings.effective_database_url
    if db.is_embedded(url):
        return None
    from cadre.engine.queue import ExecutionQueue

    return ExecutionQueue(url)


def event_fanout(settings: Settings) -> Fanout | None:
    """Events and control across processes through Redis; none without ``CADRE_REDIS_URL``."""
    if not settings.redis_url:
        return None  # and the Redis client is not imported
    from cadre.engine.fanout import Fanout

    return Fanout(
        settings.redis_url,
        maxlen=settings.redis_stream_maxlen,
        ttl_seconds=settings.redis_stream_ttl_seconds,
    )


def supervisor_config(settings: Settings) -> SupervisorConfig:
    return SupervisorConfig(
        quotas=settings.quotas,
        max_workers=settings.max_job_workers,
        retries=settings.job_worker_retries,
        tick_seconds=settings.supervisor_tick_seconds,
    )


class CadreApp(Starlette):
    """Starlette for the lifespan and the WebSocket routes; HTTP goes straight to ``http``.

    ``http`` is Cadre's middleware around the Connexion app, which has its own error
    handling and router: Starlette's would only add two more layers and a routing pass.
    """

    def __init__(self, http: ASGIApp, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.http = http

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.http(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


# The garbage collector's generation thresholds while the app serves (Python's: 700, 10,
# 10). Streams allocate a few objects per token, nearly all freed by reference counting
# within a millisecond; at Python's thresholds those allocations set off a full collection
# every few seconds with 1,000 streams open, each walking every object of every stream
# (50-370 ms with the loop stopped: py-spy and gc.callbacks on bench_streams.py --many).
# A young generation of 50,000 lets the short-lived objects die before a collection
# sees them, so far fewer survive into the old generations to trigger full ones.
GC_THRESHOLDS = (50_000, 20, 10)

_startup_frozen = False  # by the first app this process served


def freeze_startup_objects() -> None:
    """What a server process built before serving (the spec, validators, routes) lives as
    long as the process: keep it out of every later garbage collection pass. Only the first
    app a process serves does this; the test suite builds hundreds of apps in one process,
    each gone after its test, and a full collection before each freeze cost a fifth of an
    in-process test's time."""
    global _startup_frozen
    if not _startup_frozen:
        gc.collect()
        gc.freeze()
        _startup_frozen = True


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or Settings()
    logging.basicConfig(level=settings.log_level.upper())
    # Connexion warns on every request to an operation that accepts two body types.
    logging.getLogger("connexion.operations").setLevel(logging.ERROR)
    database = db.open_database(settings.effective_database_url)
    db.migrate(database)

    spec = authored_spec()
    registry = CollectorRegistry()
    # Off the loop on PostgreSQL; on SQLite a few a turn of the loop.
    calls = DatabaseCalls(settings.effective_database_url, settings.inline_db_ms_per_turn / 1000)
    fanout = event_fanout(settings)
    bus = EventBus(db=calls, fanout=fanout, history=settings.stream_history_events)
    queue = execution_queue(settings)
    executor = Executor(engine_config(settings), bus, calls, queue=queue, fanout=fanout)
    supervisor = Supervisor(supervisor_config(settings), executor, calls)
    limiter = None
    if settings.rate_limit_enabled:
        limiter = RateLimiter(
            settings.redis_url,
            anonymous=settings.rate_limit_anonymous,
            authenticated=settings.rate_limit_authenticated,
            premium=settings.rate_limit_premium,
        )
    services = Services(
        settings=settings,
        tokens=TokenService(settings, calls),
        executor=executor,
        bus=bus,
        metrics=registry,
        db=calls,
        supervisor=supervisor,
        load_metrics=LoadMetrics(registry),
        rate_limiter=limiter,  # the WebSocket channels count in the same buckets
        fanout=fanout,
    )

    api = CadreConnexionApp(
        __name__,
        services=services,
        jsonifier=jsonifier,
        validator_map={
            **validator_map(max_json_depth=settings.max_json_depth),
            "response": RESPONSE_VALIDATORS,
        },
        # /openapi.json is getOpenapi (cadre/spec_docs.py: the authored document, not
        # Connexion's expanded copy); the Swagger UI page loads it from there.
        swagger_ui_options=SwaggerUIOptions(
            swagger_ui_path=DOCS_PATH, spec_path=SPEC_URL, serve_spec=False
        ),
        middlewares=middleware_stack(
            docs_prefixes=(DOCS_PATH,),
            validate_responses=settings.validate_responses,
            rate_limit=None
            if limiter is None
            else functools.partial(RateLimitMiddleware, limiter=limiter),
        ),
    )
    api.add_api(
        spec,
        strict_validation=True,
        validate_responses=settings.validate_responses,
        pythonic_params=True,
        resolver=TagResolver(),
    )
    error_handler = make_error_handler(method_index(spec))
    for exc_type in (Exception, HTTPException, connexion.ProblemException):
        api.add_error_handler(exc_type, error_handler)

    @asynccontextmanager
    async def lifespan(_app: Starlette):
        working: asyncio.Task[None] | None = None
        if queue is not None:
            from cadre.engine.queue import install_schema

            await calls(install_schema, database)
            await queue.open()
        checkpointer = None
        if isinstance(database, peewee.SqliteDatabase) and database.database != ":memory:":
            checkpointer = Checkpointer(database.database)  # off the loop, not in a commit
            checkpointer.start()
        await executor.start()
        if queue is not None and settings.serve_worker:
            working = asyncio.create_task(executor.work())
        await supervisor.start()
        freeze_startup_objects()
        thresholds = gc.get_threshold()
        gc.set_threshold(*GC_THRESHOLDS)
        yield
        gc.set_threshold(*thresholds)
        await supervisor.stop()
        if working is not None:  # stop claiming; running executions get their grace time
            working.cancel()
            try:
                await working
            except asyncio.CancelledError:
                pass
            except Exception as exc:  # it had stopped on its own (its database went away)
                logging.getLogger("cadre.queue").warning("the in-process worker failed: %r", exc)
        await executor.stop()
        if queue is not None:
            await queue.close()
        if fanout is not None:
            await fanout.aclose()
        await services.tokens.aclose()
        if limiter is not None:
            await limiter.aclose()
        if checkpointer is not None:
            await checkpointer.stop()
        db.close_all(database)

    http: ASGIApp = api
    if settings.cors_origin_list:
        http = CORSMiddleware(
            http,
            allow_origins=settings.cors_origin_list,
            allow_methods=["GET", "POST", "PATCH", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-Request-ID"],
            expose_headers=[
                "X-Request-ID",
                "X-RateLimit-Limit",
                "X-RateLimit-Remaining",
                "X-RateLimit-Reset",
                "Retry-After",
            ],
        )
    http = DocsPolicyMiddleware(http, prefixes=(DOCS_PATH, REDOC_PATH))
    http = BodyLimitMiddleware(http, max_bytes=settings.max_body_bytes)
    http = MetricsMiddleware(http, metrics=RequestMetrics(registry), routes=operation_routes(spec))
    http = RequestContextMiddleware(http)
    app = CadreApp(http, routes=streams.routes(spec), lifespan=lifespan)
    app.state.services = services  # what the WebSocket routes use
    return app
