"""Provider names and how each is built from settings: a new provider is one entry here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cadre.engine.providers.anthropic import AnthropicProvider
from cadre.engine.providers.base import Provider, ProviderNotConfigured
from cadre.engine.providers.echo import EchoProvider
from cadre.engine.providers.openai import OpenAIProvider


@dataclass(frozen=True)
class ProviderSettings:
    openai_api_key: str | None = None
    openai_base_url: str = "https://api.openai.com/v1"
    anthropic_api_key: str | None = None
    anthropic_base_url: str = "https://api.anthropic.com"
    request_timeout: float = 120.0


def _key(value: str | None, provider: str) -> str:
    if not value:
        variable = f"CADRE_{provider.upper()}_API_KEY"
        raise ProviderNotConfigured(
            f"The {provider} provider is not configured: set {variable} to use it."
        )
    return value


_FACTORIES: dict[str, Callable[[ProviderSettings], Provider]] = {
    "echo": lambda s: EchoProvider(),
    "openai": lambda s: OpenAIProvider(
        api_key=_key(s.openai_api_key, "openai"),
        base_url=s.openai_base_url,
        timeout=s.request_timeout,
    ),
    "anthropic": lambda s: AnthropicProvider(
        api_key=_key(s.anthropic_api_key, "anthropic"),
        base_url=s.anthropic_base_url,
        timeout=s.request_timeout,
    ),
}

PROVIDER_NAMES: tuple[str, ...] = tuple(_FACTORIES)


def get_provider(name: str, settings: ProviderSettings) -> Provider:
    """A new provider instance; ``ProviderNotConfigured`` if its API key is missing."""
    factory = _FACTORIES.get(name)
    if factory is None:
        raise ValueError(f"Unknown provider {name!r}; choose one of {', '.join(PROVIDER_NAMES)}.")
    return factory(settings)
