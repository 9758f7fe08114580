"""``POST /v1/embeddings``: cached item by item.

Each input (a text or a token array) has its own cache entry, so a batch of 100
inputs with 97 cached sends only the 3 others upstream. Vectors are stored as
float32 (what providers compute; 4 bytes a dimension) and rendered in the format
each request asks for (``float`` or ``base64``). ``usage`` reports the tokens the
upstream was actually asked to embed, 0 when every input was cached.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from array import array
from typing import Any

import orjson

from hotpath._tokens import encoder_for
from hotpath.cost._budget import BudgetHold
from hotpath.cost._usage import Usage
from hotpath.gateway._api_errors import ApiError
from hotpath.gateway._asgi import Request, read_body, send_bytes
from hotpath.gateway._cache_key import embedding_key
from hotpath.gateway._controls import parse_controls
from hotpath.gateway._resolve import Resolved, Route
from hotpath.gateway._state import Caller, State, upstream_api_error
from hotpath.gateway._traffic import client_fault
from hotpath.gateway._traffic_context import CallContext, usage_tokens
from hotpath.gateway._validate import check_embeddings, parse_json
from hotpath.observe._request import RequestInfo, current_request, span_of

__all__ = ["embeddings"]

_ROUTE = "embeddings"

log = logging.getLogger("hotpath.gateway")


def _pack(vector: Any, index: int) -> bytes:
    if isinstance(vector, str):
        return base64.b64decode(vector)
    if isinstance(vector, list):
        return array("f", vector).tobytes()
    raise ApiError(
        502, f"upstream embedding {index} is neither floats nor base64", type="upstream_error"
    )


def _render(packed: bytes, fmt: str) -> Any:
    if fmt == "base64":
        return base64.b64encode(packed).decode()
    return array("f", packed).tolist()


async def _fetch(
    state: State,
    request: Request,
    resolved: Resolved,
    ctx: CallContext,
    body: dict[str, Any],
    inputs: list[str | list[int]],
    single: bool,
    info: RequestInfo | None,
) -> tuple[list[bytes], str, dict[str, Any]]:
    """Embed ``inputs`` upstream (through traffic control): their float32 vectors,
    the model, the usage."""
    payload = {**body, "input": inputs[0] if single else inputs, "encoding_format": "float"}
    tracer = info.tracer if info is not None else None

    async def attempt(route: Route, _: Resolved) -> bytes:
        metrics = state.metrics
        forwarded = route.forwarded(request.headers)
        started = time.perf_counter()
        try:
            if tracer is None:
                data = await route.provider.embeddings(payload, route.deployment, forwarded)
            else:
                attributes = route.span_attributes(ctx.attempts)
                with tracer.span("upstream attempt", attributes, client=True):
                    data = await route.provider.embeddings(
                        payload, route.deployment, tracer.inject(forwarded)
                    )
        except Exception as exc:
            metrics.child(metrics.upstream, route.provider.name, _ROUTE, type(exc).__name__).inc()
            log.warning("embeddings call to upstream %r failed: %s", route.provider.name, exc)
            if not client_fault(exc):
                state.anomalies.embeddings(ctx.model, route.provider.name, 0.0, error=True)
            raise
        finally:
            if info is not None:
                info.upstream_seconds += time.perf_counter() - started
        elapsed = time.perf_counter() - started
        metrics.child(metrics.upstream, route.provider.name, _ROUTE, "ok").inc()
        metrics.child(metrics.upstream_latency, route.provider.name, _ROUTE).observe(elapsed)
        state.anomalies.embeddings(ctx.model, route.provider.name, elapsed, error=False)
        return data

    try:
        data = await state.traffic.execute(resolved, state.resolve, ctx, attempt, lambda: False)
    except ApiError:
        raise
    except Exception as exc:
        raise upstream_api_error(exc) from exc
    answer = orjson.loads(data)
    rows = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(rows, list) or len(rows) != len(inputs):
        raise ApiError(
            502,
            f"upstream returned {len(rows) if isinstance(rows, list) else 'no'} embeddings "
            f"for {len(inputs)} inputs",
            type="upstream_error",
        )
    vectors: list[bytes | None] = [None] * len(inputs)
    for row in rows:
        position = row.get("index", 0) if isinstance(row, dict) else None
        if not isinstance(position, int) or not 0 <= position < len(inputs):
            raise ApiError(502, f"upstream embedding index {position!r} is out of range")
        vectors[position] = _pack(row.get("embedding"), position)
    if any(v is None for v in vectors):
        raise ApiError(502, "upstream answered some inputs twice and others not at all")
    usage = answer.get("usage")
    return (
        [v for v in vectors if v is not None],
        str(answer.get("model") or body.get("model")),
        usage if isinstance(usage, dict) else {"prompt_tokens": 0, "total_tokens": 0},
    )


def _sizes(model: str, items: list[str | list[int]]) -> list[int]:
    encoder = encoder_for(model)
    return [encoder.count(i) if isinstance(i, str) else len(i) for i in items]


def _book(
    state: State,
    caller: Caller,
    model: str,
    route: Route,
    ctx: CallContext,
    items: list[str | list[int]],
    sizes: list[int],
    mine: list[int],
    joined: list[tuple[int, asyncio.Future[bytes]]],
    usage: dict[str, Any],
    hold: BudgetHold | None,
) -> None:
    """Book the upstream call (if any) and what the cached and joined inputs saved."""
    cost = state.cost
    spent = 0.0
    if mine:
        used = Usage.from_openai(usage)
        if used is None or not used.prompt_tokens:
            counted = sizes or _sizes(ctx.upstream_model or route.deployment, items)
            used = Usage(sum(counted[i] for i in mine), estimated=True)
        spent = (
            cost.book(
                key=caller.key,
                tenant=caller.tenant,
                model=model,
                deployment=ctx.deployment,
                upstream_model=ctx.upstream_model,
                usage=used,
            )
            or 0.0
        )
        info = current_request()
        if info is not None:
            info.prompt_tokens = used.prompt_tokens
            info.cost = spent
    cost.settle(hold, spent)
    sent = set(mine)
    saved = [i for i in range(len(items)) if i not in sent]
    if saved:
        counted = sizes or _sizes(route.deployment, items)
        cost.book_saving(
            key=caller.key,
            tenant=caller.tenant,
            model=model,
            deployment=route.name,
            upstream_model=route.deployment,
            usage=Usage(sum(counted[i] for i in saved)),
            latency=None,
            how="coalesced" if len(joined) == len(saved) else "hit",
        )


async def embeddings(state: State, request: Request) -> None:
    info = current_request()
    started = info.started if info is not None else time.perf_counter()
    raw = await read_body(request, state.config.max_body_bytes)
    caller = state.authenticate(request)
    body = parse_json(raw, orjson.loads)
    model, items, single = check_embeddings(body)
    if info is not None:
        info.model = model
    resolved = state.resolve(model)
    route = resolved.primary
    controls = parse_controls(request)
    traffic = state.traffic
    cost = state.cost
    ctx = traffic.context(request)
    budgets = cost.has_budgets(caller.budgets)
    own_tpm = any(rule.tpm is not None for rule in caller.limits)
    sizes: list[int] = []
    if traffic.limits.counts_tokens or budgets or own_tpm:
        sizes = _sizes(route.deployment, items)
        ctx.tokens = sum(sizes)
    hold = None
    with span_of(info, "admission"):
        if budgets:
            hold = await cost.reserve(
                key=caller.key,
                tenant=caller.tenant,
                model=model,
                estimate=cost.estimate(route.deployment, ctx.tokens, 0),
                downgrade_estimate=None,
                extra=caller.budgets,
            )
        try:
            reservation = await traffic.limits.admit(
                ctx, key=caller.key, tenant=caller.tenant, model=model, own=caller.limits
            )
        except BaseException:
            cost.settle(hold, 0.0)
            raise
    fmt = body.get("encoding_format") or "float"
    dimensions = body.get("dimensions")
    cache = state.cache
    metrics = state.metrics
    keys: list[str] = []
    found: list[Any] = [None] * len(items)
    if cache is not None:
        keys = [
            embedding_key(
                item,
                deployment=route.identity,
                dimensions=dimensions,
                tenant=state.cache_namespace(caller),
                namespace=controls.namespace,
                prefix=state.config.cache.namespace,
            )
            for item in items
        ]
        if controls.lookup:
            with span_of(info, "cache lookup", {"hotpath.inputs": len(keys)}):
                found = await cache.get_many(keys)
    missing = [i for i, v in enumerate(found) if not isinstance(v, bytes)]
    usage: dict[str, Any] = {"prompt_tokens": 0, "total_tokens": 0}
    upstream_model = model
    # Single-flight per input: an input another request is fetching right now (or
    # that repeats in this batch) is awaited, not sent again.
    flights = state.embedding_flights
    mine: list[int] = []
    joined: list[tuple[int, asyncio.Future[bytes]]] = []
    owned: dict[str, asyncio.Future[bytes]] = {}
    loop = asyncio.get_running_loop()
    for i in missing:
        key = keys[i] if keys else None
        if key is None:
            mine.append(i)
            continue
        future = flights.get(key)
        if future is None:
            future = owned[key] = flights[key] = loop.create_future()
            mine.append(i)
        else:
            joined.append((i, future))
    try:
        if mine:
            vectors, upstream_model, usage = await _fetch(
                state, request, resolved, ctx, body, [items[i] for i in mine], single, info
            )
            fresh: dict[str, bytes] = {}
            for i, vector in zip(mine, vectors, strict=True):
                found[i] = vector
                if keys:
                    fresh[keys[i]] = vector
                    owned[keys[i]].set_result(vector)
            if cache is not None and controls.store and fresh:
                await cache.set_many(fresh, ttl=controls.ttl or state.config.cache.ttl)
    except BaseException as exc:
        traffic.limits.settle(reservation, 0)
        cost.settle(hold, 0.0)
        if ctx.attempts:
            cost.book(
                key=caller.key,
                tenant=caller.tenant,
                model=model,
                deployment=ctx.deployment,
                upstream_model=ctx.upstream_model,
                usage=None,
            )
        failure = exc if isinstance(exc, ApiError) else ApiError(503, "embedding call cancelled")
        for future in owned.values():
            if not future.done():
                future.set_exception(failure)
                future.exception()  # retrieved: waiters may all be gone
        raise
    finally:
        for key, future in owned.items():
            if flights.get(key) is future:
                del flights[key]
    for i, future in joined:
        found[i] = await asyncio.shield(future)
    if joined:
        metrics.child(metrics.coalesced, _ROUTE).inc(len(joined))
    missing = mine  # what this request sent upstream
    traffic.limits.settle(reservation, usage_tokens(usage) if mine else 0)
    _book(state, caller, model, route, ctx, items, sizes, mine, joined, usage, hold)
    outcome = b"miss" if len(missing) == len(items) else b"hit" if not missing else b"partial"
    if cache is None or not controls.lookup:
        outcome = b"bypass"
    if info is not None:
        info.cache = outcome.decode()
        info.coalesced = bool(joined) and not mine
        info.deployment = ctx.deployment or route.name
    for label, count in (("hit", len(items) - len(missing)), ("miss", len(missing))):
        if count and outcome != b"bypass":
            metrics.child(metrics.cache, _ROUTE, label, "").inc(count)
    result = {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": _render(v, fmt)}
            for i, v in enumerate(found)
        ],
        "model": upstream_model,
        "usage": usage,
    }
    headers = [
        (b"x-hotpath-cache", outcome),
        (b"x-hotpath-cache-hits", str(len(items) - len(missing) - len(joined)).encode()),
    ]
    if joined:
        headers.append((b"x-hotpath-coalesced", b"true"))
    await send_bytes(request.send, 200, orjson.dumps(result), headers)
    metrics.child(metrics.latency, _ROUTE, outcome.decode()).observe(time.perf_counter() - started)
