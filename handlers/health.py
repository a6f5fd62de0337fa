"""Health and metrics (public)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, generate_latest

from cadre import __version__
from cadre.connexion.binding import Reply
from cadre.db_calls import DatabaseCalls
from cadre.engine import load
from cadre.engine.executor import Executor
from models_gen.api import Health
from storage.db import ping

if TYPE_CHECKING:  # Redis's client loads only when CADRE_REDIS_URL is set
    from cadre.engine.fanout import Fanout

METRICS_CONTENT_TYPE = "text/plain"  # the 0.0.4 exposition format, which scrapers assume


async def get_health(executor: Executor, db: DatabaseCalls, fanout: Fanout | None) -> Reply:
    """The database decides the status: without Redis, events and control still work."""
    database = "healthy" if await db(ping) else "unhealthy"
    services = {"database": database}
    if fanout is not None:
        services["redis"] = "healthy" if await fanout.ping() else "unhealthy"
    health = Health(
        status=database,
        version=__version__,
        timestamp=datetime.now(UTC),
        services=services,
        workers=await load.workers(executor),
    )
    return health.model_dump(mode="json", exclude_unset=True), 200 if database == "healthy" else 503


get_api_health = get_health  # /api/v1/health: the same handler


async def get_metrics(
    metrics: CollectorRegistry, load_metrics: load.LoadMetrics, executor: Executor
) -> tuple[bytes, int, dict[str, str]]:
    await load_metrics.refresh(executor)
    return generate_latest(metrics), 200, {"Content-Type": METRICS_CONTENT_TYPE}
