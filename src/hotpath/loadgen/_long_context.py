"""The ``long-context`` workload: documents of K tokens, each with a question.

``prompts`` documents are built before the run starts (so building them costs no
send lag), each ``context_tokens`` tokens long by the model's tokenizer (o200k for
names it does not know), counted over the user message. Each request draws a
document with Zipf weights and one of eight questions about it.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

from hotpath._demo_workload import _WORDS
from hotpath._tokens import encoder_for
from hotpath.loadgen._config import WorkloadConfig
from hotpath.loadgen._workload import BodyCache, RequestSpec, ZipfSampler

__all__ = ["document", "long_context_requests"]

_SYSTEM = "Answer questions about the document you are given. Quote it when you can."
_QUESTIONS = (
    "What is this document about?",
    "List the five most important items in the document.",
    "Which errors does the document mention?",
    "Summarize the document in three sentences.",
    "What should an on-call engineer do first, according to the document?",
    "Which components appear most often?",
    "Is anything in the document contradictory?",
    "Extract every number mentioned in the document.",
)


def document(model: str, seed: int, index: int, tokens: int) -> str:
    """Document ``index``: words until the user message it heads is ``tokens``
    tokens long with the longest question (shorter ones make it a little shorter)."""
    encoder = encoder_for(model)
    rng = random.Random(f"long-context:{seed}:{index}")
    head = f"Document #{index}:\n"
    tail = f"\n\nQuestion: {max(_QUESTIONS, key=len)}"
    words: list[str] = []
    for _ in range(8):  # most words are one token: this converges in two or three rounds
        text = head + " ".join(words) + tail
        missing = tokens - encoder.count(text)
        if missing == 0:
            break
        if missing > 0:
            words += rng.choices(_WORDS, k=missing)
        else:
            del words[missing:]
    return head + " ".join(words)


def long_context_requests(cfg: WorkloadConfig) -> Iterator[RequestSpec]:
    """Documents drawn with Zipf weights, one of eight questions each time; the
    documents are built here, before the first request is asked for."""
    docs = [document(cfg.model, cfg.seed, i, cfg.context_tokens) for i in range(cfg.pool)]
    return _requests(cfg, docs)


def _requests(cfg: WorkloadConfig, docs: list[str]) -> Iterator[RequestSpec]:
    rng = random.Random(f"long-context:{cfg.seed}")
    pick = ZipfSampler(cfg.pool, cfg.zipf, rng)

    def build(key: str) -> dict[str, Any]:
        doc, question = (int(part) for part in key[1:].split("q"))
        user = f"{docs[doc]}\n\nQuestion: {_QUESTIONS[question]}"
        messages = [{"role": "system", "content": _SYSTEM}, {"role": "user", "content": user}]
        return {"temperature": 0, "messages": messages}

    bodies = BodyCache(cfg, build)
    while True:
        key = f"d{pick.draw()}q{rng.randrange(len(_QUESTIONS))}"
        yield bodies.spec(key, key, rng.random() < cfg.stream_share)
