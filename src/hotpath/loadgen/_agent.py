"""The ``agent`` workload: multi-turn sessions whose context grows with tool calls.

A session follows a script: one of ``hotpath demo``'s four agents' system
prompts, a task, then ``turns`` calls. Every call but the last offers three tools
(``tool_choice: "auto"``); before call *t* the conversation has gained *t*
assistant tool calls, each followed by its tool's output (40 to 300 words), so
the prompt grows turn by turn. The last call asks for the answer
(``tool_choice: "none"``). Scripts are drawn from ``prompts`` with Zipf weights: a
popular task is run again by other sessions, turn for turn.

``sessions`` sessions run at a time and the request sequence takes their turns
in rotation; a session that ends is replaced by a new draw. A turn's body is
fixed by the script, not by the answers before it, so a turn may be sent while
the session's previous one is still in flight (when a slow answer lets the
loop come round to the session again): the prompts are the same as in a real
agent's session, the timing between its turns is not.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import orjson

from hotpath._demo_workload import _AGENTS, _TASKS, _WORDS
from hotpath.loadgen._config import WorkloadConfig
from hotpath.loadgen._workload import BodyCache, RequestSpec, ZipfSampler

__all__ = ["TOOLS", "agent_requests", "conversation"]


def _tool(name: str, description: str, **params: str) -> dict[str, Any]:
    properties = {p: {"type": "string", "description": d} for p, d in params.items()}
    schema = {"type": "object", "properties": properties, "required": list(params)}
    return {
        "type": "function",
        "function": {"name": name, "description": description, "parameters": schema},
    }


TOOLS: list[dict[str, Any]] = [
    _tool("read_file", "Read a file of the repository.", path="the file's path"),
    _tool("search", "Search the knowledge base.", query="what to look for"),
    _tool("run_query", "Run a read-only SQL query.", sql="the query"),
]
_ARGUMENT = {"read_file": "path", "search": "query", "run_query": "sql"}


def conversation(seed: int, script: int, turn: int) -> list[dict[str, Any]]:
    """The messages of call ``turn`` (from 0) of ``script``."""
    rng = random.Random(f"agent:{seed}:{script}")
    task = f"{rng.choice(_TASKS)} task #{script}: {' '.join(rng.choices(_WORDS, k=10))}."
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": _AGENTS[script % len(_AGENTS)]},
        {"role": "user", "content": task},
    ]
    for t in range(turn):
        name = rng.choice(list(_ARGUMENT))
        value = "/".join(rng.choices(_WORDS, k=3)) if name == "read_file" else task[:40]
        call_id = f"call_{script}_{t}"
        arguments = orjson.dumps({_ARGUMENT[name]: value}).decode()
        call = {
            "id": call_id,
            "type": "function",
            "function": {"name": name, "arguments": arguments},
        }
        output = " ".join(rng.choices(_WORDS, k=rng.randint(40, 300)))
        messages += [
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": call_id, "content": output},
        ]
    return messages


def agent_requests(cfg: WorkloadConfig) -> Iterator[RequestSpec]:
    """The turns of ``cfg.sessions`` concurrent sessions, in rotation."""
    rng = random.Random(f"agent:{cfg.seed}")
    scripts = ZipfSampler(cfg.pool, cfg.zipf, rng)
    last = cfg.turns - 1

    def build(key: str) -> dict[str, Any]:
        script, turn = (int(part) for part in key[1:].split("t"))
        return {
            "temperature": 0,
            "messages": conversation(cfg.seed, script, turn),
            "tools": TOOLS,
            "tool_choice": "none" if turn == last else "auto",
        }

    bodies = BodyCache(cfg, build)
    slots = [[scripts.draw(), 0] for _ in range(cfg.sessions)]
    while True:
        for slot in slots:
            key = f"s{slot[0]}t{slot[1]}"
            yield bodies.spec(key, key, rng.random() < cfg.stream_share)
            slot[1] += 1
            if slot[1] > last:
                slot[:] = [scripts.draw(), 0]
