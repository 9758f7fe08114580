"""The demo's workload: agent sessions replaying Zipf-distributed chat requests.

A pool of ``prompts`` distinct requests (one of four agents' system prompts, a task,
a tool result of varying length) is sampled with Zipf weights, as agents repeat
their hot steps; a share of the calls stream. The sequence is drawn once from the
seed, split among ``sessions`` concurrent agents (each awaits its answer, "runs a
tool" for a while, then makes its next call) and replayed, identically, against
any OpenAI-compatible base URL: straight to the upstream, then through hotpath.

The client is aiohttp, as in the gateway's own upstream pool. We measured the
official ``openai`` SDK (over httpx) and httpx too, replaying 600 cache hits from 24
concurrent callers on one event loop: p50 3-4 ms with aiohttp, 24-30 ms with httpx,
37-57 ms with the SDK. Their client-side cost would have hidden the gateway's.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

from hotpath._errors import ConfigError

__all__ = ["Call", "DemoConfig", "Outcome", "PassResult", "build_sessions", "replay"]

MODEL = "gpt-4o-mini"
_AGENTS = (
    "You are a coding agent working in a large Python repository. Read the files you are "
    "given, propose the smallest change that fixes the issue, and answer with a patch.",
    "You are a research agent. Summarize the documents you are given, cite every claim, "
    "and list the open questions a human should look at next.",
    "You are a customer-support agent for an online store. Answer politely, follow the "
    "refund policy to the letter, and escalate anything about payments.",
    "You are a data-analysis agent. Given a table excerpt and a question, explain which "
    "query answers it, run it in your head and report the figure with its caveats.",
)
_WORD_TEXT = (
    "account action address answer branch buffer cache change client column commit "
    "config context customer dataset deploy driver error event field file function "
    "handler index invoice issue key latency limit log memory message metric model "
    "module network order owner page patch payment policy query queue record refund "
    "report request result retry review route schema server session shard status table "
    "task test thread token user value"
)
_WORDS = tuple(_WORD_TEXT.split())
_TASKS = ("Fix", "Summarize", "Explain", "Review", "Plan", "Classify", "Extract", "Check")


def _check(ok: bool, name: str, expected: str, value: object) -> None:
    if not ok:
        raise ConfigError(f"DemoConfig.{name}: expected {expected}, got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoConfig:
    """The demo's sizes; validated on construction (:class:`ConfigError` names the field).

    ``ttft`` and ``tokens_per_second`` shape the mock upstream (a non-streamed
    answer arrives after ``ttft + completion_tokens / tokens_per_second``);
    ``think`` is the mean pause (seconds, uniform on ``[0, 2 * think]``) an agent
    spends on its tools between two calls (agents start spread over one call's
    duration); ``memory_entries`` sizes the gateway's memory tier, below the number
    of distinct prompts so some hits come from SQLite.
    """

    calls: int = 1500
    sessions: int = 32
    prompts: int = 1000
    zipf: float = 1.1
    stream_share: float = 1 / 3
    ttft: float = 0.300
    tokens_per_second: float = 200.0
    completion_tokens: int = 32
    think: float = 0.010
    memory_entries: int = 64
    seed: int = 42

    def __post_init__(self) -> None:
        for name in ("calls", "sessions", "prompts", "completion_tokens", "memory_entries"):
            value = getattr(self, name)
            _check(type(value) is int and value >= 1, name, "an int >= 1", value)
        for name in ("zipf", "ttft", "tokens_per_second"):
            value = getattr(self, name)
            ok = isinstance(value, int | float) and math.isfinite(value) and value > 0
            _check(ok, name, "a finite number > 0", value)
        share, think = self.stream_share, self.think
        _check(isinstance(share, int | float) and 0 <= share <= 1, "stream_share", "[0, 1]", share)
        ok = isinstance(think, int | float) and math.isfinite(think) and think >= 0
        _check(ok, "think", "a finite number >= 0", think)
        _check(type(self.seed) is int, "seed", "an int", self.seed)


@dataclass(frozen=True, slots=True)
class Call:
    """One step of an agent: which prompt, streamed or not, the pause before it."""

    prompt: int
    stream: bool
    pause: float
    body: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one call observed. ``ttft`` is the time to the first content chunk
    (streams only); ``cache``, ``tier`` and ``coalesced`` come from the gateway's
    ``x-hotpath-*`` headers (``None`` / ``False`` straight to the upstream)."""

    call: Call
    latency: float
    ttft: float | None = None
    cache: str | None = None
    tier: str | None = None
    coalesced: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None

    @property
    def went_upstream(self) -> bool:
        """Whether this call started an upstream call (neither a hit nor a joiner)."""
        return self.error is None and self.cache != "hit" and not self.coalesced


@dataclass(frozen=True, slots=True)
class PassResult:
    outcomes: list[Outcome]
    wall: float


def _prompt_body(cfg: DemoConfig, index: int) -> dict[str, object]:
    """Prompt number ``index`` of the pool: deterministic in (seed, index)."""
    rng = random.Random(f"{cfg.seed}:{index}")
    agent = _AGENTS[index % len(_AGENTS)]
    context = " ".join(rng.choices(_WORDS, k=rng.randint(20, 160)))
    task = f"{rng.choice(_TASKS)} item #{index}: {' '.join(rng.choices(_WORDS, k=8))}."
    return {
        "model": MODEL,
        "temperature": 0,
        "messages": [
            {"role": "system", "content": agent},
            {"role": "user", "content": f"{task}\n\nTool output:\n{context}"},
        ],
    }


def build_sessions(cfg: DemoConfig) -> list[list[Call]]:
    """The calls of each session, in order; the same for every pass of one config."""
    rng = random.Random(cfg.seed)
    weights = itertools.accumulate(1.0 / rank**cfg.zipf for rank in range(1, cfg.prompts + 1))
    ranks = rng.choices(range(cfg.prompts), cum_weights=list(weights), k=cfg.calls)
    bodies: dict[tuple[int, bool], bytes] = {}
    calls: list[Call] = []
    # Agents start spread over one upstream call's duration, not all in one instant.
    ramp = cfg.ttft + cfg.completion_tokens / cfg.tokens_per_second
    for i, rank in enumerate(ranks):
        stream = rng.random() < cfg.stream_share
        pause = rng.uniform(0, ramp if i < cfg.sessions else 2 * cfg.think)
        body = bodies.get((rank, stream))
        if body is None:
            data = _prompt_body(cfg, rank)
            if stream:
                data |= {"stream": True, "stream_options": {"include_usage": True}}
            body = bodies[rank, stream] = orjson.dumps(data)
        calls.append(Call(rank, stream, pause, body))
    return [calls[s :: cfg.sessions] for s in range(cfg.sessions)]


async def replay(
    base_url: str, sessions: list[list[Call]], on_done: Callable[[Outcome], None]
) -> PassResult:
    """Run every session concurrently against ``base_url`` (``.../v1``); each
    session pauses, calls, and goes on to its next call once the answer is read.
    The calls go through ``hotpath bench``'s sender."""
    # Here, not at the top: hotpath.loadgen's workloads import this module's prompts.
    from hotpath.loadgen._client import HttpSender
    from hotpath.loadgen._workload import RequestSpec

    outcomes: list[Outcome] = []
    clock = time.perf_counter
    sender = HttpSender(
        base_url, clock=clock, connections=len(sessions) + 8, timeout=120, api_key="demo"
    )
    async with sender as send:

        async def agent(calls: list[Call]) -> None:
            for call in calls:
                if call.pause:
                    await asyncio.sleep(call.pause)
                started = clock()
                spec = RequestSpec(call.body, stream=call.stream, key="", meaning="")
                got = await send(spec)
                first = got.first_token
                outcome = Outcome(
                    call,
                    got.end - started,
                    None if first is None else first - started,
                    cache=got.cache,
                    tier=got.tier,
                    coalesced=got.coalesced,
                    prompt_tokens=got.prompt_tokens,
                    completion_tokens=got.completion_tokens,
                    error=got.error,
                )
                outcomes.append(outcome)
                on_done(outcome)

        started = clock()
        async with asyncio.TaskGroup() as group:
            for calls in sessions:
                group.create_task(agent(calls))
        wall = clock() - started
    return PassResult(outcomes, wall)
