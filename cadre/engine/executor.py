"""Runs executions as asyncio tasks: queueing, control (cancel, pause, resume), recovery.

Each execution is one task. At most ``max_concurrent`` run at once, at most
``max_concurrent_per_user`` of one user; the rest wait ``queued``, in order, a
user at their cap not holding up the others (``Scheduler``). A paused run gives its
slot back and queues again when resumed. Every run ends ``timeout`` after
``max_execution_seconds`` at most, paused time included. Control requests reach
a local run directly; one run by another worker gets them through the ``control``
column, which every worker reads on its heartbeat, and at once when Redis pokes it
(``cadre.engine.fanout``). On the same beat each worker
cancels the runs (running, queued, paused, or awaiting an approval) of accounts that
were disabled or deleted, however that happened (a direct database update included).

Runs continue from their checkpoints (``AgentRun``). A run whose worker stopped
beating (killed, crashed) is taken over by whichever worker notices first: the
provider call the crash cut short is billed, then the run continues from its last
checkpoint; a paused one stays paused until resumed. A worker shutting down
(``stop``) leaves its runs where they are, resumable at once by the next worker.

A session's turns (``execution.session_id``) run one at a time, in the order they
were asked (``sessions.take_turn``, retried when a local turn ends and on every
beat, so across workers too), in the session's working directory. A run stopped
for a tool approval (``requires_action``) is held by no worker: it lives in its
last checkpoint until ``approve`` submits it again, or it is cancelled.

Every storage call goes through ``db`` (``cadre.db_calls``): inline on SQLite, in a
worker thread on PostgreSQL, so a slow query or a row lock never stalls the event loop.

With a ``queue`` (PostgreSQL) a submitted execution is not started here but handed to
the queue, and this executor runs only what its worker (``work``) claims; takeover then
goes through the queue too. ``cadre.engine.queue`` says how the two fit together.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cadre.db_calls import DatabaseCalls
from cadre.engine.events import EventBus
from cadre.engine.pricing import PriceTable
from cadre.engine.providers.base import Message, Provider, ProviderNotConfigured
from cadre.engine.providers.registry import ProviderSettings, get_provider
from cadre.engine.run import (
    AgentRun,
    AwaitingApproval,
    Stop,
    opening_state,
    session_message,
)
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
from cadre.engine.tools.workspace import sandbox_copy, user_workspace, workspace_path
from cadre.engine.user_slots import UserSlots
from cadre.errors import Conflict
from storage import checkpoints, costs, sessions, users
from storage import executions as store
from storage.executions import Execution
from storage.ids import utcnow

if TYPE_CHECKING:  # Redis's client and Procrastinate load only when configured
    from cadre.engine.fanout import Fanout
    from cadre.engine.queue import ExecutionQueue

log = logging.getLogger("cadre.engine")

NOTHING_BILLED = (0, 0, 0.0)  # a new run's usage: no cost record yet


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
    shutdown_grace_seconds: float = 30.0


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
        self.user_slot: int | None = None  # across workers (``UserSlots``), with a queue
        self.waiting = False  # in the scheduler's line
        self.status = "queued"  # as last written by this worker
        self.queued_written = False  # the "queued" status of this start is stored
        self.admission: asyncio.Task[None] | None = None  # storing that status, off the loop
        self.finishing = False  # writing its end: a second cancel must not cut that short
        self.turn_ended = False  # its session turn was ended with its terminal state
        self.new = False  # just created: nothing stored to read (no checkpoint, or ``opened``)
        self.opened = False  # created running with its step 0, holding a slot (``launch``)
        self.began = False  # its task runs (a task cancelled before that never would)
        self.unannounced = False  # its stored "running" has no event yet (``opened``)
        # The start ("running", ``started_at``) the gate left for the run's step 0 to
        # store in its transaction (``_defer_start``); status writes hold ``writing``.
        self.unwritten: dict[str, Any] = {}
        self.writing = asyncio.Lock()


class Executor:
    def __init__(
        self,
        config: EngineConfig,
        bus: EventBus,
        db: DatabaseCalls | None = None,
        queue: ExecutionQueue | None = None,
        fanout: Fanout | None = None,
    ) -> None:
        self.config = config
        self.bus = bus
        self.db = db or bus.db
        self.fanout = fanout  # with Redis: control requests reach the holder at once
        self._poked: set[asyncio.Task[None]] = set()
        self.queue = queue
        self.working = False  # this process claims queued executions (``work``)
        self._dispatching: dict[str, asyncio.Task[None]] = {}
        self._dispatch_order = asyncio.Lock()
        self.user_slots: UserSlots | None = None  # while working
        self._giving_back: set[asyncio.Task[None]] = set()
        self._beats = 0
        self.slots = Scheduler(config.max_concurrent, config.max_concurrent_per_user)
        self.handles: dict[str, RunHandle] = {}
        self.providers: dict[str, Provider] = {}
        self._heartbeat: asyncio.Task[None] | None = None
        self._turn_ended = asyncio.Event()  # set (and replaced) whenever a session turn ends
        # Off the loop, runs write their "queued" status one at a time, in the order they
        # were started, so that they still get in line for a slot in that order.
        self._admission = asyncio.Lock()

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        if self.queue is None:
            await self.recover()
        self._heartbeat = asyncio.create_task(self._beat())
        if self.fanout is not None:
            self.fanout.listen(self._on_poke)

    async def work(self, concurrency: int | None = None, name: str | None = None) -> None:
        """Claim queued executions and run them here until cancelled; then stop claiming,
        let the runs end within ``shutdown_grace_seconds``, and hand the rest back."""
        assert self.queue is not None
        self.working = True  # from now on each beat queues stale runs again (``recover``)
        self.user_slots = UserSlots(self.queue.conninfo, self.config.max_concurrent_per_user)
        try:
            await self.queue.work(
                self.run_claimed,
                concurrency=concurrency or self.config.max_concurrent,
                grace_seconds=self.config.shutdown_grace_seconds,
                name=name,
            )
        finally:
            self.working = False
            slots, self.user_slots = self.user_slots, None
            if self._giving_back:
                await asyncio.wait(list(self._giving_back))
            await slots.close()

    async def run_claimed(self, execution_id: str) -> None:
        """A queue job: adopt the execution (unless another worker holds it, or it is
        over) and run it here until it leaves this worker."""
        cutoff = utcnow() - self._stale_after()
        if execution_id in self.handles or not await self.db(store.adopt, execution_id, cutoff):
            return
        execution = await self.db(store.Execution.get_by_id, execution_id)
        await self.db(self._bill_unbilled, execution)
        if execution.started_at is not None:
            log.info("resuming %s from its last checkpoint", execution_id)
        self._start(execution, paused=execution.status == "paused")
        handle = self.handles[execution_id]
        assert handle.task is not None
        try:
            await asyncio.shield(handle.task)
        except asyncio.CancelledError:  # aborted: this worker stops after its grace time
            await self._interrupt(handle, "shutdown", wait=5.0)
            raise

    async def stop(self) -> None:
        """Shutting down: unfinished runs stop where they are, resumable. Each keeps its
        last checkpoint and status (a paused run stays paused, one awaiting an approval
        was never held here); its heartbeat is cleared, so the next worker to start, or
        one running now, takes it over at once and continues it from that checkpoint."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        if self._dispatching:
            await asyncio.wait(list(self._dispatching.values()))
        for handle in list(self.handles.values()):
            await self._interrupt(handle, "shutdown", wait=5.0)
        for provider in self.providers.values():
            with contextlib.suppress(Exception):
                await provider.aclose()
        await self.bus.drain()

    async def recover(self) -> int:
        """Take over every unfinished run whose worker stopped beating; returns how many.

        The provider call a crash cut short is billed, then the run continues from its
        last checkpoint; a paused run is adopted paused. Runs awaiting an approval are
        held by no worker and left alone.

        With a queue, they are queued again instead (by a worker only), for whichever
        worker claims them first (``run_claimed`` bills and resumes them).
        """
        cutoff = utcnow() - self._stale_after()
        recovered = 0
        if self.queue is not None:
            if not self.working:
                return 0
            for execution_id in await self.db(store.stale_unqueued, cutoff):
                recovered += await self.queue.enqueue(execution_id)
            return recovered
        for execution in await self.db(store.stale_unfinished, cutoff):
            if execution.id in self.handles or not await self.db(store.adopt, execution.id, cutoff):
                continue  # ours, or another worker was quicker
            await self.db(self._bill_unbilled, execution)
            log.info("resuming %s from its last checkpoint", execution.id)
            self._start(execution, paused=execution.status == "paused")
            recovered += 1
        return recovered

    def _stale_after(self) -> timedelta:
        return timedelta(seconds=max(5.0, self.config.heartbeat_seconds * 5))

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
        bill = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "cost_usd": call_cost,
            "priced": priced,
        }
        totals = {"cost_usd": round(cost + call_cost, 10)}
        checkpoints.save_step(execution, None, {}, bill=bill, totals=totals)

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.config.heartbeat_seconds)
            try:
                controls, lost = await self.db(store.touch_and_read_controls, list(self.handles))
                for execution_id in lost:
                    self._abandon(execution_id)
                for execution_id in controls:  # taken one by one: a Redis poke may race
                    await self._take_control(execution_id)
                await self._cancel_disabled()
                for execution_id in await self.db(store.awaiting_of_disabled):
                    if await self.db(store.leave_awaiting, execution_id, "cancelled"):
                        await self._finish_awaiting(execution_id)
                await self.recover()
                self._beats += 1
                if self.queue is not None and self.working and self._beats % 10 == 0:
                    await self.queue.clear_stalled()
                self._turns_changed()  # turns of other workers may have ended
            except Exception:  # the heartbeat must outlive a database hiccup
                log.exception("executor heartbeat failed")

    def _abandon(self, execution_id: str) -> None:
        """Another worker adopted this run (this one stalled past the stale time): stop it
        at once, writing nothing more for it; the adopter continues it."""
        handle = self.handles.get(execution_id)
        if handle is None or handle.task is None or handle.task.done():
            return
        log.warning("lost the lease of %s to another worker: stopping it here", execution_id)
        handle.stop_reason = "lease_lost"
        self.bus.abandon(execution_id)  # now: what the run does while it unwinds is not written
        handle.task.cancel()

    async def _take_control(self, execution_id: str) -> None:
        """Apply the control request another worker left for a run of this one, if any."""
        control = await self.db(store.take_control, execution_id)
        if control:
            with contextlib.suppress(Conflict):  # no longer applies (the run ended meanwhile)
                await self.control(execution_id, control)

    def _on_poke(self, execution_id: str) -> None:
        """A Redis poke: another worker left a control request; act now if the run is ours."""
        if execution_id in self.handles:
            task = asyncio.create_task(self._answer_poke(execution_id))
            self._poked.add(task)
            task.add_done_callback(self._poked.discard)

    async def _answer_poke(self, execution_id: str) -> None:
        try:
            await self._take_control(execution_id)
        except Exception:  # the heartbeat tries again
            log.exception("applying the control request for %s failed", execution_id)

    async def _cancel_disabled(self) -> None:
        """Cancel this worker's runs whose account is disabled or gone (one query a beat)."""
        owners = {handle.owner for handle in self.handles.values()}
        disabled = await self.db(users.inactive_among, owners)
        for handle in list(self.handles.values()):
            if handle.owner in disabled and handle.stop_reason is None and not handle.finishing:
                log.info("cancelling %s: its account is disabled", handle.execution_id)
                handle.stop_reason = "cancelled"
                if handle.task is not None and not handle.task.done():
                    handle.task.cancel()

    # -- submitting and controlling ------------------------------------------------------

    def slot_at_launch(self, owner: str, provider: str) -> bool:
        """Take a slot for a run about to be created if it can start at once: it is then
        stored running with its step 0 in the transaction that creates it, one transaction
        (and one rewrite of its row) less. Only on SQLite without a queue, where the
        creation runs on the event loop: the slots are the loop's. ``submit`` with
        ``opened`` hands the slot to the run; ``release_launch_slot`` gives it back if the
        creation failed."""
        if self.queue is not None or not self.db.inline:
            return False
        try:
            asyncio.get_running_loop()
            self._provider(provider)
        except (RuntimeError, ProviderNotConfigured):  # off the loop; a run bound to fail
            return False
        return self.slots.try_acquire(owner)

    def release_launch_slot(self, owner: str) -> None:
        self.slots.release(owner)

    def submit(self, execution: Execution, *, new: bool = False, opened: bool = False) -> None:
        """Run ``execution`` here, from its last checkpoint if it has one; with a queue,
        queue it for whichever worker claims it first. ``new``: it was just created, so it
        has no events yet (its channel opens without a read); ``opened``: created running
        with its step 0, in the slot ``slot_at_launch`` took."""
        if self.queue is None:
            if new:
                self.bus.begin(execution.id)
            self._start(execution, new=new, opened=opened)
            return
        task = asyncio.create_task(self._dispatch(execution.id))
        self._dispatching[execution.id] = task
        task.add_done_callback(lambda _: self._dispatching.pop(execution.id, None))

    async def _dispatch(self, execution_id: str) -> None:
        assert self.queue is not None
        async with self._dispatch_order:  # queued in the order submitted (FIFO claims)
            await self.db(store.release_to_queue, execution_id)
            try:
                await self.queue.enqueue(execution_id)
            except Exception:  # the lease is free: a worker's beat queues it again
                log.exception("queueing %s failed", execution_id)

    def _start(
        self, execution: Execution, paused: bool = False, new: bool = False, opened: bool = False
    ) -> None:
        """Start the run's task; ``new`` and ``opened`` as ``submit`` says."""
        self.bus.fenced.discard(execution.id)  # refused while another worker held it before
        handle = RunHandle(execution.id, execution.owner_id)
        handle.started = execution.started_at is not None
        handle.new = new
        handle.opened = handle.has_slot = opened
        if opened:
            handle.status = "running"
            handle.unannounced = True  # once its task runs (``_run``), unless a status was
        self.handles[execution.id] = handle
        if paused:
            handle.running.clear()
            handle.status = "paused"
        elif self.db.inline:  # written now; off the loop, first thing in the run's task
            if not new:  # a new row was inserted "queued": only its event is still to come
                self._write_status(handle, "queued")
            self.bus.publish(handle.execution_id, "status", status="queued")
            handle.queued_written = True
        handle.task = asyncio.create_task(self._run(execution, handle))

    async def wait_finished(self, execution_id: str) -> str | None:
        """Wait until no worker runs the execution: its status then, terminal or
        ``requires_action`` (``None``: no such execution). A run of this worker is awaited
        on its task; one of another worker is polled."""
        while True:
            handle = self.handles.get(execution_id)
            if handle is not None and handle.task is not None:
                await asyncio.wait({handle.task})
                continue
            status = await self.db(store.get_status, execution_id)
            if status is None or status in store.TERMINAL or status in store.AWAITING:
                return status
            await asyncio.sleep(self.bus.poll_interval)

    async def cancel(self, execution_id: str) -> str | None:
        """Cancel the execution if it is not over yet, and wait until it is."""
        with contextlib.suppress(Conflict):
            await self.control(execution_id, "cancel")
        return await self.wait_finished(execution_id)

    async def approve(
        self, execution_id: str, call_id: str, decision: str, reason: str | None
    ) -> None:
        """Record a person's decision on the tool call a run awaits, and run it again from
        its checkpoint (the call runs, or the model hears the denial); 409 unless the run
        awaits exactly that call."""
        self.submit(await self.db(self._decide, execution_id, call_id, decision, reason))

    @staticmethod
    def _decide(execution_id: str, call_id: str, decision: str, reason: str | None) -> Execution:
        """The storage half of ``approve``: the decision recorded, the execution to submit."""
        status = store.get_status(execution_id)
        last = checkpoints.latest(execution_id)
        awaiting = last.state.get("awaiting") if last is not None else None
        if (
            status not in store.AWAITING
            or last is None
            or not awaiting
            or awaiting.get("call_id") != call_id
            or not checkpoints.decide(last, {**awaiting, "decision": decision, "reason": reason})
        ):
            raise Conflict(
                f"Run '{execution_id}' is not awaiting a decision on tool call '{call_id}'.",
                error="not_awaiting_approval",
                details={
                    "status": status,
                    "awaiting": awaiting.get("call_id") if awaiting else None,
                },
            )
        return store.Execution.get_by_id(execution_id)

    async def control(self, execution_id: str, action: str) -> None:
        """Apply ``cancel``/``pause``/``resume``; 409 for a transition the state forbids."""
        dispatching = self._dispatching.get(execution_id)
        if dispatching is not None:
            await asyncio.wait({dispatching})
        status = await self.db(store.get_status, execution_id)
        allowed = {
            "cancel": {"queued", "running", "paused", *store.AWAITING},
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
        if handle is None and status in store.AWAITING:  # held by no worker: end it here
            if await self.db(store.leave_awaiting, execution_id, "cancelled"):
                await self._finish_awaiting(execution_id)
                return
            status = await self.db(store.get_status, execution_id)  # approved meanwhile
            handle = self.handles.get(execution_id)
        if (
            handle is None
            and self.queue is not None
            and await self._control_unheld(execution_id, action)
        ):
            return
        if handle is None:  # another worker runs it: leave word, it reads it within a beat
            before = await self.db(store.last_seq, execution_id)
            await self.db(store.update_execution, execution_id, control=action)
            if self.fanout is not None:  # or at once, told through Redis
                await self.fanout.poke(execution_id)
            await self._await_change(execution_id, before, 3 * self.config.heartbeat_seconds)
            return
        if action == "cancel":
            await self._interrupt(handle, "cancelled", wait=2.0)
        elif action == "pause":
            handle.running.clear()
            self._release(handle)  # a paused run holds no slot
            await self._set_status(handle, "paused")
        else:
            # Back in line: straight to running only if a slot is free for this user now
            # (no waiter that could take it is ever left waiting, so this jumps nobody).
            if handle.started and not handle.waiting and await self._try_slots(handle):
                handle.has_slot = True
            await self._set_status(handle, "running" if handle.has_slot else "queued")
            handle.running.set()

    async def _control_unheld(self, execution_id: str, action: str) -> bool:
        """Queued: control an execution no worker holds (waiting for a worker, paused
        after a shutdown, or its worker dead) here; False when a worker holds it."""
        if not await self.db(store.adopt, execution_id, utcnow() - self._stale_after()):
            return False
        if action == "cancel":
            execution = await self.db(store.Execution.get_by_id, execution_id)
            await self.db(self._bill_unbilled, execution)
            await self._end_cancelled(execution)
            return True
        status = "paused" if action == "pause" else "queued"
        await self.db(store.free_lease, execution_id, status=status, control=None)
        await self.bus.attach(execution_id)
        self.bus.publish(execution_id, "status", status=status)
        await self.bus.detach(execution_id)
        if action == "resume":
            assert self.queue is not None
            await self.queue.enqueue(execution_id)
        return True

    async def _finish_awaiting(self, execution_id: str) -> None:
        await self._end_cancelled(await self.db(store.Execution.get_by_id, execution_id))

    async def _end_cancelled(self, execution: Execution) -> None:
        """End a run no task of this worker holds as cancelled, as far as it got."""
        execution_id = execution.id
        await self._finish(
            execution_id,
            status="cancelled",
            stop_reason="cancelled",
            error=None,
            result=execution.result,
            usage=None,
            session_id=execution.session_id,
        )
        if execution.session_id is not None:
            self._turns_changed()

    def _turns_changed(self) -> None:
        self._turn_ended.set()
        self._turn_ended = asyncio.Event()

    def _write_status(self, handle: RunHandle, status: str, **fields: Any) -> None:
        handle.status = status
        store.update_execution(handle.execution_id, status=status, **fields)

    async def _set_status(self, handle: RunHandle, status: str, **fields: Any) -> None:
        async with handle.writing:
            handle.status = status
            handle.unannounced = False  # this status is announced instead
            fields = {**handle.unwritten, **fields, "status": status}
            await self.db(store.update_execution, handle.execution_id, **fields)
            handle.unwritten = {}
        await self.bus.attach(handle.execution_id)
        self.bus.publish(handle.execution_id, "status", status=status)

    def _defer_start(self, handle: RunHandle) -> None:
        """The first start of a run: "running" and ``started_at`` are stored with its
        step 0 (``_start_written``), one transaction less; else by whichever write of
        the run comes first: a status change (a pause before step 0 goes from "queued"
        straight to "paused"), ``_write_start``, or its end (``_finish_run``)."""
        handle.status = "running"
        handle.unwritten = {"status": "running", "started_at": utcnow()}

    @contextlib.asynccontextmanager
    async def _start_written(self, handle: RunHandle) -> AsyncIterator[dict[str, Any]]:
        """The start left unwritten, for the step 0 checkpoint to store in its fencing
        statement (which never sets the status of a run that ended); status changes
        wait for that write. Its "running" event follows the write, as every status
        event does."""
        async with handle.writing:
            start = handle.unwritten
            yield start
            handle.unwritten = {}
        if start:
            await self.bus.attach(handle.execution_id)
            self.bus.publish(handle.execution_id, "status", status="running")

    async def _write_start(self, handle: RunHandle) -> None:
        """Store the start left unwritten (fenced), for a run with no step 0 to write it
        or with slow work before it (a sandbox copy)."""
        async with self._start_written(handle) as start:
            if start:
                await self.db(store.hold_lease, handle.execution_id, **start)

    async def _try_slots(self, handle: RunHandle) -> bool:
        """Take a slot at once if one is free: this worker's, and with a queue one of the
        user's slots across workers too; False (holding neither) otherwise."""
        if self.user_slots is not None and handle.user_slot is None:
            handle.user_slot = await self.user_slots.try_take(handle.owner)
            if handle.user_slot is None:
                return False
        if self.slots.try_acquire(handle.owner):
            return True
        self._release(handle)  # gives the user's slot back
        return False

    def _release(self, handle: RunHandle) -> None:
        if handle.has_slot:
            handle.has_slot = False
            self.slots.release(handle.owner)
        if handle.user_slot is not None and self.user_slots is not None:
            task = asyncio.create_task(self.user_slots.give_back(handle.owner, handle.user_slot))
            self._giving_back.add(task)
            task.add_done_callback(self._giving_back.discard)
            handle.user_slot = None

    async def _interrupt(self, handle: RunHandle, reason: str, wait: float) -> None:
        handle.stop_reason = reason
        if not handle.began:  # started this turn: let it begin, or it would end unwritten
            await asyncio.sleep(0)
        if handle.task is not None and not handle.task.done():
            if not handle.finishing:
                handle.task.cancel()
            try:
                await asyncio.wait_for(asyncio.shield(handle.task), wait)
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # the caller is cancelled (a supervisor stopping): not swallowed
            except BaseException:  # the run ended or timed out: its own affair
                pass

    async def _await_change(self, execution_id: str, seq: int, timeout: float) -> None:
        """Wait until the run's status changed after event ``seq``: read from its events, so
        that a change undone at once (a pause resumed straight away) is not missed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not await self.db(
            store.changed_after, execution_id, seq
        ):
            await asyncio.sleep(0.05)

    # -- running -------------------------------------------------------------------------

    async def _await_session(self, execution: Execution, handle: RunHandle) -> None:
        """Wait for the session's previous turns (FIFO), then hold it."""
        session_id = execution.session_id
        assert session_id is not None
        while not await self.db(sessions.take_turn, session_id, execution.id):
            if not await self.db(_session_exists, session_id):
                handle.stop_reason = "cancelled"  # the session was deleted meanwhile
                raise asyncio.CancelledError
            ended = self._turn_ended
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ended.wait(), self.config.heartbeat_seconds)

    def _workspace(self, execution: Execution) -> Path:
        if execution.session_id is None:
            return user_workspace(self.config.data_dir, execution.owner_id)
        session = sessions.get_session(execution.session_id, None)
        path = Path(session.working_directory_path)
        path.mkdir(parents=True, exist_ok=True)
        return path

    async def _admit(self, handle: RunHandle) -> None:
        """Off the loop: store and announce the "queued" status of this start (inline, it
        was written by ``_start``), in the order the runs were started. The write is
        shielded: a cancel that arrives meanwhile waits for it, so the status event is
        never lost and never follows the run's end."""
        if handle.queued_written:
            return
        if handle.admission is None:
            handle.admission = asyncio.create_task(self._store_queued(handle))
        await asyncio.shield(handle.admission)

    async def _store_queued(self, handle: RunHandle) -> None:
        async with self._admission:
            if handle.status == "queued" and handle.new:  # inserted "queued": announce it
                self.bus.publish(handle.execution_id, "status", status="queued")
            elif handle.status == "queued":
                await self._set_status(handle, "queued")
        handle.queued_written = True

    async def _gate(self, handle: RunHandle) -> None:
        """Between two events: wait out a pause, then for a slot (cancel still gets through)."""
        while not (handle.running.is_set() and handle.has_slot):
            if not handle.running.is_set():
                self._release(handle)
                await handle.running.wait()
                continue
            handle.waiting = True
            try:
                if self.user_slots is not None and handle.user_slot is None:
                    handle.user_slot = await self.user_slots.take(handle.owner)
                await self.slots.acquire(handle.owner)
            finally:
                handle.waiting = False
            handle.has_slot = True
            if not handle.running.is_set():  # paused while it waited: give the slot back
                continue
            if not handle.started:
                handle.started = True
                self._defer_start(handle)
            elif handle.status != "running":
                await self._set_status(handle, "running")

    async def _run(self, execution: Execution, handle: RunHandle) -> None:
        result: dict[str, Any] | None = None
        run: AgentRun | None = None
        held = True  # by this task; False once it stops unfinished (approval, shutdown)
        limit = self.config.max_execution_seconds
        timeout = limit if execution.timeout is None else min(execution.timeout, limit)
        try:
            handle.began = True
            if handle.unannounced:  # stored running as it was created; no status since
                handle.unannounced = False
                self.bus.publish(handle.execution_id, "status", status="running")
            await self._admit(handle)
            if execution.session_id is not None:
                await self._await_session(execution, handle)
            await self._gate(handle)
            async with asyncio.timeout(timeout):
                provider = self._provider(execution.provider)
                # A run offered no tools never touches the user's workspace: it is not
                # created (or copied, in sandbox mode) for one. A session turn's working
                # directory is the session's: made by its first turn, whatever it runs.
                tools_offered = bool(execution.config["tools"])
                workspace = (
                    await self.db(self._workspace, execution)
                    if tools_offered or execution.session_id is not None
                    else workspace_path(self.config.data_dir, execution.owner_id)
                )
                async with contextlib.AsyncExitStack() as stack:
                    if execution.mode == "sandbox" and tools_offered:
                        await self._write_start(handle)  # copying takes a while: running
                        workspace = await stack.enter_async_context(
                            sandbox_copy(workspace, self.config.workspace_quota_bytes)
                        )
                    state, step, billed = await self._continue_from(handle, execution)
                    if state is not None and handle.unwritten:  # no step 0 to store it
                        await self._write_start(handle)
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
                        gate=lambda: self._gate(handle),
                        gate_open=lambda: handle.has_slot and handle.running.is_set(),
                        state=state,
                        step=step,
                        shell_limits=self.config.shell_limits,
                        db=self.db,
                        billed=billed,
                        start=lambda: self._start_written(handle),
                    )
                    result = await run.run()
            handle.finishing = True  # the slot is freed once its end is written (finally)
            await self._finish_run(handle, execution, run, "completed", "completed", None, result)
        except AwaitingApproval as awaiting:
            handle.finishing = True
            held = False
            await self._await_approval(handle, awaiting)
        except ProviderNotConfigured as exc:
            handle.finishing = True
            await self._finish_run(
                handle, execution, run, "failed", "provider_not_configured", exc.message, None
            )
        except Stop as stop:
            handle.finishing = True
            await self._finish_run(
                handle, execution, run, "failed", stop.stop_reason, stop.message, None
            )
        except WorkspaceQuotaExceeded as exc:  # sandbox mode, workspace already over its quota
            handle.finishing = True
            await self._finish_run(
                handle, execution, run, "failed", "tool_error", exc.message, None
            )
        except TimeoutError:
            handle.finishing = True
            if execution.timeout is not None and execution.timeout <= limit:
                message = f"Stopped after the timeout of {execution.timeout} s."
            else:
                message = f"Stopped after the server's longest run time of {limit} s."
            await self._finish_run(handle, execution, run, "failed", "timeout", message, None)
        except store.LeaseLost:  # a step's write found the run adopted elsewhere
            log.warning("lost the lease of %s to another worker: stopping it here", execution.id)
            held = False
            self.bus.abandon(execution.id)
        except asyncio.CancelledError:
            handle.finishing = True
            reason = handle.stop_reason or "interrupted"
            if reason == "lease_lost":  # the adopter continues it: nothing more written here
                held = False
                self.bus.abandon(execution.id)
                return
            await self._admit(handle)  # cancelled before its "queued" was stored
            if reason == "shutdown":
                held = False
                await self.db(store.hand_back, execution.id)  # any worker may resume it
                await self.bus.detach(execution.id)
            else:
                if reason == "cancelled" and run is not None:
                    await self._keep_partial(execution, run)
                status = "cancelled" if reason == "cancelled" else "failed"
                message = (
                    None if reason == "cancelled" else "The server stopped during the execution."
                )
                await self._finish_run(handle, execution, run, status, reason, message, None)
        except Exception as exc:  # every execution ends in a terminal state, whatever fails
            handle.finishing = True
            log.exception("execution %s failed", execution.id)
            await self._finish_run(
                handle, execution, run, "failed", "provider_error", str(exc), None
            )
        finally:
            self._release(handle)
            self.handles.pop(execution.id, None)
            if execution.session_id is not None and held:
                if not handle.turn_ended:
                    await self.db(sessions.end_turn, execution.session_id, execution.id)
                self._turns_changed()

    async def _continue_from(
        self, handle: RunHandle, execution: Execution
    ) -> tuple[dict[str, Any] | None, int, tuple[int, int, float] | None]:
        """Where the run goes on from: its state, step and usage so far. None for a new
        run's state (its step 0 is to come); the step 0 stored with an ``opened`` one;
        else its last checkpoint."""
        if handle.opened:  # nothing to read back
            return opening_state(execution.config, execution.task), 0, NOTHING_BILLED
        last = None if handle.new else await self.db(checkpoints.latest, execution.id)
        if last is None:
            return None, 0, None
        return last.state, last.step, await self.db(costs.billed, execution.id)

    async def _await_approval(self, handle: RunHandle, awaiting: AwaitingApproval) -> None:
        """The run stops for a person's decision: no slot, no task, no heartbeat; its last
        checkpoint names the call (and keeps holding its session)."""
        call = awaiting.call
        self.bus.publish(
            handle.execution_id,
            "approval_required",
            call_id=call.id,
            tool=call.tool,
            args=call.args,
        )
        await self._set_status(handle, "requires_action")
        await self.bus.detach(handle.execution_id)
        self._release(handle)

    async def _keep_partial(self, execution: Execution, run: AgentRun) -> None:
        """A cancelled session turn keeps what the model had said: the next turn sees it."""
        text = run.cut_short_text()
        if execution.session_id is not None and text:
            answer = Message(role="assistant", content=text)
            await self.db(
                sessions.append_messages,
                execution.session_id,
                [session_message(answer, execution.id, execution.model)],
            )

    def _provider(self, name: str) -> Provider:
        provider = self.providers.get(name)
        if provider is None:
            provider = get_provider(name, self.config.providers)
            self.providers[name] = provider
        return provider

    async def _finish_run(
        self,
        handle: RunHandle,
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
        handle.turn_ended = execution.session_id is not None
        await self._finish(
            execution.id,
            started=handle.unwritten.get("started_at"),  # ended before its step 0
            status=status,
            stop_reason=stop_reason,
            error=error,
            result=result,
            usage=usage,
            session_id=execution.session_id,
        )

    async def _finish(
        self,
        execution_id: str,
        *,
        status: str,
        stop_reason: str,
        error: str | None,
        result: dict[str, Any] | None,
        usage: dict[str, Any] | None,
        session_id: str | None = None,
        started: datetime | None = None,
    ) -> None:
        """Store the terminal state in one transaction with the last events, end the
        session turn it held, then show those events to live subscribers: whoever reads
        the end finds ``complete``, whoever gets ``complete`` finds the end stored, and a
        crash in between leaves neither (the run is then taken over and finished).

        Every event published before is stored first, or with them."""
        fields: dict[str, Any] = {
            "status": status,
            "stop_reason": stop_reason,
            "error": error,
            "result": result,
            "completed_at": utcnow(),
            "control": None,
            **(usage or {}),
            **({"started_at": started} if started else {}),
        }
        if usage is None:
            await self.bus.drain()  # the usage it streamed is stored: read now
            usage = (await self.db(store.Execution.get_by_id, execution_id)).usage
        # else the totals it ran up: not read back, so its pending events go with the end
        await self.bus.attach(execution_id)
        self.bus.hold(execution_id)
        if error is not None:
            self.bus.publish(execution_id, "error", message=error, stop_reason=stop_reason)
        self.bus.publish(
            execution_id,
            "complete",
            status=status,
            stop_reason=stop_reason,
            result=result,
            cost=usage["cost_usd"],
            usage=store.usage_report(usage),
        )
        self.bus.progress(execution_id, **fields)  # written with those events
        await self.bus.drain()
        if execution_id in self.bus.fenced:  # adopted by another worker: its end, not ours
            log.warning("%s was adopted elsewhere: its end here was not stored", execution_id)
            self.bus.abandon(execution_id)
            return
        if session_id is not None:
            await self.db(sessions.end_turn, session_id, execution_id)
        await self.bus.close(execution_id)


def _session_exists(session_id: str) -> bool:
    return sessions.Session.get_or_none(sessions.Session.id == session_id) is not None
