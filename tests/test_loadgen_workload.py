"""Workloads: the same config gives the same requests; each kind has its shape."""

from __future__ import annotations

import itertools
from typing import Any

import orjson
import pytest

from hotpath._errors import ConfigError
from hotpath._tokens import encoder_for
from hotpath.loadgen import LoadConfig, RequestSpec, WorkloadConfig, make_workload, parse_rate
from hotpath.loadgen._paraphrase import WORDINGS, wording

KINDS = ("zipf", "paraphrase", "long-context", "agent")


def _take(cfg: WorkloadConfig, n: int) -> list[RequestSpec]:
    return list(itertools.islice(make_workload(cfg), n))


def _small(kind: str, **kw: Any) -> WorkloadConfig:
    if kind == "long-context":
        kw = {"prompts": 4, "context_tokens": 300} | kw
    return WorkloadConfig(kind=kind, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_same_requests_other_seed_other_requests(kind: str) -> None:
    a = _take(_small(kind, seed=5), 400)
    b = _take(_small(kind, seed=5), 400)
    c = _take(_small(kind, seed=6), 400)
    assert [(s.body, s.stream, s.key) for s in a] == [(s.body, s.stream, s.key) for s in b]
    assert [s.body for s in a] != [s.body for s in c]


@pytest.mark.parametrize("kind", KINDS)
def test_bodies_are_chat_requests_with_the_model_and_stream_flags(kind: str) -> None:
    specs = _take(_small(kind, model="m-1", stream_share=0.3, max_tokens=9), 2000)
    for spec in specs[:200]:
        body = orjson.loads(spec.body)
        assert body["model"] == "m-1"
        assert body["max_tokens"] == 9
        assert body["messages"]
        assert body.get("stream", False) is spec.stream
        if spec.stream:
            assert body["stream_options"] == {"include_usage": True}
    share = sum(s.stream for s in specs) / len(specs)
    assert abs(share - 0.3) < 0.05


def test_zipf_repeats_popular_prompts() -> None:
    specs = _take(WorkloadConfig(prompts=1000, zipf=1.1), 5000)
    counts: dict[str, int] = {}
    for spec in specs:
        counts[spec.key] = counts.get(spec.key, 0) + 1
    assert counts["p0"] == max(counts.values())
    assert len(counts) < 1000
    bodies = {s.key: orjson.loads(s.body)["messages"] for s in specs}
    assert bodies["p0"] != bodies["p1"]


def test_paraphrases_share_a_meaning_but_not_a_text() -> None:
    texts = {wording(0, 3, v) for v in range(WORDINGS)}
    assert WORDINGS == 72
    assert len(texts) == WORDINGS
    specs = _take(WorkloadConfig(kind="paraphrase", prompts=50), 3000)
    by_meaning: dict[str, set[str]] = {}
    for spec in specs:
        text = orjson.loads(spec.body)["messages"][-1]["content"]
        by_meaning.setdefault(spec.meaning, set()).add(text)
    assert len(by_meaning) <= 50
    assert max(len(t) for t in by_meaning.values()) > 20  # a hot meaning, many wordings
    assert len({s.key for s in specs}) > 3 * len(by_meaning)


def test_long_context_prompts_have_the_asked_token_count() -> None:
    cfg = WorkloadConfig(kind="long-context", prompts=3, context_tokens=2000)
    encoder = encoder_for(cfg.model)
    counts = []
    for spec in _take(cfg, 60):
        user = orjson.loads(spec.body)["messages"][-1]["content"]
        counts.append(encoder.count(user))
    assert max(counts) == 2000  # with the longest question
    assert min(counts) > 1980


def test_agent_sessions_grow_their_context_turn_by_turn() -> None:
    cfg = WorkloadConfig(kind="agent", sessions=4, turns=3, prompts=1000, zipf=0.0)
    specs = _take(cfg, 12)
    bodies = [orjson.loads(s.body) for s in specs]
    # rotation: turn 0 of the four sessions, then turn 1, then turn 2
    assert [len(b["messages"]) for b in bodies] == [2] * 4 + [4] * 4 + [6] * 4
    assert [b["tool_choice"] for b in bodies] == ["auto"] * 8 + ["none"] * 4
    first, second, last = bodies[0], bodies[4], bodies[8]
    assert second["messages"][:2] == first["messages"]
    assert last["messages"][:4] == second["messages"]  # each turn extends the last one
    call = last["messages"][2]["tool_calls"][0]
    assert last["messages"][3]["tool_call_id"] == call["id"]
    assert {t["function"]["name"] for t in first["tools"]} >= {call["function"]["name"]}
    assert len(specs[8].body) > len(specs[4].body)
    assert len(specs[4].body) > len(specs[0].body)
    assert specs[12 - 1].key.endswith("t2")
    assert _take(cfg, 13)[12].key.endswith("t0")  # a new session in the first slot


def test_bad_values_name_the_field() -> None:
    with pytest.raises(ConfigError, match=r"WorkloadConfig.stream_share .*1.5"):
        WorkloadConfig(stream_share=1.5)
    with pytest.raises(ConfigError, match=r"WorkloadConfig.kind .*'chat'"):
        WorkloadConfig(kind="chat")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"LoadConfig.concurrency .*0"):
        LoadConfig(concurrency=0)
    with pytest.raises(ConfigError, match="duration, a number of requests"):
        LoadConfig(duration=None)
    with pytest.raises(ConfigError, match="'fast'"):
        parse_rate("fast")
    assert parse_rate("600/m") == 10.0
    assert parse_rate("200/s") == 200.0
    assert parse_rate("200") == 200.0
