"""What a model call costs: list prices in USD per million tokens, by provider and model.

The packaged ``prices.json`` holds published list prices; settings may override or
add models with a file of the same shape. A dated model name (``gpt-4o-2024-08-06``)
is priced as its family (``gpt-4o``); a provider's ``"*"`` entry prices any model.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PRICES_FILE = Path(__file__).with_name("prices.json")
WILDCARD = "*"
SEPARATORS = "-_:@/"  # what may follow a family name in a longer model name
DECIMALS = 10  # rounding that removes float noise, far below a cent


@dataclass(frozen=True)
class Price:
    input_per_million: float
    output_per_million: float

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        total = prompt_tokens * self.input_per_million + completion_tokens * self.output_per_million
        return round(total / 1_000_000, DECIMALS)


def _amount(entry: dict[str, Any], key: str, where: str) -> float:
    value = entry.get(key)
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or value < 0:
        raise ValueError(f"{where} {key} must be a non-negative number, not {value!r}.")
    return float(value)


def parse_prices(data: Any) -> dict[str, dict[str, Price]]:
    """``{provider: {model: {input_per_million, output_per_million}}}``, checked."""
    if not isinstance(data, dict):
        raise ValueError("Prices must be a JSON object keyed by provider.")
    prices: dict[str, dict[str, Price]] = {}
    for provider, models in data.items():
        if not isinstance(models, dict):
            raise ValueError(f"Prices for {provider!r} must be an object keyed by model.")
        prices[provider] = {}
        for model, entry in models.items():
            if not isinstance(entry, dict):
                raise ValueError(f"The price of {provider}/{model} must be an object.")
            prices[provider][model] = Price(
                input_per_million=_amount(entry, "input_per_million", f"{provider}/{model}"),
                output_per_million=_amount(entry, "output_per_million", f"{provider}/{model}"),
            )
    return prices


class PriceTable:
    def __init__(self, prices: Mapping[str, Mapping[str, Price]]) -> None:
        self._prices = {provider: dict(models) for provider, models in prices.items()}

    @classmethod
    def default(cls) -> PriceTable:
        """The packaged list prices."""
        return cls(parse_prices(json.loads(PRICES_FILE.read_text(encoding="utf-8"))))

    def with_overrides(self, overrides: Any) -> PriceTable:
        """A new table where each model named in ``overrides`` gets that price."""
        merged = {provider: dict(models) for provider, models in self._prices.items()}
        for provider, models in parse_prices(overrides).items():
            merged.setdefault(provider, {}).update(models)
        return PriceTable(merged)

    def lookup(self, provider: str, model: str) -> Price | None:
        """The exact model, else its longest listed family, else the provider's wildcard."""
        models = self._prices.get(provider, {})
        if model in models:
            return models[model]
        families = [
            name
            for name in models
            if name != WILDCARD and model.startswith(name) and model[len(name)] in SEPARATORS
        ]
        if families:
            return models[max(families, key=len)]
        return models.get(WILDCARD)

    def cost(
        self, provider: str, model: str, prompt_tokens: int, completion_tokens: int
    ) -> tuple[float, bool]:
        """``(cost_usd, known)``: a model without a price costs 0.0 and is not known."""
        price = self.lookup(provider, model)
        if price is None:
            return 0.0, False
        return price.cost(prompt_tokens, completion_tokens), True

    def max_cost(
        self, provider: str, model: str, prompt_tokens: int, max_completion_tokens: int
    ) -> float:
        """The most a call may cost, for checking a budget before making it."""
        return self.cost(provider, model, prompt_tokens, max_completion_tokens)[0]
