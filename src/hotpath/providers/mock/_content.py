"""Deterministic answers: the same request always gets the same content.

Content is drawn from a byte stream seeded by a hash of the request (see
:func:`request_digest`). Plain text is made of words from :data:`VOCAB`, each of
which is exactly one token in ``cl100k_base`` and ``o200k_base`` with or without
a leading space, so a text answer of N words is N tokens and streams as N chunks.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from hotpath._tokens import Encoder

__all__ = [
    "VOCAB",
    "Answer",
    "Source",
    "Spec",
    "ToolCall",
    "fill_schema",
    "generate",
    "request_digest",
]

_WORDS = """
    about above access action actual address after against allow along always answer apply
    around author back based before begin below better black blue board book bottom build cache
    camera card case center change choice class clean click cloud color common company context
    copy corner country cover create current date design device doing door down dream early easy
    edge empty engine equal even every exact expect face fair family field file final fine first
    flag floor focus force forward free friend front future general glass good great green group
    guide hand hard health heart help hold hope hour house image inner inside item just keep
    label large later lead least leave length light line list little load long loop made major
    make map market matter media memory middle mind mode moment month more mother much must
    native need network next night normal note object offer often option other over owner paper
    part pass path people period phone place plan play policy pool press print problem program
    project public push quiet radio range rate read real record report reset result review right
    road role root round rule sample scale school score search second select sense serve server
    setup share show sign silver simple size small smart soft sound source space speed square stack
    stand start status still stone story street strong summer sure table talk task test thing
    third title token total tower trade tree trust type under until upper valid very view voice
    walk want watch wave week west wheel while whole window winter word world year
"""
VOCAB: tuple[str, ...] = tuple(_WORDS.split())  # 256: one byte picks one word
_SPACED: tuple[str, ...] = tuple(" " + w for w in VOCAB)
# Encodings in which every VOCAB word (bare or after a space) is a single token.
_ONE_TOKEN_WORDS = frozenset({"cl100k_base", "o200k_base"})
_ALNUM = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_MAX_DEPTH = 8


def request_digest(*parts: object) -> bytes:
    """SHA-256 of the parts as canonical JSON (sorted keys)."""
    try:
        blob = orjson.dumps(parts, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    except TypeError:  # e.g. an integer beyond 64 bits
        blob = repr(parts).encode()
    return hashlib.sha256(blob).digest()


class Source:
    """An endless deterministic byte stream (SHAKE-256 of a seed)."""

    __slots__ = ("_buf", "_pos", "_seed")

    def __init__(self, seed: bytes) -> None:
        self._seed = seed
        self._buf = hashlib.shake_256(seed).digest(128)
        self._pos = 0

    def take(self, n: int) -> bytes:
        """The next *n* bytes."""
        end = self._pos + n
        if end > len(self._buf):
            # SHAKE output is prefix-stable: a longer digest extends the shorter one.
            self._buf = hashlib.shake_256(self._seed).digest(max(2 * len(self._buf), end))
        chunk = self._buf[self._pos : end]
        self._pos = end
        return chunk

    def byte(self) -> int:
        return self.take(1)[0]

    def words(self, count: int) -> list[str]:
        """*count* vocabulary words, the first bare and the rest space-prefixed."""
        raw = self.take(count)
        return [VOCAB[raw[0]], *[_SPACED[b] for b in raw[1:]]] if count else []

    def ident(self, length: int = 24) -> str:
        return "".join(_ALNUM[b % len(_ALNUM)] for b in self.take(length))


def fill_schema(schema: object, source: Source, depth: int = 0) -> Any:
    """A value matching a (simple) JSON schema, drawn from *source*.

    Objects get their ``required`` properties (all properties when there is no
    ``required`` list); arrays get ``minItems`` items (at least one); enums, const,
    ``anyOf`` / ``oneOf`` (first option), strings, integers (within
    ``minimum``/``maximum``), numbers, booleans and null are supported.
    """
    if not isinstance(schema, dict) or depth > _MAX_DEPTH:
        return "".join(source.words(2))
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[source.byte() % len(enum)]
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            return fill_schema(options[0], source, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
    if kind == "object":
        props = schema.get("properties")
        props = props if isinstance(props, dict) else {}
        required = schema.get("required")
        keys = [k for k in required if isinstance(k, str)] if isinstance(required, list) else props
        return {k: fill_schema(props.get(k), source, depth + 1) for k in keys}
    if kind == "array":
        low = schema.get("minItems")
        count = min(low, 3) if isinstance(low, int) and low > 1 else 1
        return [fill_schema(schema.get("items"), source, depth + 1) for _ in range(count)]
    if kind == "integer":
        return _clamp(schema, source.byte())
    if kind == "number":
        return _clamp(schema, source.byte() + source.byte() / 256)
    if kind == "boolean":
        return bool(source.byte() & 1)
    if kind == "null":
        return None
    return "".join(source.words(2))


def _clamp(schema: dict[str, Any], value: float) -> Any:
    low, high = schema.get("minimum"), schema.get("maximum")
    if isinstance(low, int | float) and value < low:
        value = low
    if isinstance(high, int | float) and value > high:
        value = high
    return value


@dataclass(frozen=True, slots=True)
class Spec:
    """What a request asks for, independent of the API it came through."""

    natural: int  # answer length in tokens before any cut (config completion_tokens)
    limit: int | None = None  # max_tokens / max_completion_tokens / Anthropic max_tokens
    json_mode: bool = False
    json_schema: object = None
    tool: tuple[str, object] | None = None  # (name, parameters schema)
    stops: tuple[str, ...] = ()
    content_filter: bool = False


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str  # 24 characters; the API layer adds "call_" / "toolu_"
    name: str
    arguments: str
    pieces: list[str]


@dataclass(frozen=True, slots=True)
class Answer:
    """One generated choice. ``tokens == len(pieces)`` (or the tool call's pieces)."""

    pieces: list[str]
    tool: ToolCall | None
    finish: str  # "stop" | "length" | "tool" | "content_filter" | "stop_sequence"
    stop_sequence: str | None
    tokens: int
    seed: bytes


def _split(encoder: Encoder, words: list[str]) -> list[str]:
    if encoder.name in _ONE_TOKEN_WORDS:
        return words
    return encoder.pieces("".join(words))


def generate(encoder: Encoder, digest: bytes, index: int, spec: Spec) -> Answer:
    """The deterministic answer number *index* to the request hashed as *digest*."""
    seed = digest + index.to_bytes(4, "little")
    source = Source(seed)
    if spec.content_filter:
        pieces = _split(encoder, source.words(max(1, spec.natural // 2)))
        pieces, finish, _ = _cut(pieces, spec.limit, "content_filter")
        return Answer(pieces, None, finish, None, len(pieces), seed)
    if spec.tool is not None:
        name, schema = spec.tool
        ident = source.ident()
        arguments = orjson.dumps(fill_schema(schema or {"type": "object"}, source)).decode()
        pieces, finish, cut = _cut(encoder.pieces(arguments), spec.limit, "tool")
        if cut:
            arguments = "".join(pieces)
        return Answer([], ToolCall(ident, name, arguments, pieces), finish, None, len(pieces), seed)
    if spec.json_schema is not None or spec.json_mode:
        if isinstance(spec.json_schema, dict):
            value = fill_schema(spec.json_schema, source)
        else:
            value = {"answer": "".join(source.words(max(1, spec.natural - 5)))}
        pieces = encoder.pieces(orjson.dumps(value).decode())
    else:
        pieces = _split(encoder, source.words(spec.natural))
    stop_sequence = None
    finish = "stop"
    if spec.stops:
        pieces, stop_sequence = _apply_stops(pieces, spec.stops)
        if stop_sequence is not None:
            finish = "stop_sequence"
    pieces, finish, cut = _cut(pieces, spec.limit, finish)
    return Answer(pieces, None, finish, None if cut else stop_sequence, len(pieces), seed)


def _cut(pieces: list[str], limit: int | None, finish: str) -> tuple[list[str], str, bool]:
    if limit is not None and len(pieces) > limit:
        return pieces[:limit], "length", True
    return pieces, finish, False


def _apply_stops(pieces: list[str], stops: tuple[str, ...]) -> tuple[list[str], str | None]:
    text = "".join(pieces)
    best, hit = len(text) + 1, None
    for stop in stops:
        at = text.find(stop) if stop else -1
        if 0 <= at < best:
            best, hit = at, stop
    if hit is None:
        return pieces, None
    kept: list[str] = []
    pos = 0
    for piece in pieces:
        if pos + len(piece) > best:
            if best > pos:
                kept.append(piece[: best - pos])
            break
        kept.append(piece)
        pos += len(piece)
    return kept, hit
