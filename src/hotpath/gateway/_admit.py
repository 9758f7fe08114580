"""What a chat request goes through before the cache: model selection, its token
count, its budgets and the front-door rate limits.

A ``select`` route picks the model first (by score, the ``x-hotpath-tier``
header or the prompt's length); the budgets then reserve the call's estimated
cost on that model, and may downgrade it to the cheaper model a budget names;
the rate limits come last. A refusal anywhere gives back what was reserved
before it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hotpath._errors import ConfigError
from hotpath.cost._budget import BudgetHold
from hotpath.gateway._api_errors import ApiError
from hotpath.gateway._asgi import Request
from hotpath.gateway._resolve import Resolved
from hotpath.gateway._state import Caller, State
from hotpath.gateway._tokens import count_request
from hotpath.gateway._traffic_context import CallContext, Reservation

__all__ = ["Admission", "admit_chat"]

_TIER = b"x-hotpath-tier"


@dataclass(slots=True)
class Admission:
    """The model a request goes to, what it reserved, and what the response says
    about the choice."""

    resolved: Resolved
    reservation: Reservation | None
    hold: BudgetHold | None
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


def _tier(request: Request) -> str:
    raw = request.headers.get(_TIER)
    if raw is None:
        return "default"
    tier = raw.decode("latin-1").strip().lower()
    if tier not in ("default", "cheap"):
        raise ApiError(
            400,
            f"header x-hotpath-tier must be 'default' or 'cheap', got {tier!r}",
            param="x-hotpath-tier",
        )
    return tier


async def admit_chat(
    state: State,
    request: Request,
    body: dict[str, Any],
    model: str,
    caller: Caller,
    ctx: CallContext,
) -> Admission:
    traffic = state.traffic
    cost = state.cost
    spec = state.config.models.get(model)
    selecting = spec is not None and spec.select is not None
    resolved = None if selecting else state.resolve(model)
    budgets = cost.has_budgets(caller.budgets)
    own_tpm = any(rule.tpm is not None for rule in caller.limits)
    prompt = ceiling = 0
    needs_count = budgets or selecting or own_tpm or traffic.limits.counts_tokens
    if needs_count or (resolved is not None and resolved.spec.context_window is not None):
        encoding_model = resolved.primary.deployment if resolved is not None else model
        counts = count_request(body, encoding_model, traffic.config.default_completion_tokens)
        prompt, ceiling = counts.prompt, counts.completion
        ctx.tokens, ctx.context_tokens = counts.prompt + counts.completion, counts.context
    headers: list[tuple[bytes, bytes]] = []
    if resolved is None:
        tier = _tier(request)
        try:
            asked = body.get("max_completion_tokens") or body.get("max_tokens")
            completion = ceiling if isinstance(asked, int) else None
            choice = state.select(model, prompt_tokens=prompt, completion=completion, tier=tier)
        except ConfigError as exc:
            raise ApiError(400, str(exc)) from None
        resolved = state.resolve(choice.model)
        headers.append((b"x-hotpath-model", choice.model.encode()))
        headers.append((b"x-hotpath-selected", choice.reason.encode()))
    hold = None
    if budgets:

        def estimate_on(name: str) -> float | None:
            return cost.estimate(state.resolve(name).primary.deployment, prompt, ceiling)

        hold = await cost.reserve(
            key=caller.key,
            tenant=caller.tenant,
            model=resolved.public,
            estimate=estimate_on(resolved.public),
            downgrade_estimate=estimate_on,
            extra=caller.budgets,
        )
        if hold is not None and hold.downgraded:
            resolved = state.resolve(hold.model)
            headers = [h for h in headers if h[0] != b"x-hotpath-model"]
            headers.append((b"x-hotpath-model", hold.model.encode()))
            headers.append((b"x-hotpath-budget", b"downgraded"))
    try:
        reservation = await traffic.limits.admit(
            ctx, key=caller.key, tenant=caller.tenant, model=model, own=caller.limits
        )
    except BaseException:
        cost.settle(hold, 0.0)
        raise
    return Admission(resolved, reservation, hold, headers)
