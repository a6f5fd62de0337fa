"""Runs executions as asyncio tasks: queueing, control (cancel, pause, resume), recovery.

Each execution is one task. At most ``max_concurrent`` run at once, at most
``max_concurrent_per_user`` of one user; the rest wait ``queued``, in order, a
user at their cap not holding up the others (``Scheduler``). A paused run gives its
slot back and queues again when resumed. Every run ends ``timeout`` after
``max_execution_seconds`` at most, paused time included. Control requests reach
a local run directly; one run by another worker gets them through the ``control``
column, which every worker reads on its heartbeat. On the same beat each worker
cancels the runs (running, queued or paused) of accounts that were disabled or
deleted, however that happened (a direct database update included). Runs whose worker stopped
beating (killed, crashed) are finished as ``failed``/``interrupted`` by whichever
worker notices first.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from cadre.engine.events import EventBus
from cadre.engine.pricing import PriceTable
from cadre.engine.providers.base import Provider, ProviderNotConfigured
from cadre.engine.providers.registry import ProviderSettings, get_provider
from cadre.engine.run import AgentRun, Stop
from cadre.engine.scheduler import Scheduler
from cadre.engine.tools.base import (
    DEFAULT_AST_LIMITS,
    DEFAULT_PATH_LIMITS,
    DEFAULT_SHELL_LIMITS,
    AstLimits,
    PathLimits,
    ShellLimits,
    WorkspaceQuotaExceeded,
)
from cadre.engine.tools.workspace import sandbox_copy, user_workspace
from cadre.errors import Conflict
from storage import costs, users
from storage import executions as store
from storage.executions import Execution
from storage.ids import utcnow

log = logging.getLogger("cadre.engine")


@dataclass(frozen=True)
class EngineConfig:
    data_dir: Path
    providers: ProviderSettings
    prices: PriceTable
    max_concurrent: int = 16
    max_concurrent_per_user: int = 4
    max_execution_seconds: int = 3600
    max_steps: int = 32
    max_tokens: int = 4096
    max_inputs_bytes: int = 64 * 1024
    path_limits: PathLimits = DEFAULT_PATH_LIMITS
    ast_limits: AstLimits = DEFAULT_AST_LIMITS
    workspace_quota_bytes: int | None = None
    shell_limits: ShellLimits = DEFAULT_SHELL_LIMITS
    heartbeat_seconds: float = 1.0


class RunHandle:
    """The local side of one execution: its task and the switches its loop checks."""

    def __init__(self, execution_id: str, owner: str) -> None:
        self.execution_id = execution_id
        self.owner = owner
        self.task: asyncio.Task[None] | None = None
        self.stop_reason: str | None = None  # set before the task is cancelled on purpose
        self.running = asyncio.Event()  # cleared while paused
        self.running.set()
        self.started = False
        self.has_slot = False
        self.waiting = False  # in the scheduler's line
        self.status = "queued"  # as last written by this worker


class Executor:
    def __init__(self, config: EngineConfig, bus: EventBus) -> None:
        self.config = config
        self.bus = bus
        self.slots = Scheduler(config.max_concurrent, config.max_concurrent_per_user)
        self.handles: dict[str, RunHandle] = {}
        self.providers: dict[str, Provider] = {}
        self._heartbeat: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        self.recover()
        self._heartbeat = asyncio.create_task(self._beat())

    async def stop(self) -> None:
        """Shutting down: unfinished runs end ``interrupted`` rather than hang."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        for handle in list(self.handles.values()):
            await self._interrupt(handle, "interrupted", wait=5.0)
        for provider in self.providers.values():
            with contextlib.suppress(Exception):
                await provider.aclose()
        self.bus.flush()

    def recover(self) -> int:
        """Finish every unfinished execution whose worker stopped beating; returns how many."""
        stale_after = timedelta(seconds=max(5.0, self.config.heartbeat_seconds * 5))
        recovered = 0
        for execution in store.stale_unfinished(utcnow() - stale_after):
            if execution.id in self.handles:
                continue
            self.bus.open(execution.id)
            self._bill_unbilled(execution)
            self._finish(
                execution.id,
                status="failed",
                stop_reason="interrupted",
                error="The server running this execution stopped before it finished.",
                result=execution.result,
                usage=None,
            )
            recovered += 1
        return recovered

    def _bill_unbilled(self, execution: Execution) -> None:
        """Bill the call a crash cut short: its usage, stored with its events as it streamed,
        is what the execution's totals hold beyond its cost records (each call that ended
        wrote its record and the totals together, so nothing is billed twice)."""
        prompt, completion, cost = costs.billed(execution.id)
        prompt = max(0, execution.prompt_tokens - prompt)
        completion = max(0, execution.completion_tokens - completion)
        if not prompt and not completion:
            return
        call_cost, priced = self.config.prices.cost(
            execution.provider, execution.model, prompt, completion
        )
        costs.bill_call(
            {"cost_usd": round(cost + call_cost, 10)},
            owner=execution.owner_id,
            agent_id=execution.agent_id,
            agent_name=execution.agent_name,
            execution_id=execution.id,
            provider=execution.provider,
            model=execution.model,
            prompt_tokens=prompt,
            completion_tokens=completion,
            cost_usd=call_cost,
            priced=priced,
        )

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.config.heartbeat_seconds)
            try:
                store.touch_heartbeats(list(self.handles))
                for execution_id in list(self.handles):
                    control = store.requested_control(execution_id)
                    if control:
                        store.update_execution(execution_id, control=None)
                        await self.control(execution_id, control)
                self._cancel_disabled()
                self.recover()
            except Exception:  # the heartbeat must outlive a database hiccup
                log.exception("executor heartbeat failed")

    def _cancel_disabled(self) -> None:
        """Cancel this worker's runs whose account is disabled or gone (one query a beat)."""
        disabled = users.inactive_among({handle.owner for handle in self.handles.values()})
        for handle in list(self.handles.values()):
            if handle.owner in disabled and handle.stop_reason is None:
                log.info("cancelling %s: its account is disabled", handle.execution_id)
                handle.stop_reason = "cancelled"
                if handle.task is not None and not handle.task.done():
                    handle.task.cancel()

    # -- submitting and controlling ------------------------------------------------------

    def submit(self, execution: Execution) -> None:
        handle = RunHandle(execution.id, execution.owner_id)
        self.handles[execution.id] = handle
        self.bus.publish(execution.id, "status", status="queued")
        handle.task = asyncio.create_task(self._run(execution, handle))

    async def control(self, execution_id: str, action: str) -> None:
        """Apply ``cancel``/``pause``/``resume``; 409 for a transition the state forbids."""
        status = store.get_status(execution_id)
        allowed = {
            "cancel": {"queued", "running", "paused"},
            "pause": {"queued", "running"},
            "resume": {"paused"},
        }[action]
        if status not in allowed:
            raise Conflict(
                f"Cannot {action} an execution that is {status}.",
                error="invalid_transition",
                details={"status": status},
            )
        handle = self.handles.get(execution_id)
        if handle is None:  # another worker runs it: leave word, it reads it within a beat
            store.update_execution(execution_id, control=action)
            await self._await_status(
                execution_id, lambda now: now != status, 3 * self.config.heartbeat_seconds
            )
            return
        if action == "cancel":
            await self._interrupt(handle, "cancelled", wait=2.0)
        elif action == "pause":
            handle.running.clear()
            self._release(handle)  # a paused run holds no slot
            self._set_status(handle, "paused")
        else:
            # Back in line: straight to running only if a slot is free for this user now
            # (no waiter that could take it is ever left waiting, so this jumps nobody).
            if handle.started and not handle.waiting and self.slots.try_acquire(handle.owner):
                handle.has_slot = True
            self._set_status(handle, "running" if handle.has_slot else "queued")
            handle.running.set()

    def _set_status(self, handle: RunHandle, status: str, **fields: Any) -> None:
        handle.status = status
        store.update_execution(handle.execution_id, status=status, **fields)
        self.bus.publish(handle.execution_id, "status", status=status)

    def _release(self, handle: RunHandle) -> None:
        if handle.has_slot:
            handle.has_slot = False
            self.slots.release(handle.owner)

    async def _interrupt(self, handle: RunHandle, reason: str, wait: float) -> None:
        handle.stop_reason = reason
        if handle.task is not None and not handle.task.done():
            handle.task.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(asyncio.shield(handle.task), wait)

    async def _await_status(
        self, execution_id: str, done: Callable[[str | None], bool], timeout: float
    ) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not done(store.get_status(execution_id)):
            await asyncio.sleep(0.05)

    # -- running -------------------------------------------------------------------------

    async def _checkpoint(self, handle: RunHandle) -> None:
        """Between two events: wait out a pause, then for a slot (cancel still gets through)."""
        while not (handle.running.is_set() and handle.has_slot):
            if not handle.running.is_set():
                self._release(handle)
                await handle.running.wait()
                continue
            handle.waiting = True
            try:
                await self.slots.acquire(handle.owner)
            finally:
                handle.waiting = False
            handle.has_slot = True
            if not handle.running.is_set():  # paused while it waited: give the slot back
                continue
            if not handle.started:
                handle.started = True
                self._set_status(handle, "running", started_at=utcnow())
            elif handle.status != "running":
                self._set_status(handle, "running")

    async def _run(self, execution: Execution, handle: RunHandle) -> None:
        result: dict[str, Any] | None = None
        run: AgentRun | None = None
        limit = self.config.max_execution_seconds
        timeout = limit if execution.timeout is None else min(execution.timeout, limit)
        try:
            await self._checkpoint(handle)
            async with asyncio.timeout(timeout):
                provider = self._provider(execution.provider)
                workspace = user_workspace(self.config.data_dir, execution.owner_id)
                async with contextlib.AsyncExitStack() as stack:
                    if execution.mode == "sandbox":
                        workspace = await stack.enter_async_context(
                            sandbox_copy(workspace, self.config.workspace_quota_bytes)
                        )
                    run = AgentRun(
                        execution,
                        bus=self.bus,
                        provider=provider,
                        prices=self.config.prices,
                        workspace=workspace,
                        max_steps=self.config.max_steps,
                        max_tokens=self.config.max_tokens,
                        path_limits=self.config.path_limits,
                        ast_limits=self.config.ast_limits,
                        quota_bytes=self.config.workspace_quota_bytes,
                        shell_limits=self.config.shell_limits,
                        checkpoint=lambda: self._checkpoint(handle),
                    )
                    result = await run.run()
            self._release(handle)
            self._finish_run(execution, run, "completed", "completed", None, result)
        except ProviderNotConfigured as exc:
            self._finish_run(execution, run, "failed", "provider_not_configured", exc.message, None)
        except Stop as stop:
            self._finish_run(execution, run, "failed", stop.stop_reason, stop.message, None)
        except WorkspaceQuotaExceeded as exc:  # sandbox mode, workspace already over its quota
            self._finish_run(execution, run, "failed", "tool_error", exc.message, None)
        except TimeoutError:
            if execution.timeout is not None and execution.timeout <= limit:
                message = f"Stopped after the timeout of {execution.timeout} s."
            else:
                message = f"Stopped after the server's longest run time of {limit} s."
            self._finish_run(execution, run, "failed", "timeout", message, None)
        except asyncio.CancelledError:
            reason = handle.stop_reason or "interrupted"
            status = "cancelled" if reason == "cancelled" else "failed"
            message = None if reason == "cancelled" else "The server stopped during the execution."
            self._finish_run(execution, run, status, reason, message, None)
        except Exception as exc:  # every execution ends in a terminal state, whatever fails
            log.exception("execution %s failed", execution.id)
            self._finish_run(execution, run, "failed", "provider_error", str(exc), None)
        finally:
            self._release(handle)
            self.handles.pop(execution.id, None)

    def _provider(self, name: str) -> Provider:
        provider = self.providers.get(name)
        if provider is None:
            provider = get_provider(name, self.config.providers)
            self.providers[name] = provider
        return provider

    def _finish_run(
        self,
        execution: Execution,
        run: AgentRun | None,
        status: str,
        stop_reason: str,
        error: str | None,
        result: dict[str, Any] | None,
    ) -> None:
        usage = None
        if run is not None:
            tally = run.tally
            if result is None:
                result = {**run.result(), "output": run.partial_output()}
            now = time.monotonic()
            usage = {
                "prompt_tokens": tally.prompt_tokens,
                "completion_tokens": tally.completion_tokens,
                "cost_usd": tally.cost_usd,
                "steps": tally.steps,
                "latency_ms": round((now - tally.started) * 1000),
                "time_to_first_token_ms": None
                if tally.first_token_at is None
                else round((tally.first_token_at - tally.started) * 1000),
            }
        self._finish(
            execution.id,
            status=status,
            stop_reason=stop_reason,
            error=error,
            result=result,
            usage=usage,
        )

    def _finish(
        self,
        execution_id: str,
        *,
        status: str,
        stop_reason: str,
        error: str | None,
        result: dict[str, Any] | None,
        usage: dict[str, Any] | None,
    ) -> None:
        """Write the terminal state, then tell subscribers (status first, so none waits forever)."""
        store.update_execution(
            execution_id,
            status=status,
            stop_reason=stop_reason,
            error=error,
            result=result,
            completed_at=utcnow(),
            control=None,
            **(usage or {}),
        )
        execution = store.Execution.get_by_id(execution_id)
        if error is not None:
            self.bus.publish(execution_id, "error", message=error, stop_reason=stop_reason)
        self.bus.publish(
            execution_id,
            "complete",
            status=status,
            stop_reason=stop_reason,
            result=result,
            cost=execution.cost_usd,
            usage=execution.usage,
        )
        self.bus.close(execution_id)
