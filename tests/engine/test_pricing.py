"""The price table: lookups by model family, cost arithmetic and overrides."""

from __future__ import annotations

import json

import pytest

from cadre.engine.pricing import PRICES_FILE, Price, PriceTable

table = PriceTable.default()


def test_packaged_prices_cover_each_provider_and_echo_is_free():
    data = json.loads(PRICES_FILE.read_text())
    assert {"echo", "openai", "anthropic"} <= set(data)
    assert table.lookup("echo", "whatever-model") == Price(0.0, 0.0)
    assert table.cost("echo", "whatever-model", 1000, 1000) == (0.0, True)


def test_lookup_finds_an_exact_model():
    assert table.lookup("openai", "gpt-4o") == Price(2.5, 10.0)
    assert table.lookup("openai", "gpt-4o-mini") == Price(0.15, 0.6)


@pytest.mark.parametrize(
    ("provider", "model", "family"),
    [
        ("openai", "gpt-4o-2024-08-06", "gpt-4o"),
        ("openai", "gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("openai", "gpt-4-0613", "gpt-4"),
        ("openai", "o3-mini-2025-01-31", "o3-mini"),
        ("anthropic", "claude-3-5-sonnet-20241022", "claude-3-5-sonnet"),
        ("anthropic", "claude-sonnet-4-20250514", "claude-sonnet-4"),
        ("anthropic", "claude-opus-4-5-20251101", "claude-opus-4-5"),
    ],
)
def test_lookup_prices_a_dated_model_as_its_longest_family(provider, model, family):
    assert table.lookup(provider, model) == table.lookup(provider, family)


def test_lookup_needs_a_separator_after_the_family_name():
    # gpt-4.5 is not a dated gpt-4; pricing it as one would be wrong.
    assert table.lookup("openai", "gpt-4.5-preview") is None
    assert table.lookup("openai", "gpt-4oops") is None


def test_lookup_unknown_model_or_provider_is_none():
    assert table.lookup("openai", "llama3:8b") is None
    assert table.lookup("mistral", "mistral-large") is None


def test_cost_multiplies_tokens_by_price_per_million():
    assert table.cost("openai", "gpt-4o", 1000, 500) == (0.0075, True)
    assert table.cost("anthropic", "claude-3-haiku-20240307", 2_000_000, 400_000) == (1.0, True)


def test_cost_is_rounded_free_of_float_noise():
    cheap = PriceTable({"p": {"m": Price(0.1, 0.2)}})
    assert cheap.cost("p", "m", 1, 2) == (0.0000005, True)
    assert cheap.cost("p", "m", 3, 0) == (0.0000003, True)


def test_cost_of_an_unknown_model_is_zero_and_not_known():
    assert table.cost("openai", "my-finetune", 1000, 1000) == (0.0, False)


def test_max_cost_prices_the_whole_completion_allowance():
    assert table.max_cost("openai", "gpt-4o-mini", 1000, 4096) == pytest.approx(0.0026076)
    assert table.max_cost("openai", "my-finetune", 1000, 4096) == 0.0


def test_overrides_replace_and_add_models_and_providers():
    custom = table.with_overrides(
        {
            "openai": {"gpt-4o": {"input_per_million": 1, "output_per_million": 2}},
            "echo": {"metered": {"input_per_million": 1000, "output_per_million": 2000}},
            "local": {"*": {"input_per_million": 0.5, "output_per_million": 0.5}},
        }
    )
    assert custom.lookup("openai", "gpt-4o-2024-08-06") == Price(1.0, 2.0)
    assert custom.lookup("openai", "gpt-4o-mini") == Price(0.15, 0.6)
    assert custom.cost("echo", "metered", 1, 1) == (0.003, True)
    assert custom.lookup("echo", "other") == Price(0.0, 0.0)
    assert custom.lookup("local", "anything") == Price(0.5, 0.5)
    assert table.lookup("openai", "gpt-4o") == Price(2.5, 10.0)  # the original is untouched


@pytest.mark.parametrize(
    ("overrides", "complaint"),
    [
        (["openai"], "keyed by provider"),
        ({"openai": 3}, "keyed by model"),
        ({"openai": {"gpt-4o": 2.5}}, "must be an object"),
        ({"openai": {"gpt-4o": {"input_per_million": 1}}}, "output_per_million"),
        ({"openai": {"x": {"input_per_million": -1, "output_per_million": 1}}}, "non-negative"),
        ({"openai": {"x": {"input_per_million": "1", "output_per_million": 1}}}, "number"),
        ({"openai": {"x": {"input_per_million": True, "output_per_million": 1}}}, "number"),
    ],
)
def test_overrides_of_the_wrong_shape_are_refused(overrides, complaint):
    with pytest.raises(ValueError, match=complaint):
        table.with_overrides(overrides)
