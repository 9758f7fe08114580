"""Workloads: endless, seeded sequences of chat-completion requests.

A workload is an iterator of :class:`RequestSpec`, the same sequence for the same
:class:`~hotpath.loadgen.WorkloadConfig` on every run and every target, so a
comparison sends the same requests in the same order. Bodies are serialized once
per distinct request and reused. :func:`make_workload` picks the kind:

- ``zipf``: the prompts of ``hotpath demo`` (:mod:`hotpath._demo_workload`: one
  of four agents' system prompts, a task, a tool output of varying length);
- ``paraphrase``: :mod:`hotpath.loadgen._paraphrase`;
- ``long-context``: :mod:`hotpath.loadgen._long_context`;
- ``agent``: :mod:`hotpath.loadgen._agent`.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from hotpath._demo_workload import DemoConfig, _prompt_body
from hotpath.loadgen._config import WorkloadConfig

__all__ = ["BodyCache", "RequestSpec", "ZipfSampler", "make_workload"]


@dataclass(frozen=True, slots=True)
class RequestSpec:
    """One request of a workload. ``key`` names its exact text (two specs with
    the same key send the same messages); ``meaning`` names what it asks (the same
    for every paraphrase of one question), for the report's ceilings of exact and
    semantic hit rates."""

    body: bytes = field(repr=False)
    stream: bool
    key: str
    meaning: str


class ZipfSampler:
    """Ranks ``0 .. n-1`` with weights ``1 / (rank + 1) ** s`` (``s = 0``: uniform)."""

    __slots__ = ("_cum", "_rng", "_total")

    def __init__(self, n: int, s: float, rng: random.Random) -> None:
        self._cum = list(itertools.accumulate(1.0 / (rank**s) for rank in range(1, n + 1)))
        self._total = self._cum[-1]
        self._rng = rng

    def draw(self) -> int:
        i = bisect.bisect_right(self._cum, self._rng.random() * self._total)
        return min(i, len(self._cum) - 1)


class BodyCache:
    """Serialized bodies, built once per (key, stream): the request's messages from
    ``build(key)``, with the config's model, ``max_tokens`` and stream options."""

    __slots__ = ("_bodies", "_build", "_cfg")

    def __init__(self, cfg: WorkloadConfig, build: Callable[[str], dict[str, Any]]) -> None:
        self._cfg = cfg
        self._build = build
        self._bodies: dict[tuple[str, bool], bytes] = {}

    def spec(self, key: str, meaning: str, stream: bool) -> RequestSpec:
        body = self._bodies.get((key, stream))
        if body is None:
            data: dict[str, Any] = {"model": self._cfg.model, **self._build(key)}
            if self._cfg.max_tokens is not None:
                data["max_tokens"] = self._cfg.max_tokens
            if stream:
                data |= {"stream": True, "stream_options": {"include_usage": True}}
            body = self._bodies[key, stream] = orjson.dumps(data)
        return RequestSpec(body, stream, key, meaning)


def _zipf_requests(cfg: WorkloadConfig) -> Iterator[RequestSpec]:
    rng = random.Random(f"zipf:{cfg.seed}")
    ranks = ZipfSampler(cfg.pool, cfg.zipf, rng)
    demo = DemoConfig(seed=cfg.seed)

    def build(key: str) -> dict[str, Any]:
        body = _prompt_body(demo, int(key[1:]))
        return {"temperature": 0, "messages": body["messages"]}

    bodies = BodyCache(cfg, build)
    while True:
        key = f"p{ranks.draw()}"
        yield bodies.spec(key, key, rng.random() < cfg.stream_share)


def make_workload(cfg: WorkloadConfig) -> Iterator[RequestSpec]:
    """The endless request sequence of ``cfg`` (deterministic in the whole config)."""
    if cfg.kind == "zipf":
        return _zipf_requests(cfg)
    if cfg.kind == "paraphrase":
        from hotpath.loadgen._paraphrase import paraphrase_requests

        return paraphrase_requests(cfg)
    if cfg.kind == "long-context":
        from hotpath.loadgen._long_context import long_context_requests

        return long_context_requests(cfg)
    from hotpath.loadgen._agent import agent_requests

    return agent_requests(cfg)
