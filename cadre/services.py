"""The services one app's handlers and streams may use, built once by the app factory.

``cadre.connexion.binding.Binder`` passes each handler the ones it names as
parameters; the WebSocket and SSE routes read them from the outer app's
``state.services``. Nothing reaches them through a process-wide global, so
several apps (the tests build one per test) never share them by accident.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

from cadre.auth import TokenService
from cadre.db_calls import DatabaseCalls
from cadre.engine.events import EventBus
from cadre.engine.executor import Executor
from cadre.engine.load import LoadMetrics
from cadre.engine.supervisor import Supervisor
from cadre.middleware.rate_limit import RateLimiter
from cadre.settings import Settings

if TYPE_CHECKING:  # Redis's client loads only when CADRE_REDIS_URL is set
    from cadre.engine.fanout import Fanout


@dataclass(frozen=True)
class Services:
    settings: Settings
    tokens: TokenService
    executor: Executor
    bus: EventBus
    metrics: CollectorRegistry
    db: DatabaseCalls  # blocking storage calls of async handlers: ``await db(fn, *args)``
    supervisor: Supervisor
    load_metrics: LoadMetrics  # refreshed on each read of /metrics
    rate_limiter: RateLimiter | None = None  # None when CADRE_RATE_LIMIT_ENABLED=false
    fanout: Fanout | None = None  # Redis, when CADRE_REDIS_URL is set


SERVICE_NAMES = frozenset(field.name for field in fields(Services))
