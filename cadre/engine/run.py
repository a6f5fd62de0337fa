"""One execution's agent loop: provider turns, tool calls, usage, costs and budgets.

The loop stops by raising ``Stop`` (a budget ran out, a provider failed) or by
being cancelled; ``Executor`` turns either into the execution's terminal state.

``cost_limit`` holds exactly, as far as the provider keeps to what it is asked:

- before a call, its prompt is priced at the provider's own count, or at an upper
  bound of it (``Provider.count_prompt_tokens``); a call whose prompt alone would pass
  the limit is not made;
- the call's ``max_tokens`` is cut to the completion tokens the rest of the budget
  pays for, so even its worst case stays within the limit;
- no token that would pass the limit is published (a provider that ignores
  ``max_tokens`` is cut off before it);
- after the call its real usage, as the provider reports it, is billed; were that
  above the limit (a provider counting more prompt tokens than the bound), the run
  still ends ``cost_limit_exceeded``, never ``completed``, and the record shows what
  the provider really charged.

A call cut short by the budget's ``max_tokens`` ends the run ``cost_limit_exceeded``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cadre.engine.events import EventBus
from cadre.engine.pricing import DECIMALS, Price, PriceTable
from cadre.engine.providers.base import (
    Message,
    Provider,
    ProviderError,
    ProviderRequest,
    TextDelta,
    ToolCall,
    ToolCallRequested,
    ToolSpec,
    UsageReport,
)
from cadre.engine.tools.base import (
    DEFAULT_AST_LIMITS,
    DEFAULT_PATH_LIMITS,
    DEFAULT_SHELL_LIMITS,
    AstLimits,
    PathLimits,
    ShellLimits,
    ToolContext,
)
from cadre.engine.tools.registry import TOOLS, execute_tool
from cadre.errors import CadreError
from storage import costs
from storage.executions import Execution


class Stop(Exception):
    """Ends a run early with a stop reason (the status is ``failed``)."""

    def __init__(self, stop_reason: str, message: str) -> None:
        super().__init__(message)
        self.stop_reason = stop_reason
        self.message = message


@dataclass
class Tally:
    """What the run consumed so far."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    steps: int = 0
    tool_calls: int = 0
    output: str = ""
    first_token_at: float | None = None
    started: float = field(default_factory=time.monotonic)


class AgentRun:
    def __init__(
        self,
        execution: Execution,
        *,
        bus: EventBus,
        provider: Provider,
        prices: PriceTable,
        workspace: Path,
        max_steps: int,
        max_tokens: int,
        checkpoint: Callable[[], Awaitable[None]],
        path_limits: PathLimits = DEFAULT_PATH_LIMITS,
        ast_limits: AstLimits = DEFAULT_AST_LIMITS,
        quota_bytes: int | None = None,
        shell_limits: ShellLimits = DEFAULT_SHELL_LIMITS,
    ) -> None:
        self.execution = execution
        self.bus = bus
        self.provider = provider
        self.prices = prices
        self.workspace = workspace
        self.max_steps = max_steps
        self.max_tokens = max_tokens
        self.path_limits = path_limits
        self.ast_limits = ast_limits
        self.quota_bytes = quota_bytes
        self.shell_limits = shell_limits
        self.checkpoint = checkpoint
        self.tally = Tally()
        config = execution.config
        self.tool_names: list[str] = [name for name in config["tools"] if name in TOOLS]
        self.temperature: float | None = config.get("temperature")
        self.messages: list[Message] = []
        if config.get("instructions"):
            self.messages.append(Message(role="system", content=config["instructions"]))
        self.messages.append(Message(role="user", content=execution.task))
        self.current_parts: list[str] = []

    def publish(self, type_: str, **data: Any) -> None:
        self.bus.publish(self.execution.id, type_, **data)

    async def run(self) -> dict[str, Any]:
        """Turns until the model answers without asking for tools; returns the result."""
        context = ToolContext(
            workspace=self.workspace,
            mode=self.execution.mode,
            path_limits=self.path_limits,
            ast_limits=self.ast_limits,
            quota_bytes=self.quota_bytes,
            shell_limits=self.shell_limits,
        )
        specs = tuple(
            ToolSpec(name=t.name, description=t.description, parameters=t.parameters)
            for t in (TOOLS[n] for n in self.tool_names)
        )
        while True:
            if self.tally.steps >= self.max_steps:
                raise Stop("tool_error", f"Stopped after {self.max_steps} steps without an answer.")
            await self.checkpoint()
            text, calls = await self._turn(specs)
            if not calls:
                self.tally.output = text
                return self.result()
            self.messages.append(Message(role="assistant", content=text, tool_calls=list(calls)))
            for call in calls:
                await self.checkpoint()
                self.messages.append(await self._call_tool(call, context))

    def partial_output(self) -> str:
        """What the model said in the turn that was cut short."""
        return "".join(self.current_parts)

    def result(self) -> dict[str, Any]:
        return {
            "output": self.tally.output,
            "steps": self.tally.steps,
            "tool_calls": self.tally.tool_calls,
        }

    async def _turn(self, specs: tuple[ToolSpec, ...]) -> tuple[str, list[ToolCall]]:
        """One provider call, streamed: tokens out as events, each within the budget."""
        request = ProviderRequest(
            model=self.execution.model,
            messages=list(self.messages),
            tools=specs,
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            inputs=self.execution.inputs,
        )
        prompt_tokens = self.provider.count_prompt_tokens(request)
        max_tokens = self._affordable(prompt_tokens)
        capped = max_tokens < self.max_tokens
        if capped:
            request = replace(request, max_tokens=max_tokens)
        self.tally.steps += 1
        parts = self.current_parts = []
        calls: list[ToolCall] = []
        usage: UsageReport | None = None
        streamed = 0
        stream = self.provider.stream(request)
        self._note_progress(prompt_tokens, 0)
        try:
            async for event in stream:
                if isinstance(event, TextDelta):
                    if not self._within_budget(prompt_tokens, streamed + 1):
                        raise self._over_budget()  # before the token is seen by anyone
                    if self.tally.first_token_at is None:
                        self.tally.first_token_at = time.monotonic()
                    streamed += 1
                    self._note_progress(prompt_tokens, streamed)  # stored with the token
                    parts.append(event.text)
                    self.publish("token", content=event.text)
                    await self.checkpoint()
                elif isinstance(event, ToolCallRequested):
                    calls.append(event.call)
                elif isinstance(event, UsageReport):
                    usage = event
        except ProviderError as exc:
            raise Stop("provider_error", exc.message) from exc
        finally:
            self.bus.drop_progress(self.execution.id)
            with suppress(Exception):
                await stream.aclose()
            # Whatever happened, account for what this call consumed, and nothing after.
            if usage is None and streamed:  # cut short: the prompt as counted, what streamed
                usage = UsageReport(prompt_tokens=prompt_tokens, completion_tokens=streamed)
            if usage is not None:
                self._account(usage)
        # Reconciled with what the provider billed: a run never goes on past its limit,
        # nor completes with an answer the budget cut short.
        limit = self.execution.cost_limit
        if limit is not None and self.tally.cost_usd > limit:
            raise self._over_budget()
        if capped and usage is not None and usage.completion_tokens >= max_tokens:
            raise self._over_budget()
        return "".join(parts), calls

    def _note_progress(self, prompt_tokens: int, completion_tokens: int) -> None:
        """The run's usage with this call's so far, written with its next events: after a
        crash, recovery bills what the call consumed until then (``Executor.recover``)."""
        execution = self.execution
        cost, _ = self.prices.cost(
            execution.provider, execution.model, prompt_tokens, completion_tokens
        )
        self.bus.progress(
            execution.id,
            prompt_tokens=self.tally.prompt_tokens + prompt_tokens,
            completion_tokens=self.tally.completion_tokens + completion_tokens,
            cost_usd=round(self.tally.cost_usd + cost, DECIMALS),
            steps=self.tally.steps,
        )

    def _price(self) -> Price | None:
        return self.prices.lookup(self.execution.provider, self.execution.model)

    def _within_budget(self, prompt_tokens: int, completion_tokens: int) -> bool:
        """Whether the run's cost after a call of that many tokens is within its limit."""
        limit = self.execution.cost_limit
        price = self._price()
        if limit is None or price is None:
            return True
        cost = price.cost(prompt_tokens, completion_tokens)
        return round(self.tally.cost_usd + cost, DECIMALS) <= limit

    def _affordable(self, prompt_tokens: int) -> int:
        """The call's ``max_tokens``: the setting's, or fewer if the budget pays for fewer."""
        price = self._price()
        limit = self.execution.cost_limit
        if limit is None or price is None:
            return self.max_tokens
        if not self._within_budget(prompt_tokens, 1):
            raise self._over_budget()
        if price.output_per_million == 0:
            return self.max_tokens
        left = limit - self.tally.cost_usd - price.cost(prompt_tokens, 0)
        tokens = min(self.max_tokens, math.floor(left * 1_000_000 / price.output_per_million) + 1)
        while tokens > 1 and not self._within_budget(prompt_tokens, tokens):
            tokens -= 1
        return tokens

    def _over_budget(self) -> Stop:
        return Stop(
            "cost_limit_exceeded",
            f"Stopped: continuing would pass the cost limit of {self.execution.cost_limit} USD.",
        )

    def _account(self, usage: UsageReport) -> None:
        execution = self.execution
        cost, priced = self.prices.cost(
            execution.provider, execution.model, usage.prompt_tokens, usage.completion_tokens
        )
        self.tally.prompt_tokens += usage.prompt_tokens
        self.tally.completion_tokens += usage.completion_tokens
        self.tally.cost_usd = round(self.tally.cost_usd + cost, 10)
        totals = {
            "prompt_tokens": self.tally.prompt_tokens,
            "completion_tokens": self.tally.completion_tokens,
            "cost_usd": self.tally.cost_usd,
            "steps": self.tally.steps,
        }
        costs.bill_call(
            totals,
            owner=execution.owner_id,
            agent_id=execution.agent_id,
            agent_name=execution.agent_name,
            execution_id=execution.id,
            provider=execution.provider,
            model=execution.model,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cost_usd=cost,
            priced=priced,
        )
        self.publish(
            "usage",
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            total_tokens=usage.prompt_tokens + usage.completion_tokens,
            cost_usd=cost,
            total_cost_usd=self.tally.cost_usd,
            priced=priced,
        )

    async def _call_tool(self, call: ToolCall, context: ToolContext) -> Message:
        self.tally.steps += 1
        self.tally.tool_calls += 1
        self.publish("tool_call", call_id=call.id, tool=call.tool, args=call.args)
        try:
            if call.tool not in self.tool_names:
                raise CadreError(
                    f"The tool '{call.tool}' is not available to this agent.",
                    error="tool_not_available",
                )
            result = await execute_tool(call.tool, call.args, context)
        except CadreError as exc:
            # The model hears why (refused in safe mode, outside the workspace, bad args)
            # and may recover; the refusal is an event like any other.
            self.publish(
                "tool_result", call_id=call.id, tool=call.tool, error=exc.message, code=exc.error
            )
            return Message(
                role="tool", content=f"error: {exc.message}", tool_call_id=call.id, name=call.tool
            )
        except Exception as exc:
            raise Stop("tool_error", f"The tool '{call.tool}' failed: {exc}") from exc
        self.publish("tool_result", call_id=call.id, tool=call.tool, result=result)
        content = json.dumps(result, ensure_ascii=False)
        return Message(role="tool", content=content, tool_call_id=call.id, name=call.tool)
