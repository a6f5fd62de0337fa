"""Live execution streams: Server-Sent Events, and the two WebSocket channels of asyncapi.yaml.

Connexion does not serve WebSockets, so these routes sit on the outer Starlette
app and check the JWT themselves: ``?token=``, an ``Authorization`` header, or a
first ``{"type": "auth", "token": …}`` message. A bad token closes with 1008, and so
does a stream whose token stops being good while it is open (expired, account disabled,
login revoked): the token is checked again every second, cheaply (``token_problem``).
Server-Sent Event streams are held to the same rule: they end with an ``error`` event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from starlette.responses import StreamingResponse
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from cadre import json_limits
from cadre.auth import TokenService
from cadre.connexion.validation import CompiledSchema
from cadre.engine.events import Event, EventBus, Frame, encode
from cadre.engine.launch import launch_async
from cadre.errors import CadreError, RateLimited, Unauthorized, excerpt
from cadre.services import Services
from cadre.ticker import Ticker
from storage import executions as store

POLICY_VIOLATION = 1008
INVALID_PAYLOAD = 1007
NOT_FOUND = 4404
RATE_LIMITED = 4429  # asyncapi.yaml documents it
TOKEN_RECHECK_SECONDS = 1.0
COMMANDS = ("cancel", "pause", "resume", "ping")


def _sse_frame(event: dict[str, Any], data: str | None = None) -> bytes:
    data = encode(event) if data is None else data
    return f"id: {event['seq']}\nevent: {event['type']}\ndata: {data}\n\n".encode()


def coalesced(batch: list[Frame]) -> list[Frame]:
    """``batch`` with each run of consecutive ``token`` events merged into one: the last
    token's event with the run's ``content`` joined and ``first_seq``, the first token's
    ``seq`` (asyncapi.yaml). A subscriber that fell behind catches up in fewer frames;
    nothing is dropped or reordered, and ``seq`` stays the last one sent."""
    if len(batch) < 2:
        return batch
    out: list[Frame] = []
    run: list[Frame] = []
    for frame in batch:
        if frame[0]["type"] == "token":
            run.append(frame)
            continue
        out.extend(_merged(run))
        run = []
        out.append(frame)
    out.extend(_merged(run))
    return out


def _merged(run: list[Frame]) -> list[Frame]:
    if len(run) < 2:
        return run
    first, last = run[0][0], run[-1][0]
    event: Event = {
        **last,
        "first_seq": first.get("first_seq", first["seq"]),
        "content": "".join(event["content"] for event, _ in run),
    }
    return [(event, encode(event))]


async def token_problem(
    tokens: TokenService, claims: dict[str, Any], *, fresh: bool
) -> Unauthorized | None:
    """Why an open stream's token is no longer good (expired, account disabled, login
    revoked), or None: the one rule every stream, WebSocket or SSE, is held to."""
    try:
        await tokens.recheck(claims, fresh=fresh)
    except Unauthorized as exc:
        return exc
    return None


def _sse_problem(error: Unauthorized) -> bytes:
    """The last frame of a stream whose token stopped being good: an ``error`` event whose
    data is the WebSockets' ``protocol_error`` message (``error``, ``message``, ``details``),
    without an ``id:``, so that a client resuming with ``Last-Event-ID`` misses nothing."""
    body = json.dumps(_protocol_body(error), separators=(",", ":"))
    return f"event: error\ndata: {body}\n\n".encode()


def sse_response(
    bus: EventBus,
    execution_id: str,
    after: int,
    keepalive: float,
    *,
    tokens: TokenService,
    claims: dict[str, Any],
    translate: Callable[[dict[str, Any]], dict[str, Any] | None] | None = None,
) -> StreamingResponse:
    """Replay after ``after``, then live, with comment lines to keep proxies from hanging up.

    ``translate`` turns each event into the one sent (None: skipped), as chat does.

    The token (its ``claims``) is checked again every ``TOKEN_RECHECK_SECONDS`` between
    events, as on the WebSockets: once it is no longer good the stream sends an ``error``
    event with the problem and ends (after ``complete`` too, if the run was cancelled
    because its account was disabled).
    """
    wake = min(keepalive, TOKEN_RECHECK_SECONDS)

    async def frames() -> AsyncIterator[bytes]:
        yield b"retry: 2000\n\n"
        checked = sent = time.monotonic()
        async for batch in bus.follow(execution_id, after, keepalive=wake):
            now = time.monotonic()
            if now - checked >= TOKEN_RECHECK_SECONDS:
                checked = now
                problem = await token_problem(tokens, claims, fresh=False)
                if problem is not None:
                    yield _sse_problem(problem)
                    return
            if batch:
                if translate is None:
                    yield b"".join(_sse_frame(event, text) for event, text in coalesced(batch))
                else:
                    shown = [translate(event) for event, _ in batch]
                    chunk = b"".join(_sse_frame(event) for event in shown if event is not None)
                    if not chunk:
                        continue
                    yield chunk
                sent = now
            elif now - sent >= keepalive:
                yield b": keep-alive\n\n"
                sent = now
        # The run may have ended because its account was disabled (the executor cancels
        # such runs): then the stream ends with the problem too, as the WebSockets close.
        problem = await token_problem(tokens, claims, fresh=True)
        if problem is not None:
            yield _sse_problem(problem)

    return StreamingResponse(
        frames(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


# Execution event -> chat event (seed 004's names); the envelope is kept, so a frame's
# ``id:`` is the run's ``seq`` and the execution stream resumes where a chat stream broke.
_ENVELOPE = ("type", "execution_id", "seq", "timestamp")


def chat_translator(session_id: str) -> Callable[[dict[str, Any]], dict[str, Any] | None]:
    errors: list[str] = []  # the run's ``error`` event comes just before ``complete``

    def translate(event: dict[str, Any]) -> dict[str, Any] | None:
        kind = event["type"]
        if kind == "error":
            errors.append(event["message"])
            return None
        base = {
            **{key: event[key] for key in _ENVELOPE},
            "run_id": event["execution_id"],
            "session_id": session_id,
        }
        if kind == "status" and event.get("status") == "queued" and event["seq"] == 1:
            return {**base, "type": "run_started"}
        if kind == "token":
            return {**base, "type": "content_delta", "content": event["content"]}
        if kind in ("tool_call", "tool_result", "approval_required"):
            return {**event, **base}
        if kind == "complete":
            usage = event.get("usage") or {}
            metrics = {
                "duration_ms": usage.get("latency_ms"),
                "input_tokens": usage.get("prompt_tokens", 0),
                "output_tokens": usage.get("completion_tokens", 0),
                "cost_usd": event.get("cost", 0.0),
            }
            if event["status"] == "completed":
                output = (event.get("result") or {}).get("output", "")
                return {**base, "type": "run_completed", "metrics": metrics, "response": output}
            ended = f"The run ended {event['status']} ({event['stop_reason']})."
            error = errors[-1] if errors else ended
            return {
                **base,
                "type": "run_failed",
                "error": error,
                "status": event["status"],
                "stop_reason": event["stop_reason"],
                "metrics": metrics,
            }
        return None  # status changes, usage, error (run_failed carries it)

    return translate


def _services(websocket: WebSocket) -> Services:
    """The services of the app serving this socket (``create_app`` puts them in its state)."""
    return websocket.app.state.services


async def _authenticate(websocket: WebSocket, scope: str) -> str | None:
    """The caller's user id, or None after closing the socket with a policy violation."""
    token = websocket.query_params.get("token")
    header = websocket.headers.get("authorization", "")
    if token is None and header.lower().startswith("bearer "):
        token = header[7:].strip()
    await websocket.accept()
    if token is None:
        wait = _services(websocket).settings.websocket_auth_timeout_seconds
        try:
            async with asyncio.timeout(wait):
                first = await _receive_json(websocket)
        except TimeoutError:
            await _refuse(websocket, f"Authenticate within {wait:g} seconds of connecting.")
            return None
        if first is None or first.get("type") != "auth" or not isinstance(first.get("token"), str):
            await _refuse(websocket, "Send a token: ?token=, Authorization, or an auth message.")
            return None
        token = first["token"]
    try:
        claims = _services(websocket).tokens.decode(token)
    except Unauthorized as exc:
        await _refuse(websocket, exc.message)
        return None
    if scope not in claims["scopes"]:
        await _refuse(websocket, f"The token lacks the '{scope}' scope.")
        return None
    websocket.state.claims = claims  # checked again while the stream is open (``_relay``)
    if not await _within_rate_limit(websocket):
        return None
    return claims["sub"]


async def _within_rate_limit(websocket: WebSocket) -> bool:
    """Count one request in the user's HTTP bucket; False after closing with 4429 if spent.

    A connection counts as one request and the execution a task message starts as
    another, as ``GET …/stream`` and ``POST …/execute`` do over HTTP.
    """
    limiter = _services(websocket).rate_limiter
    if limiter is None:
        return True
    claims = websocket.state.claims
    retry_after = await limiter.retry_after(claims["role"], claims["sub"])
    if retry_after is None:
        return True
    error = RateLimited(
        f"Rate limit exceeded. Try again in {retry_after} seconds.",
        details={"retry_after": retry_after},
    )
    await _protocol_error(websocket, error, RATE_LIMITED)
    return False


async def _refuse(websocket: WebSocket, message: str) -> None:
    await websocket.send_json(
        {"type": "protocol_error", "error": "not_authenticated", "message": message, "details": {}}
    )
    await websocket.close(POLICY_VIOLATION, reason=message.encode()[:120].decode(errors="ignore"))


async def _receive_json(websocket: WebSocket) -> dict[str, Any] | None:
    try:
        message = await websocket.receive_json()
    except (WebSocketDisconnect, json.JSONDecodeError, KeyError, RecursionError):
        return None  # RecursionError: nested too deep for the parser (about 1000 levels)
    return message if isinstance(message, dict) else None


def _protocol_body(error: CadreError | str) -> dict[str, Any]:
    """A ``protocol_error`` message of asyncapi.yaml."""
    if isinstance(error, CadreError):
        details = {
            key: excerpt(value) if isinstance(value, str) else value
            for key, value in error.details.items()
        }
        body = {"error": error.error, "message": error.message, "details": details}
    else:
        body = {"error": "invalid_message", "message": error, "details": {}}
    return {"type": "protocol_error", **body}


async def _protocol_error(websocket: WebSocket, error: CadreError | str, code: int) -> None:
    body = _protocol_body(error)
    await websocket.send_json(body)
    reason = body["message"].encode()[:120].decode(errors="ignore")  # a close reason is short
    await websocket.close(code, reason=reason)


async def _until_one_returns(*coroutines: Coroutine[Any, Any, None]) -> None:
    """Run ``coroutines`` together until one returns (or raises: re-raised here), then
    cancel the others. Plain tasks: a stream's tasks live as long as it does, and this
    is cheaper per stream than a task group's handles and cancel scopes."""
    tasks = [asyncio.ensure_future(coroutine) for coroutine in coroutines]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks)
    for task in done:
        task.result()


async def _relay(websocket: WebSocket, execution_id: str, after: int, ticker: Ticker) -> None:
    """Send events until ``complete`` while obeying commands; stop if the client leaves."""
    current = _services(websocket)
    ended: list[str] = []  # the status ``complete`` reported

    async def send_events() -> None:
        # No keepalive batches: a WebSocket is kept alive by uvicorn's pings.
        async for batch in current.bus.follow(execution_id, after):
            for event, text in coalesced(batch):
                await websocket.send_text(text)
                if event["type"] == "complete":
                    ended.append(event["status"])

    async def obey_commands() -> None:
        while True:
            message = await _receive_json(websocket)
            if message is None:
                if websocket.client_state.name != "CONNECTED":
                    return  # the client went away
                continue
            command = message.get("type")
            if command == "ping":
                await websocket.send_json({"type": "pong"})
            elif command in COMMANDS:
                try:
                    await current.executor.control(execution_id, command)
                except CadreError as exc:
                    await websocket.send_json(
                        {
                            "type": "command_error",
                            "command": command,
                            "error": exc.error,
                            "message": exc.message,
                        }
                    )
            else:
                await websocket.send_json(
                    {
                        "type": "command_error",
                        "command": str(command),
                        "error": "unknown_command",
                        "message": f"Commands are {', '.join(COMMANDS)}.",
                    }
                )

    async def recheck_token() -> None:
        """Close with 1008 once the token expires, the account is disabled or the login
        revoked (``token_problem``): checked on each of the streams' shared ticks."""
        while True:
            await ticker.tick()
            if await _closed_for_token(websocket, fresh=False):
                return

    await _until_one_returns(send_events(), obey_commands(), recheck_token())
    states = (websocket.application_state.name, websocket.client_state.name)
    if states != ("CONNECTED", "CONNECTED"):
        return  # closed by recheck_token, or the client went away
    # The run may have ended because its account was disabled (the executor cancels such
    # runs): then this closes with 1008 too, whenever the token was last checked. A run
    # that completed was not cancelled: the token's last check (a second old) stands.
    if await _closed_for_token(websocket, fresh=ended != ["completed"]):
        return
    # The client may have closed first, after ``complete``, as most clients do: its
    # close frame is unread, so the state still says connected.
    with contextlib.suppress(WebSocketDisconnect):
        await websocket.close(1000)


async def _closed_for_token(websocket: WebSocket, *, fresh: bool) -> bool:
    """Close with 1008 if the stream's token is no longer good; True if so."""
    tokens, claims = _services(websocket).tokens, websocket.state.claims
    problem = await token_problem(tokens, claims, fresh=fresh)
    if problem is None:
        return False
    with contextlib.suppress(Exception):  # the client may be gone already
        await _protocol_error(websocket, problem, POLICY_VIOLATION)
    return True


async def agent_stream(websocket: WebSocket, validator: CompiledSchema, ticker: Ticker) -> None:
    """``/api/v1/agents/{agent_id}/stream``: send a task, get its execution's events."""
    user = await _authenticate(websocket, "executions:write")
    if user is None:
        return
    message = await _receive_json(websocket)
    if message is None:
        await _protocol_error(websocket, "Send the task as a JSON object.", INVALID_PAYLOAD)
        return
    limit = _services(websocket).settings.max_json_depth
    too_deep = json_limits.too_deep(message, limit, "body")
    if too_deep:
        error = CadreError(
            f"JSON values may nest at most {limit} levels: check {', '.join(too_deep)}.",
            error="validation_error",
            details=too_deep,
        )
        await _protocol_error(websocket, error, INVALID_PAYLOAD)
        return
    errors = sorted(validator.errors(message), key=lambda e: list(map(str, e.path)))
    if errors:
        details = {".".join(["body", *map(str, e.path)]): e.message for e in errors}
        error = CadreError("Invalid task message.", error="validation_error", details=details)
        await _protocol_error(websocket, error, INVALID_PAYLOAD)
        return
    if not await _within_rate_limit(websocket):  # the execution counts as a request too
        return
    current = _services(websocket)
    try:
        execution = await launch_async(
            current.executor, user, websocket.path_params["agent_id"], message, None, db=current.db
        )
    except CadreError as exc:
        await _protocol_error(websocket, exc, NOT_FOUND if exc.status == 404 else INVALID_PAYLOAD)
        return
    await _relay(websocket, execution.id, 0, ticker)


async def execution_stream(websocket: WebSocket, ticker: Ticker) -> None:
    """``/api/v1/executions/{execution_id}/stream?after=SEQ``: replay, then live."""
    user = await _authenticate(websocket, "executions:read")
    if user is None:
        return
    try:
        after = int(websocket.query_params.get("after", "0"))
        if not 0 <= after <= 1_000_000_000:
            raise ValueError
        current = _services(websocket)
        execution = await current.db(
            store.get_execution, websocket.path_params["execution_id"], user
        )
    except ValueError:
        await _protocol_error(websocket, "'after' must be a whole number >= 0.", INVALID_PAYLOAD)
        return
    except CadreError as exc:
        await _protocol_error(websocket, exc, NOT_FOUND)
        return
    await _relay(websocket, execution.id, after, ticker)


def routes(spec: dict[str, Any]) -> list[WebSocketRoute]:
    """The WebSocket routes; the task message is validated by the spec's ExecuteRequest."""
    validator = CompiledSchema(
        {**spec["components"]["schemas"]["ExecuteRequest"], "components": spec["components"]}
    )
    ticker = Ticker(TOKEN_RECHECK_SECONDS)  # the token rechecks of all the app's streams

    async def agent_stream_route(websocket: WebSocket) -> None:
        await agent_stream(websocket, validator, ticker)

    async def execution_stream_route(websocket: WebSocket) -> None:
        await execution_stream(websocket, ticker)

    return [
        WebSocketRoute("/api/v1/agents/{agent_id}/stream", agent_stream_route),
        WebSocketRoute("/api/v1/executions/{execution_id}/stream", execution_stream_route),
    ]
