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

Every step stores a checkpoint (``storage.checkpoints``): step 0 is the conversation
as the run starts (stored with the run's start, its status and ``started_at``, when
those are still unwritten: ``start``), then one after each provider turn (the
assistant message, the tool calls it asked for still to run) and one after each tool
result. A step's checkpoint is written in the transaction that stores what the step
produced (the call's cost record and the execution's totals; for a session turn its
messages, tool call and running totals), so a run started again from its last
checkpoint repeats no provider call that completed, and bills none twice; the last
step (an answer asking for no tool) is written with the run's end and its last events,
in one transaction. A run built with a checkpoint's state continues from it.

A session turn (``execution.session_id``) starts from the session's whole history:
its first step stores the task as the session's next user message.

With ``config["permission_mode"]`` set, each tool call is weighed by
``permissions.decide``: ``deny`` answers the model with a refusal, ``ask`` stops the
run (``AwaitingApproval``) after a checkpoint naming the call; the decision, stored
in that checkpoint's ``awaiting``, lets the run go on when it starts again.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, nullcontext, suppress
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from cadre.db_calls import DatabaseCalls
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
from cadre.engine.tools.permissions import decide
from cadre.engine.tools.registry import TOOLS, execute_tool
from cadre.errors import CadreError
from storage import checkpoints, costs, sessions
from storage.executions import Execution


class AwaitingApproval(Exception):
    """The run stopped before a tool call that needs a person's decision."""

    def __init__(self, call: ToolCall) -> None:
        super().__init__(call.id)
        self.call = call


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

    def state(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": self.cost_usd,
            "steps": self.steps,
            "tool_calls": self.tool_calls,
        }


def message_state(message: Message) -> dict[str, Any]:
    """A message as a checkpoint stores it."""
    state: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        state["tool_calls"] = [call_state(c) for c in message.tool_calls]
    if message.tool_call_id is not None:
        state["tool_call_id"] = message.tool_call_id
    if message.name is not None:
        state["name"] = message.name
    return state


def call_state(call: ToolCall) -> dict[str, Any]:
    return {"id": call.id, "tool": call.tool, "args": call.args}


def call_from_state(state: dict[str, Any]) -> ToolCall:
    return ToolCall(id=state["id"], tool=state["tool"], args=state.get("args") or {})


def message_from_state(state: dict[str, Any]) -> Message:
    return Message(
        role=state["role"],
        content=state.get("content") or "",
        tool_calls=[call_from_state(c) for c in state.get("tool_calls") or []],
        tool_call_id=state.get("tool_call_id"),
        name=state.get("name"),
    )


def session_message(message: Message, run_id: str, model: str | None) -> dict[str, Any]:
    """A message as a session's history stores it (``content: {"content": text, ...}``)."""
    content: dict[str, Any] = {"content": message.content}
    if message.tool_calls:
        content["tool_calls"] = [call_state(c) for c in message.tool_calls]
    if message.role == "tool":
        content["tool_call_id"] = message.tool_call_id
        content["tool_name"] = message.name
    return {"message_type": message.role, "content": content, "model": model, "run_id": run_id}


def run_state(
    messages: list[Message], pending: list[ToolCall], tally: Tally, awaiting: dict[str, Any] | None
) -> dict[str, Any]:
    """What a checkpoint holds: enough to continue the run from there."""
    return {
        "messages": [message_state(m) for m in messages],
        "pending": [call_state(c) for c in pending],
        "tally": tally.state(),
        "awaiting": awaiting,
    }


def opening_messages(config: dict[str, Any], task: str, history: list[Message]) -> list[Message]:
    """The conversation a run starts from: the agent's instructions (``config``, the
    execution's), a session's history (for its turns), then the task."""
    instructions = config.get("instructions")
    opening = [Message(role="system", content=instructions)] if instructions else []
    return [*opening, *history, Message(role="user", content=task)]


def opening_state(config: dict[str, Any], task: str) -> dict[str, Any]:
    """Step 0 of a run that is no session turn: stored with the execution when it starts
    as it is created (``cadre.engine.launch``), instead of by the run."""
    return run_state(opening_messages(config, task, []), [], Tally(), None)


def history_messages(rows: list[sessions.SessionMessage]) -> list[Message]:
    """A session's history as provider messages. A turn cut short may have left an
    assistant's tool calls without results (or the reverse): those calls are dropped,
    providers refuse a conversation with either."""
    answered = {r.content.get("tool_call_id") for r in rows if r.message_type == "tool"}
    asked: set[str] = set()
    messages: list[Message] = []
    for row in rows:
        content = row.content
        text = content.get("content") if isinstance(content.get("content"), str) else ""
        if row.message_type == "tool":
            if content.get("tool_call_id") in asked:
                messages.append(
                    Message(
                        role="tool",
                        content=text,
                        tool_call_id=content.get("tool_call_id"),
                        name=content.get("tool_name"),
                    )
                )
            continue
        calls = [
            call_from_state(c) for c in content.get("tool_calls") or [] if c.get("id") in answered
        ]
        asked.update(c.id for c in calls)
        role = row.message_type if row.message_type in ("user", "assistant") else "user"
        messages.append(Message(role=role, content=text, tool_calls=calls))
    return messages


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
        gate: Callable[[], Awaitable[None]],
        gate_open: Callable[[], bool] = lambda: False,
        state: dict[str, Any] | None = None,
        step: int = 0,
        path_limits: PathLimits = DEFAULT_PATH_LIMITS,
        ast_limits: AstLimits = DEFAULT_AST_LIMITS,
        quota_bytes: int | None = None,
        shell_limits: ShellLimits = DEFAULT_SHELL_LIMITS,
        db: DatabaseCalls | None = None,
        billed: tuple[int, int, float] | None = None,
        start: Callable[[], AbstractAsyncContextManager[dict[str, Any]]] | None = None,
    ) -> None:
        """``gate``: waits out a pause (or for a slot) between two events; ``gate_open``:
        True when it would return at once, checked first after each token, where making
        the coroutine cost more. ``billed``: ``costs.billed`` of the execution, read by the
        caller through ``db`` (read here when not given). ``start``: the run's start (its
        status and ``started_at``) if not yet stored, for step 0 to store with its
        checkpoint."""
        self.execution = execution
        # Read for every event: kept as plain attributes, not Peewee's field descriptors.
        self.execution_id: str = execution.id
        self.cost_limit: float | None = execution.cost_limit
        self.db = db or bus.db
        self.bus = bus
        self.provider = provider
        self.prices = prices
        self.workspace = workspace
        self.max_steps = max_steps
        self.max_tokens = max_tokens
        self.path_limits = path_limits
        self.ast_limits = ast_limits
        self.quota_bytes = quota_bytes
        self.gate = gate
        self.gate_open = gate_open
        self.start = start or (lambda: nullcontext({}))
        self.shell_limits = shell_limits
        self.tally = Tally()
        config = execution.config
        self.tool_names: list[str] = [name for name in config["tools"] if name in TOOLS]
        self.temperature: float | None = config.get("temperature")
        self.permission_mode: str | None = config.get("permission_mode")
        self.messages: list[Message] = []
        self.pending: list[ToolCall] = []
        self.awaiting: dict[str, Any] | None = None
        self.step = step
        self.started = state is not None  # False: step 0 is still to be stored
        if state is not None:
            self._restore(state, billed)
        self.current_parts: list[str] = []
        self.streaming = False  # a provider call is under way

    def _restore(self, state: dict[str, Any], billed: tuple[int, int, float] | None) -> None:
        """Continue from a checkpoint; usage so far is what the cost records hold (they
        include a call a crash cut short, which recovery billed)."""
        self.messages = [message_from_state(m) for m in state.get("messages") or []]
        self.pending = [call_from_state(c) for c in state.get("pending") or []]
        self.awaiting = state.get("awaiting")
        tally = state.get("tally") or {}
        self.tally.steps = tally.get("steps", 0)
        self.tally.tool_calls = tally.get("tool_calls", 0)
        prompt, completion, cost = billed or costs.billed(self.execution.id)
        self.tally.prompt_tokens, self.tally.completion_tokens = prompt, completion
        self.tally.cost_usd = round(cost, 10)

    def state(self) -> dict[str, Any]:
        """What a checkpoint of this run holds now."""
        return run_state(self.messages, self.pending, self.tally, self.awaiting)

    async def _save(self, **parts: Any) -> None:
        """The next checkpoint, with what the step produced (``checkpoints.save_step``, one
        transaction, sent whole through ``db``)."""
        self.step += 1
        await self.db(checkpoints.save_step, self.execution, self.step, self.state(), **parts)

    async def _begin(self) -> None:
        """Step 0: the conversation the run starts from (for a session turn, its whole
        history then the task, which the session stores as its next user message)."""
        execution = self.execution
        history: list[Message] = []
        stored: list[dict[str, Any]] = []
        if execution.session_id is not None:
            history = history_messages(await self.db(sessions.history, execution.session_id))
            task = Message(role="user", content=execution.task)
            stored.append(session_message(task, execution.id, None))
        self.messages = opening_messages(execution.config, execution.task, history)
        async with self.start() as start:
            await self.db(
                checkpoints.save_step,
                execution,
                self.step,
                self.state(),
                session_messages=stored,
                totals=start,
            )
        self.started = True

    def publish(self, type_: str, **data: Any) -> None:
        self.bus.publish(self.execution_id, type_, **data)

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
        if not self.started:
            await self._begin()
        while True:
            if self.pending:
                await self.gate()
                await self._call_tool(self.pending[0], context)
                continue
            last = self.messages[-1] if self.messages else None
            if last is not None and last.role == "assistant" and not last.tool_calls:
                self.tally.output = last.content  # stopped just after its answer was stored
                return self.result()
            if self.tally.steps >= self.max_steps:
                raise Stop("tool_error", f"Stopped after {self.max_steps} steps without an answer.")
            await self.gate()
            text, calls = await self._turn(specs)
            if not calls:
                self.tally.output = text
                return self.result()

    def partial_output(self) -> str:
        """What the model said in the turn that was cut short."""
        return "".join(self.current_parts)

    def cut_short_text(self) -> str:
        """What a provider call under way has said so far ("" between calls)."""
        return self.partial_output() if self.streaming else ""

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
        completed = False
        limited = self.cost_limit is not None  # else every token is within the budget
        stream = self.provider.stream(request)
        self.bus.track(self.execution_id, lambda: self._usage_so_far(prompt_tokens, streamed))
        self.streaming = True
        try:
            async for event in stream:
                if isinstance(event, TextDelta):
                    if limited and not self._within_budget(prompt_tokens, streamed + 1):
                        raise self._over_budget()  # before the token is seen by anyone
                    if self.tally.first_token_at is None:
                        self.tally.first_token_at = time.monotonic()
                    streamed += 1  # read by the bus when it stores the token (``track``)
                    parts.append(event.text)
                    self.publish("token", content=event.text)
                    if not self.gate_open():
                        await self.gate()
                elif isinstance(event, ToolCallRequested):
                    calls.append(event.call)
                elif isinstance(event, UsageReport):
                    usage = event
            completed = True
        except ProviderError as exc:
            raise Stop("provider_error", exc.message) from exc
        finally:
            self.bus.drop_progress(self.execution_id)
            with suppress(Exception):
                await stream.aclose()
            if usage is None and streamed:  # cut short: the prompt as counted, what streamed
                usage = UsageReport(prompt_tokens=prompt_tokens, completion_tokens=streamed)
            if not completed and usage is not None:
                await self._account(usage, None)  # what this call consumed, and nothing after
        text = "".join(parts)
        answer = Message(role="assistant", content=text, tool_calls=list(calls))
        self.messages.append(answer)
        self.pending = list(calls)
        await self._account(usage, answer)
        self.streaming = False
        # Reconciled with what the provider billed: a run never goes on past its limit,
        # nor completes with an answer the budget cut short.
        limit = self.cost_limit
        if limit is not None and self.tally.cost_usd > limit:
            raise self._over_budget()
        if capped and usage is not None and usage.completion_tokens >= max_tokens:
            raise self._over_budget()
        return text, calls

    def _usage_so_far(self, prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
        """The run's usage with this call's so far, written with its events: after a crash,
        recovery bills what the call consumed until then (``Executor.recover``)."""
        execution = self.execution
        cost, _ = self.prices.cost(
            execution.provider, execution.model, prompt_tokens, completion_tokens
        )
        return {
            "prompt_tokens": self.tally.prompt_tokens + prompt_tokens,
            "completion_tokens": self.tally.completion_tokens + completion_tokens,
            "cost_usd": round(self.tally.cost_usd + cost, DECIMALS),
            "steps": self.tally.steps,
        }

    def _price(self) -> Price | None:
        return self.prices.lookup(self.execution.provider, self.execution.model)

    def _within_budget(self, prompt_tokens: int, completion_tokens: int) -> bool:
        """Whether the run's cost after a call of that many tokens is within its limit."""
        limit = self.cost_limit
        if limit is None:  # checked for every token: the price is looked up only when needed
            return True
        price = self._price()
        if price is None:
            return True
        cost = price.cost(prompt_tokens, completion_tokens)
        return round(self.tally.cost_usd + cost, DECIMALS) <= limit

    def _affordable(self, prompt_tokens: int) -> int:
        """The call's ``max_tokens``: the setting's, or fewer if the budget pays for fewer."""
        price = self._price()
        limit = self.cost_limit
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
            f"Stopped: continuing would pass the cost limit of {self.cost_limit} USD.",
        )

    async def _account(self, usage: UsageReport | None, answer: Message | None) -> None:
        """Bill a provider call; with its ``answer``, store the step's checkpoint in the same
        transaction (a call cut short is billed alone: there is no step to continue from).
        An answer that asks for no tool ends the run: its step is stored with the run's end,
        in the transaction of its last events (``EventBus.progress``), and so with neither
        if the process dies before (the run is then taken over from the step before)."""
        execution = self.execution
        bill: dict[str, Any] | None = None
        cost = 0.0
        priced = True
        if usage is not None:
            cost, priced = self.prices.cost(
                execution.provider, execution.model, usage.prompt_tokens, usage.completion_tokens
            )
            self.tally.prompt_tokens += usage.prompt_tokens
            self.tally.completion_tokens += usage.completion_tokens
            self.tally.cost_usd = round(self.tally.cost_usd + cost, 10)
            bill = {
                "prompt_tokens": usage.prompt_tokens,
                "completion_tokens": usage.completion_tokens,
                "cost_usd": cost,
                "priced": priced,
            }
        totals = {
            "prompt_tokens": self.tally.prompt_tokens,
            "completion_tokens": self.tally.completion_tokens,
            "cost_usd": self.tally.cost_usd,
            "steps": self.tally.steps,
        }
        if answer is None:
            await self.db(checkpoints.save_step, execution, None, {}, bill=bill, totals=totals)
        elif answer.tool_calls:
            stored = session_message(answer, execution.id, execution.model)
            await self._save(bill=bill, totals=totals, session_messages=[stored])
        else:
            stored = session_message(answer, execution.id, execution.model)
            self.step += 1
            step = partial(
                checkpoints.store_step,
                execution,
                self.step,
                self.state(),
                bill=bill,
                session_messages=[stored],
            )
            self.bus.progress(execution.id, step, **totals)  # fenced there, totals with it
        if usage is not None:
            self.publish(
                "usage",
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                total_tokens=usage.prompt_tokens + usage.completion_tokens,
                cost_usd=cost,
                total_cost_usd=self.tally.cost_usd,
                priced=priced,
            )

    def _decision(self, call: ToolCall) -> tuple[str, str | None, str | None]:
        """``(allow|ask|deny, refusal, its code)`` for a tool call about to run."""
        awaiting = self.awaiting
        if awaiting and awaiting.get("call_id") == call.id and awaiting.get("decision"):
            if awaiting["decision"] == "allow":
                return "allow", None, None
            reason = awaiting.get("reason")
            refusal = "The user denied this tool call" + (f": {reason}" if reason else ".")
            return "deny", refusal, "tool_denied"
        if self.permission_mode is None or call.tool not in self.tool_names:
            return "allow", None, None
        decision = decide(call.tool, self.permission_mode)
        if decision == "deny":
            refusal = (
                f"The tool '{call.tool}' is not permitted in permission mode "
                f"'{self.permission_mode}'."
            )
            return "deny", refusal, "tool_not_permitted"
        return decision, None, None

    async def _call_tool(self, call: ToolCall, context: ToolContext) -> None:
        """Run the first pending call (or refuse it) and store the step; ``AwaitingApproval``
        when a person must decide first."""
        decision, refusal, code = self._decision(call)
        if decision == "ask":
            self.awaiting = {"call_id": call.id, "tool": call.tool, "args": call.args}
            await self._save()
            raise AwaitingApproval(call)
        self.tally.steps += 1
        self.tally.tool_calls += 1
        self.publish("tool_call", call_id=call.id, tool=call.tool, args=call.args)
        started = time.monotonic()
        output: dict[str, Any]
        try:
            if refusal is not None:
                raise CadreError(refusal, error=code or "tool_denied")
            if call.tool not in self.tool_names:
                raise CadreError(
                    f"The tool '{call.tool}' is not available to this agent.",
                    error="tool_not_available",
                )
            result = await execute_tool(call.tool, call.args, context)
        except CadreError as exc:
            # The model hears why (refused in safe mode, outside the workspace, bad args,
            # not permitted) and may recover; the refusal is an event like any other.
            self.publish(
                "tool_result", call_id=call.id, tool=call.tool, error=exc.message, code=exc.error
            )
            content = f"error: {exc.message}"
            status = "denied" if exc.error in ("tool_denied", "tool_not_permitted") else "error"
            output = {"error": exc.message, "code": exc.error}
        except Exception as exc:
            raise Stop("tool_error", f"The tool '{call.tool}' failed: {exc}") from exc
        else:
            self.publish("tool_result", call_id=call.id, tool=call.tool, result=result)
            content = json.dumps(result, ensure_ascii=False)
            status = "success"
            output = result
        message = Message(role="tool", content=content, tool_call_id=call.id, name=call.tool)
        self.messages.append(message)
        self.pending.pop(0)
        self.awaiting = None
        await self._save(
            totals={"steps": self.tally.steps},
            session_messages=[session_message(message, self.execution.id, None)],
            tool_call={
                "call_id": call.id,
                "tool_name": call.tool,
                "tool_input": call.args,
                "tool_output": output,
                "status": status,
                "duration_ms": round((time.monotonic() - started) * 1000),
            },
        )
