"""The admin API, for the admin key only: spend reports, budgets, gateway keys.

``GET /admin/spend``
    Spend, tokens, requests and cache savings grouped by ``by`` (comma-separated
    of day, key, tenant, model, deployment; default ``model``), over ``since`` ..
    ``until`` (``YYYY-MM-DD``, inclusive), filtered by ``key``, ``tenant``,
    ``model`` or ``deployment``; ``format=table`` answers a text table.
``GET /admin/budgets``
    The budgets a ``key``/``tenant``/``model`` is held to, as they stand.
``GET /admin/keys``, ``POST /admin/keys``, ``DELETE /admin/keys/{name}``
    List, create (the secret is in the answer, once), revoke gateway keys.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any
from urllib.parse import parse_qs, unquote

import orjson

from hotpath._errors import ConfigError, HotpathError
from hotpath.cost._ledger_rows import DIMENSIONS
from hotpath.cost._report import spend_document, spend_table
from hotpath.gateway._api_errors import ApiError
from hotpath.gateway._asgi import Request, read_body, send_bytes
from hotpath.gateway._keystore import KeyExistsError, KeyStoreError
from hotpath.gateway._state import State, caller_of
from hotpath.gateway._validate import parse_json

__all__ = ["admin_budgets", "admin_create_key", "admin_keys", "admin_revoke_key", "admin_spend"]

KEYS_PATH = "/admin/keys/"
_KEY_FIELDS = {"name", "tenant", "rpm", "tpm", "budget_usd", "budget_period"}


def admin_digest(state: State) -> str:
    """The admin key's SHA-256; the admin API's 404 when there is none."""
    digest = state.admin_digest
    if digest is None:
        raise ApiError(
            404,
            "the admin API is off: set [admin] key_sha256 or key_env in the gateway config",
            code="not_found",
        )
    return digest


def is_admin_key(digest: str, key: bytes) -> bool:
    """Whether ``key`` is the admin key whose SHA-256 is ``digest`` (in constant time)."""
    return hmac.compare_digest(hashlib.sha256(key.strip()).hexdigest(), digest)


def _require_admin(state: State, request: Request) -> None:
    digest = admin_digest(state)
    auth = request.headers.get(b"authorization") or b""
    scheme, _, key = auth.partition(b" ")
    if scheme.lower() != b"bearer" or not is_admin_key(digest, key):
        raise ApiError(
            401,
            "the admin API needs the admin key",
            type="invalid_request_error",
            code="invalid_api_key",
        )


def _query(request: Request) -> dict[str, str]:
    raw = request.query.decode("latin-1")
    out: dict[str, str] = {}
    for name, values in parse_qs(raw, keep_blank_values=True).items():
        out[name] = values[-1]
    return out


def _bad(exc: Exception, param: str | None = None) -> ApiError:
    return ApiError(400, str(exc), param=param)


async def admin_spend(state: State, request: Request) -> None:
    _require_admin(state, request)
    query = _query(request)
    known = {"by", "since", "until", "format", *DIMENSIONS}
    unknown = sorted(set(query) - known)
    if unknown:
        raise ApiError(
            400,
            f"unknown query parameter {unknown[0]!r} (known: {sorted(known)})",
            param=unknown[0],
        )
    ledger = state.cost.ledger
    if ledger is None:
        raise ApiError(404, "usage accounting is off ([cost] enabled = false)", code="not_found")
    by = tuple(p.strip() for p in query.get("by", "model").split(",") if p.strip())
    where: dict[str, str] = {d: query[d] for d in DIMENSIONS if d in query and d != "day"}
    if "day" in query:
        query.setdefault("since", query["day"])
        query.setdefault("until", query["day"])
    fmt = query.get("format", "json")
    if fmt not in ("json", "table"):
        raise ApiError(400, f"format must be 'json' or 'table', got {fmt!r}", param="format")
    try:
        rows = await ledger.report(
            by=by, since=query.get("since"), until=query.get("until"), where=where
        )
    except ConfigError as exc:
        raise _bad(exc) from None
    except Exception as exc:  # noqa: BLE001 - any store fault is a 503
        raise ApiError(503, f"the usage store cannot be read: {exc}", type="server_error") from None
    if fmt == "table":
        text = spend_table(rows, by).encode()
        await send_bytes(request.send, 200, text, content_type=b"text/plain; charset=utf-8")
        return
    body = spend_document(
        rows,
        by=by,
        since=query.get("since"),
        until=query.get("until"),
        where=where,
        prices_date=state.cost.prices.date,
    )
    await send_bytes(request.send, 200, orjson.dumps(body))


async def admin_budgets(state: State, request: Request) -> None:
    _require_admin(state, request)
    query = _query(request)
    caller_budgets: tuple[Any, ...] = ()
    key = query.get("key", "")
    if key and state.directory is not None:
        record = next((r for r in state.directory.records if r.name == key), None)
        if record is not None and record.budget_usd is not None:
            caller_budgets = caller_of(record).budgets
    try:
        statuses = await state.cost.budgets.status(
            key=key,
            tenant=query.get("tenant", ""),
            model=query.get("model", ""),
            extra=caller_budgets,
        )
    except Exception as exc:  # noqa: BLE001 - any store fault is a 503
        raise ApiError(
            503, f"the budget store cannot be read: {exc}", type="server_error"
        ) from None
    data = [
        {
            "budget": s.name,
            "limit_usd": s.limit,
            "spent_usd": s.spent,
            "reserved_usd": s.reserved,
            "ratio": s.ratio,
            "reset_at": s.reset_at,
        }
        for s in statuses
    ]
    await send_bytes(request.send, 200, orjson.dumps({"data": data}))


def _directory(state: State) -> Any:
    if state.directory is None:
        raise ApiError(404, "the admin API is off", code="not_found")
    return state.directory


async def admin_keys(state: State, request: Request) -> None:
    _require_admin(state, request)
    records = _directory(state).records
    await send_bytes(request.send, 200, orjson.dumps({"data": [r.public() for r in records]}))


async def admin_create_key(state: State, request: Request) -> None:
    raw = await read_body(request, 64 * 1024)
    _require_admin(state, request)
    body = parse_json(raw, orjson.loads)
    if not isinstance(body, dict):
        raise ApiError(400, f"the body must be a JSON object, got {type(body).__name__}")
    unknown = sorted(set(body) - _KEY_FIELDS)
    if unknown:
        raise ApiError(
            400, f"unknown field {unknown[0]!r} (known: {sorted(_KEY_FIELDS)})", param=unknown[0]
        )
    if "name" not in body:
        raise ApiError(400, "the field 'name' is required", param="name")
    values = {"tenant": body.get("name"), **body}
    try:
        record, secret = await _directory(state).create(**values)
    except KeyExistsError as exc:
        raise ApiError(409, str(exc), param="name", code="key_exists") from None
    except KeyStoreError as exc:
        raise ApiError(503, str(exc), type="server_error") from None
    except HotpathError as exc:
        raise _bad(exc) from None
    answer = {**record.public(), "key": secret}
    await send_bytes(request.send, 201, orjson.dumps(answer))


async def admin_revoke_key(state: State, request: Request) -> None:
    _require_admin(state, request)
    name = unquote(request.path[len(KEYS_PATH) :])
    try:
        record = await _directory(state).revoke(name)
    except KeyStoreError as exc:
        raise ApiError(503, str(exc), type="server_error") from None
    if record is None:
        raise ApiError(404, f"no gateway key named {name!r}", code="not_found")
    await send_bytes(request.send, 200, orjson.dumps(record.public()))
