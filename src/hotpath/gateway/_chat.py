"""``POST /v1/chat/completions``: cache lookup, single-flight, upstream call, replay.

A request is answered, in order of preference, from the exact cache (replayed in
either form, streamed or whole), by joining an identical request already in
flight (its chunks relayed live), or by a new upstream call that later identical
requests can join. Only complete, successful, unfiltered answers are stored.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from dataclasses import replace
from functools import partial
from typing import Any

import orjson

from hotpath._errors import UpstreamStatusError
from hotpath.cost._budget import BudgetHold
from hotpath.cost._usage import Usage
from hotpath.gateway._admit import Admission, admit_chat
from hotpath.gateway._answers import Answer, is_usage_chunk
from hotpath.gateway._api_errors import ApiError
from hotpath.gateway._asgi import Request, read_body, send_bytes, send_error, watch_disconnect
from hotpath.gateway._cache_key import chat_key, is_sampled
from hotpath.gateway._controls import CacheControls, parse_controls
from hotpath.gateway._flight import Flight, FlightFailedError
from hotpath.gateway._resolve import Resolved, Route
from hotpath.gateway._state import Caller, State, upstream_api_error
from hotpath.gateway._traffic import client_fault
from hotpath.gateway._traffic_context import CallContext, Reservation, usage_tokens
from hotpath.gateway._usage_count import answer_usage, counted_usage
from hotpath.gateway._validate import check_chat, parse_json
from hotpath.observe._request import RequestInfo, current_request, span_of

__all__ = ["chat_completions"]

log = logging.getLogger("hotpath.gateway")

_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
_DONE = b"data: [DONE]\n\n"
_ROUTE = "chat"
_MAX_LOGGED_PROMPT = 4000  # bytes of a prompt a debug line may carry (log_content on)


class _Call:
    """One request's view: what it asked for and how it is answered."""

    __slots__ = (
        "body",
        "booked",
        "caller",
        "controls",
        "ctx",
        "headers",
        "hold",
        "include_usage",
        "info",
        "key",
        "outcome",
        "request_headers",
        "reservation",
        "resolved",
        "started",
        "stream",
    )

    def __init__(
        self,
        body: dict[str, Any],
        resolved: Resolved,
        controls: CacheControls,
        key: str | None,
        ctx: CallContext,
        reservation: Reservation | None,
        caller: Caller,
        hold: BudgetHold | None,
        headers: list[tuple[bytes, bytes]],
        info: RequestInfo | None,
    ) -> None:
        self.body = body
        self.info = info  # the request as logs, metrics and its span see it
        self.caller = caller
        self.hold = hold  # the budgets' reservation
        self.headers = headers  # what admission says: the model chosen, a downgrade
        self.booked = False  # this request's own upstream call was booked
        self.outcome = "miss"  # or "bypass": how a request not answered by the cache is labelled
        # The client's headers, some forwarded upstream; set on a miss.
        self.request_headers: dict[bytes, bytes] = {}
        self.resolved = resolved
        self.controls = controls
        self.key = key
        self.ctx = ctx
        self.reservation = reservation
        self.stream = body.get("stream") is True
        options = body.get("stream_options")
        self.include_usage = isinstance(options, dict) and options.get("include_usage") is True
        # Latency counts from the request's arrival (admission waits included).
        self.started = info.started if info is not None else time.perf_counter()


async def chat_completions(state: State, request: Request) -> None:
    info = current_request()
    raw = await read_body(request, state.config.max_body_bytes)
    caller = state.authenticate(request)
    body = parse_json(raw, orjson.loads)
    model = check_chat(body)
    if info is not None:
        info.model = model
    if log.isEnabledFor(logging.DEBUG):
        _log_request(state, body, model)
    controls = parse_controls(request)
    traffic = state.traffic
    ctx = traffic.context(request)
    with span_of(info, "admission"):
        admission = await admit_chat(state, request, body, model, caller, ctx)
    try:
        call = _new_call(state, body, controls, ctx, caller, admission, info)
        answered = await _from_cache(state, request, call)
    except BaseException:
        # Nothing went upstream: give the reservations back.
        traffic.limits.settle(admission.reservation, 0)
        state.cost.settle(admission.hold, 0.0)
        raise
    if not answered:
        outcome = b"miss" if call.key is not None and controls.lookup else b"bypass"
        if info is not None:
            info.cache = outcome.decode()
        await _answer_miss(state, request, call, outcome)


def _log_request(state: State, body: dict[str, Any], model: str) -> None:
    """A debug line per chat request; its prompt only if the operator allows it
    (``[server] log_content``): prompts may hold personal data."""
    messages = body.get("messages")
    fields: dict[str, object] = {
        "model": model,
        "stream": body.get("stream") is True,
        "messages": len(messages) if isinstance(messages, list) else 0,
    }
    if state.config.log_content:
        fields["prompt"] = orjson.dumps(messages)[:_MAX_LOGGED_PROMPT].decode("utf-8", "replace")
    log.debug("chat request", extra=fields)


def _new_call(
    state: State,
    body: dict[str, Any],
    controls: CacheControls,
    ctx: CallContext,
    caller: Caller,
    admission: Admission,
    info: RequestInfo | None,
) -> _Call:
    """The request's call, with its cache key (``None``: not cached)."""
    resolved = admission.resolved
    settings = state.config.cache
    key = None
    wanted = controls.store or controls.lookup
    if state.cache is not None and wanted and (settings.cache_sampled or not is_sampled(body)):
        key = chat_key(
            body,
            deployment=resolved.primary.identity,
            tenant=state.cache_namespace(caller),
            namespace=controls.namespace,
            prefix=settings.namespace,
        )
    return _Call(
        body,
        resolved,
        controls,
        key,
        ctx,
        admission.reservation,
        caller,
        admission.hold,
        admission.headers,
        info,
    )


async def _from_cache(state: State, request: Request, call: _Call) -> bool:
    """Answer ``call`` from the cache if it can (True); count the miss or bypass."""
    cache = state.cache
    key = call.key
    controls = call.controls
    metrics = state.metrics
    if key is None or not controls.lookup:
        metrics.child(metrics.cache, _ROUTE, "bypass", "").inc()
        return False
    assert cache is not None
    with span_of(call.info, "cache lookup") as span:
        found = await cache.lookup(key)
        if span is not None:
            span.set_attribute("hotpath.cache", "miss" if found is None else "hit")
            if found is not None:
                span.set_attribute("hotpath.cache.tier", found[1])
    if found is not None:
        answer = Answer.from_value(found[0].value)
        if answer is not None:
            age = max(0.0, state.clock.now() - answer.stored_at)
            if controls.max_age is None or age <= controls.max_age:
                state.traffic.limits.settle(call.reservation, 0)
                state.cost.settle(call.hold, 0.0)
                await _send_hit(state, request, call, answer, found[1], age)
                _book_saving(state, call, answer, "hit")
                return True
    metrics.child(metrics.cache, _ROUTE, "miss", "").inc()
    state.anomalies.cache(call.resolved.public, hit=False)
    return False


def _cache_headers(call: _Call, outcome: bytes) -> list[tuple[bytes, bytes]]:
    headers = [(b"x-hotpath-cache", outcome)]
    if call.key is not None:
        headers.append((b"x-hotpath-cache-key", call.key.encode()))
    headers.extend(call.headers)
    return headers


def _with_meta(
    headers: list[tuple[bytes, bytes]], meta: list[tuple[bytes, bytes]]
) -> list[tuple[bytes, bytes]]:
    """The response's headers and the flight's; the flight names the model that
    answered when a fallback took the call, which then wins over ours."""
    if any(name == b"x-hotpath-model" for name, _ in meta):
        headers = [h for h in headers if h[0] != b"x-hotpath-model"]
    return [*headers, *meta]


def _book_saving(state: State, call: _Call, answer: Answer, how: str) -> None:
    """Book a request answered without an upstream call of its own."""
    try:
        usage = answer_usage(answer)
    except (ValueError, TypeError, IndexError):
        usage = None
    route = call.resolved.primary
    state.cost.book_saving(
        key=call.caller.key,
        tenant=call.caller.tenant,
        model=call.resolved.public,
        deployment=route.name,
        upstream_model=route.deployment,
        usage=usage,
        latency=answer.latency,
        how=how,
    )


async def _send_hit(
    state: State, request: Request, call: _Call, answer: Answer, tier: str, age: float
) -> None:
    metrics = state.metrics
    metrics.child(metrics.cache, _ROUTE, "hit", tier).inc()
    state.anomalies.cache(call.resolved.public, hit=True)
    info = call.info
    if info is not None:
        info.cache = "hit"
        info.tier = tier
        info.deployment = call.resolved.primary.name
    headers = _cache_headers(call, b"hit")
    headers.append((b"x-hotpath-cache-tier", tier.encode()))
    headers.append((b"age", str(int(age)).encode()))
    await _send_answer(request, call, answer, headers)
    if call.stream:
        metrics.child(metrics.ttft, "hit").observe(time.perf_counter() - call.started)
    metrics.child(metrics.latency, _ROUTE, "hit").observe(time.perf_counter() - call.started)


async def _answer_miss(state: State, request: Request, call: _Call, outcome: bytes) -> None:
    call.request_headers = request.headers
    call.outcome = outcome.decode()
    flights = state.flights
    flight = flights.join(call.key) if call.key is not None else None
    headers = _cache_headers(call, outcome)
    if flight is not None:
        # The flight's leader pays for the call; this request takes no tokens.
        state.traffic.limits.settle(call.reservation, 0)
        state.cost.settle(call.hold, 0.0)
        state.metrics.child(state.metrics.coalesced, _ROUTE).inc()
        headers.append((b"x-hotpath-coalesced", b"true"))
        if call.info is not None:
            call.info.coalesced = True
    else:
        shared = state.shared
        if shared is not None and call.key is not None:
            run = partial(shared.run, call=partial(_run, state, call))
        else:
            run = partial(_run, state, call)
        lead = partial(_lead, state, call, run)
        flight = flights.start(call.key, call.stream, lead, shared=call.key is not None)
    watcher = watch_disconnect(request)
    try:
        if call.stream and flight.stream:
            await _relay_stream(state, request, call, flight, headers)
        else:
            await _send_whole(state, request, call, flight, headers)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if not watcher.done() or task is None:
            raise
        task.uncancel()  # the client left: nothing more to send
    finally:
        watcher.cancel()
        flights.leave(flight)
        if flight.done and not call.booked and flight.answer is not None:
            # Answered by another request's call, here or in another process.
            _book_saving(state, call, flight.answer, "coalesced")


async def _send_answer(
    request: Request, call: _Call, answer: Answer, headers: list[tuple[bytes, bytes]]
) -> None:
    """A whole answer in the form the request asked for: one JSON body, or the
    stream's events in one write."""
    if not call.stream:
        await send_bytes(request.send, 200, answer.completion(), headers)
        return
    data = answer.sse_body(call.include_usage)
    await request.send(
        {"type": "http.response.start", "status": 200, "headers": [*_SSE_HEADERS, *headers]}
    )
    await request.send({"type": "http.response.body", "body": data})


async def _send_whole(
    state: State, request: Request, call: _Call, flight: Flight, headers: list[tuple[bytes, bytes]]
) -> None:
    try:
        answer = await flight.result()
    except FlightFailedError as failed:
        await send_error(
            request.send, upstream_api_error(failed.error), _with_meta(headers, flight.meta)
        )
        return
    await _send_answer(request, call, answer, _with_meta(headers, flight.meta))
    state.metrics.child(state.metrics.latency, _ROUTE, call.outcome).observe(
        time.perf_counter() - call.started
    )


async def _relay_stream(
    state: State, request: Request, call: _Call, flight: Flight, headers: list[tuple[bytes, bytes]]
) -> None:
    send = request.send
    started = False
    include_usage = call.include_usage
    try:
        async for payload, usage in flight.payloads():
            if usage and not include_usage:
                continue
            if not started:
                await send(
                    {
                        "type": "http.response.start",
                        "status": 200,
                        "headers": [*_SSE_HEADERS, *_with_meta(headers, flight.meta)],
                    }
                )
                started = True
                state.metrics.child(state.metrics.ttft, call.outcome).observe(
                    time.perf_counter() - call.started
                )
            await send(
                {
                    "type": "http.response.body",
                    "body": b"data: " + payload + b"\n\n",
                    "more_body": True,
                }
            )
    except FlightFailedError as failed:
        error = upstream_api_error(failed.error)
        if not started:
            await send_error(send, error, _with_meta(headers, flight.meta))
            return
        # Headers are gone: say it in the stream, as OpenAI does, and end without [DONE].
        await send({"type": "http.response.body", "body": b"data: " + error.body() + b"\n\n"})
        return
    answer = flight.answer
    tail = _DONE
    if answer is not None and answer.kind == "json":
        # The flight was answered whole (by another process's non-streamed call).
        tail = answer.sse_body(include_usage)
    if not started:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [*_SSE_HEADERS, *_with_meta(headers, flight.meta)],
            }
        )
    await send({"type": "http.response.body", "body": tail})
    state.metrics.child(state.metrics.latency, _ROUTE, call.outcome).observe(
        time.perf_counter() - call.started
    )


async def _lead(
    state: State, call: _Call, run: Callable[[Flight], Awaitable[None]], flight: Flight
) -> None:
    """The flight a request started: ``run`` calls the upstream (:func:`_run`), or
    follows another process's call of the same request. Whatever happens to the
    request's client, the request's reservations are settled when the flight ends:
    by ``_run`` with what the call used, else here with nothing."""
    try:
        await run(flight)
    finally:
        if not call.booked:
            state.traffic.limits.settle(call.reservation, 0)
            state.cost.settle(call.hold, 0.0)


async def _run(state: State, call: _Call, flight: Flight) -> None:
    """The upstream call of a flight (runs in the flight's own task): through
    traffic control, which picks the deployment and retries or falls back."""
    traffic = state.traffic
    ctx = call.ctx
    call.booked = True
    clock = state.clock
    started = clock.monotonic()
    try:
        answer, cacheable = await traffic.execute(
            call.resolved,
            state.resolve,
            ctx,
            partial(_attempt, state, call, flight),
            lambda: bool(flight.chunks),
        )
    except asyncio.CancelledError:
        traffic.limits.settle(call.reservation, 0)
        _book_failure(state, call)
        raise
    except Exception as exc:  # noqa: BLE001 - every waiter answers with it
        traffic.limits.settle(call.reservation, 0)
        _book_failure(state, call)
        flight.meta = ctx.headers() if ctx.attempts else []
        flight.fail(exc)
        return
    latency = clock.monotonic() - started
    traffic.limits.settle(call.reservation, ctx.used_tokens)
    answer, cost = _book(state, call, answer, latency)
    # Settled before the answer goes out, so that the client's next request meets
    # the real spend on every replica (one Redis round trip on a budgeted call).
    await state.cost.settle_wait(call.hold, cost)
    if not flight.meta:  # a stream's were set with its first chunk
        flight.meta = ctx.headers()
    flight.finish(answer)
    cache = state.cache
    if ctx.fallbacks:
        # Another model answered: right for this request, not for the key's model.
        cacheable = False
    if cacheable and call.key is not None and call.controls.store and cache is not None:
        # Let the waiters send their answers before the store (a SQLite write runs
        # on this thread). The flight stays joinable until the store is done, so no
        # identical request can slip in between and call the upstream again.
        await asyncio.sleep(0)
        ttl = call.controls.ttl or state.config.cache.ttl
        try:
            await cache.set(call.key, answer.to_value(), ttl=ttl)
        except Exception:
            log.exception("could not store the answer of %s", call.key)


def _book(state: State, call: _Call, answer: Answer, latency: float) -> tuple[Answer, float | None]:
    """Book the call's usage and cost: the answer with what it cost to make, for
    the cache (a hit then says what it saved), and the cost."""
    ctx = call.ctx
    usage = ctx.usage
    if usage is None:
        usage = counted_usage(call.body, answer, ctx.upstream_model or ctx.model)
    caller = call.caller
    cost = state.cost.book(
        key=caller.key,
        tenant=caller.tenant,
        model=ctx.model,
        deployment=ctx.deployment,
        upstream_model=ctx.upstream_model,
        usage=usage,
    )
    state.observe_latency(ctx.model, ctx.first_byte if ctx.first_byte is not None else latency)
    state.anomalies.spend(ctx.model, cost)
    info = call.info
    if info is not None:
        info.deployment = ctx.deployment
        info.prompt_tokens = usage.prompt_tokens
        info.completion_tokens = usage.completion_tokens
        info.cost = cost
    tokens = (usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens)
    return replace(answer, tokens=tokens, latency=latency), cost


def _book_failure(state: State, call: _Call) -> None:
    """A call that got no answer: nothing spent (an upstream error is not billed)."""
    ctx = call.ctx
    state.cost.settle(call.hold, 0.0)
    if ctx.attempts:
        state.cost.book(
            key=call.caller.key,
            tenant=call.caller.tenant,
            model=ctx.model,
            deployment=ctx.deployment,
            upstream_model=ctx.upstream_model,
            usage=None,
        )


async def _attempt(
    state: State, call: _Call, flight: Flight, route: Route, resolved: Resolved
) -> tuple[Answer, bool]:
    """One try on one deployment (in its own span when the request is traced,
    whose ``traceparent`` goes upstream)."""
    headers = route.forwarded(call.request_headers)
    info = call.info
    tracer = info.tracer if info is not None else None
    if tracer is None:
        return await _try(state, call, flight, route, headers)
    attributes = route.span_attributes(call.ctx.attempts)
    attributes["hotpath.stream"] = flight.stream
    with tracer.span("upstream attempt", attributes, client=True) as span:
        try:
            result = await _try(state, call, flight, route, tracer.inject(headers))
        except UpstreamStatusError as exc:
            span.set_attribute("http.response.status_code", exc.status)
            raise
        if call.ctx.first_byte is not None:
            span.set_attribute("hotpath.first_byte_seconds", call.ctx.first_byte)
        return result


async def _try(
    state: State, call: _Call, flight: Flight, route: Route, headers: dict[str, str] | None
) -> tuple[Answer, bool]:
    provider = route.provider
    metrics = state.metrics
    started = time.perf_counter()
    outcome = "ok"
    fault = False  # the upstream's, not the request's (client_fault)
    try:
        if flight.stream:
            return await _stream_upstream(state, call, flight, route, headers)
        data = await provider.chat(call.body, route.deployment, headers)
        completion = orjson.loads(data)
        if isinstance(completion, dict):
            reported = completion.get("usage")
            call.ctx.used_tokens = usage_tokens(reported)
            call.ctx.usage = Usage.from_openai(reported)
        return Answer("json", state.clock.now(), body=data), _cacheable(completion)
    except asyncio.CancelledError:
        outcome = "cancelled"
        raise
    except ApiError:
        outcome = "error"
        fault = True
        raise
    except Exception as exc:
        outcome = type(exc).__name__
        fault = not client_fault(exc)
        log.warning("chat call to upstream %r failed: %s", provider.name, exc)
        raise
    finally:
        elapsed = time.perf_counter() - started
        metrics.child(metrics.upstream, provider.name, _ROUTE, outcome).inc()
        metrics.child(metrics.upstream_latency, provider.name, _ROUTE).observe(elapsed)
        if outcome == "ok" or fault:  # not cancelled, not the request's own fault
            first = call.ctx.first_byte
            state.anomalies.upstream(
                call.ctx.model,
                provider.name,
                first if first is not None else elapsed,
                error=fault,
                stream=flight.stream,
            )
        if call.info is not None:
            call.info.upstream_seconds += elapsed


async def _stream_upstream(
    state: State, call: _Call, flight: Flight, route: Route, headers: dict[str, str] | None
) -> tuple[Answer, bool]:
    """Relay the upstream's chunks into the flight as they arrive."""
    ctx = call.ctx
    clock = state.clock
    started = clock.monotonic()
    finished: dict[int, str] = {}
    upstream = route.provider.chat_stream(call.body, route.deployment, headers)
    async with aclosing(upstream):
        async for payload in upstream:
            chunk = orjson.loads(payload)
            usage = is_usage_chunk(chunk)
            if usage:
                ctx.used_tokens = usage_tokens(chunk.get("usage"))
                ctx.usage = Usage.from_openai(chunk.get("usage"))
            else:
                for choice in chunk.get("choices") or ():
                    reason = choice.get("finish_reason")
                    if reason is not None:
                        finished[choice.get("index", 0)] = reason
            if not flight.chunks:
                # Headers go out with the first chunk: say now who answers.
                ctx.first_byte = clock.monotonic() - started
                flight.meta = ctx.headers()
            flight.push(payload, usage=usage)
    answer = Answer(
        "sse", state.clock.now(), chunks=tuple(flight.chunks), usage_index=flight.usage_index
    )
    cacheable = bool(finished) and "content_filter" not in finished.values()
    return answer, cacheable


def _cacheable(completion: Any) -> bool:
    """A whole answer is stored only if every choice finished and none was filtered."""
    if not isinstance(completion, dict):
        return False
    choices = completion.get("choices")
    if not isinstance(choices, list) or not choices:
        return False
    return all(
        isinstance(c, dict) and c.get("finish_reason") not in (None, "content_filter")
        for c in choices
    )
