"""The running app's shared services, installed once by the app factory.

Handlers and Connexion's security hooks are plain functions resolved by name
from ``openapi.yaml``; this is how they reach the settings and services of the
app that serves them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from cadre.auth import TokenService
    from cadre.engine.events import EventBus
    from cadre.engine.executor import Executor
    from cadre.settings import Settings


@dataclass
class Runtime:
    settings: Settings
    tokens: TokenService
    bus: EventBus
    executor: Executor
    metrics: CollectorRegistry


_current: Runtime | None = None


def install(value: Runtime) -> None:
    global _current
    _current = value


def current() -> Runtime:
    if _current is None:
        raise RuntimeError("Cadre's app factory has not run in this process")
    return _current
