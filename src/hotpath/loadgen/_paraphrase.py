"""The ``paraphrase`` workload: repeats that mean the same thing in other words.

Each meaning is one request (summarize, explain, fix, deploy, compare or test)
about one subject ("the payment retry handler"). Each time a meaning is drawn
(Zipf weights over meanings) it is worded by one of six templates of its request,
with one of four openings and three closings: 72 wordings of the same question,
for an exact cache to miss and a semantic cache to catch. The spec's ``meaning``
names the meaning, its ``key`` the exact wording.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

from hotpath._demo_workload import _WORDS
from hotpath.loadgen._config import WorkloadConfig
from hotpath.loadgen._workload import BodyCache, RequestSpec, ZipfSampler

__all__ = ["WORDINGS", "paraphrase_requests", "wording"]

_SYSTEM = "You are a helpful engineering assistant. Answer precisely and briefly."
_TEMPLATES: tuple[tuple[str, ...], ...] = (
    (
        "Summarize {x}.",
        "Give me a short summary of {x}.",
        "Can you sum up {x} for me?",
        "What are the key points of {x}?",
        "Write a brief overview of {x}.",
        "I need the gist of {x}.",
    ),
    (
        "Explain how {x} works.",
        "How does {x} work?",
        "Can you walk me through how {x} works?",
        "Describe the way {x} operates.",
        "Help me understand the workings of {x}.",
        "What does {x} do, step by step?",
    ),
    (
        "Fix the bug in {x}.",
        "There is a bug in {x}; please fix it.",
        "Find and repair the defect in {x}.",
        "Something in {x} is broken. Can you fix it?",
        "Correct the error in {x}.",
        "Debug {x} and patch the problem.",
    ),
    (
        "How do I deploy {x}?",
        "List the steps to deploy {x}.",
        "What is the procedure for deploying {x}?",
        "Walk me through deploying {x}.",
        "Give me a checklist for rolling out {x}.",
        "Outline how to ship {x} to production.",
    ),
    (
        "Compare {x} with its previous version.",
        "How does {x} differ from the previous version?",
        "What changed in {x} since the last version?",
        "Contrast {x} and the version before it.",
        "Tell me the differences between {x} and its predecessor.",
        "Which changes separate {x} from the prior release?",
    ),
    (
        "Write unit tests for {x}.",
        "Create some unit tests covering {x}.",
        "Can you add tests for {x}?",
        "I need a test suite for {x}.",
        "Produce unit tests that exercise {x}.",
        "Draft tests to check {x}.",
    ),
)
_OPENINGS = ("", "Hi! ", "Quick question: ", "Please help. ")
_CLOSINGS = ("", " Thanks!", " Thank you.")
_KINDS = ("module", "service", "handler", "pipeline", "report", "policy", "job", "schema")

#: Wordings of each meaning.
WORDINGS = len(_TEMPLATES[0]) * len(_OPENINGS) * len(_CLOSINGS)


def _subject(seed: int, meaning: int) -> str:
    rng = random.Random(f"paraphrase:{seed}:{meaning}")
    first, second = rng.sample(_WORDS, 2)
    return f"the {first} {second} {rng.choice(_KINDS)}"


def wording(seed: int, meaning: int, variant: int) -> str:
    """Wording number ``variant`` (``0 <= variant < WORDINGS``) of a meaning."""
    template, rest = divmod(variant, len(_OPENINGS) * len(_CLOSINGS))
    opening, closing = divmod(rest, len(_CLOSINGS))
    text = _TEMPLATES[meaning % len(_TEMPLATES)][template].format(x=_subject(seed, meaning))
    return f"{_OPENINGS[opening]}{text}{_CLOSINGS[closing]}"


def paraphrase_requests(cfg: WorkloadConfig) -> Iterator[RequestSpec]:
    """Meanings drawn with Zipf weights, each worded at random."""
    rng = random.Random(f"paraphrase:{cfg.seed}")
    meanings = ZipfSampler(cfg.pool, cfg.zipf, rng)

    def build(key: str) -> dict[str, Any]:
        meaning, variant = (int(part) for part in key[1:].split("v"))
        text = wording(cfg.seed, meaning, variant)
        messages = [{"role": "system", "content": _SYSTEM}, {"role": "user", "content": text}]
        return {"temperature": 0, "messages": messages}

    bodies = BodyCache(cfg, build)
    while True:
        meaning = meanings.draw()
        key = f"m{meaning}v{rng.randrange(WORDINGS)}"
        yield bodies.spec(key, f"m{meaning}", rng.random() < cfg.stream_share)
