"""Cache keys: a stable hash of what changes the answer, and nothing else."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import subprocess
import sys
from typing import Any

import pytest

from hotpath.gateway._cache_key import KEY_VERSION, chat_key, embedding_key, is_sampled

DEPLOYMENT = "openai:gpt-4o-mini"


def body(**extra: Any) -> dict[str, Any]:
    return {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "hello"}],
        **extra,
    }


def key(request: dict[str, Any], **options: Any) -> str:
    options.setdefault("deployment", DEPLOYMENT)
    return chat_key(request, **options)


# ---------------------------------------------------------------- fixed vectors

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]

# (body, chat_key options, key). Computed once; a change here means every
# deployed cache misses, so it must be deliberate (bump KEY_VERSION).
CHAT_VECTORS = [
    pytest.param(
        {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]},
        {"deployment": "openai:gpt-4o-mini"},
        "hp:chat:69160c3ddb5e5d37688e14744b9522a6",
        id="minimal",
    ),
    pytest.param(
        {
            "model": "gpt-4o",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "2+2?"},
            ],
            "temperature": 0,
            "top_p": 1.0,
            "seed": 7,
            "max_tokens": 16,
        },
        {"deployment": "openai:gpt-4o", "tenant": "acme", "namespace": "run-1"},
        "hp:chat:5c14663be428f2624b46cc3bc97c3642",
        id="sampling-tenant-namespace",
    ),
    pytest.param(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "weather in Paris?"}],
            "tools": TOOLS,
            "tool_choice": "auto",
            "temperature": 0.7,
        },
        {"deployment": "anthropic:claude-sonnet", "prefix": "gw"},
        "gw:chat:67dc17fdbdbffe1f25a11af5bef4dd3e",
        id="tools-prefix",
    ),
    pytest.param(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "héllo wörld — 你好 🚀"}],
            "response_format": {"type": "json_object"},
            "temperature": 0.25,
        },
        {"deployment": "openai:m", "tenant": "té"},
        "hp:chat:2ad0babf9e2215b50264d3ab10e2daf2",
        id="unicode",
    ),
]


@pytest.mark.parametrize(("request_body", "options", "expected"), CHAT_VECTORS)
def test_chat_key_matches_its_fixed_vector(
    request_body: dict[str, Any], options: dict[str, str], expected: str
) -> None:
    assert chat_key(request_body, **options) == expected


def test_embedding_keys_match_their_fixed_vectors() -> None:
    text = embedding_key("hello world", deployment="openai:text-embedding-3-small", dimensions=None)
    tokens = embedding_key(
        [15339, 1917],
        deployment="openai:text-embedding-3-small",
        dimensions=256,
        tenant="acme",
        namespace="n",
    )
    assert text == "hp:emb:22b98c528baa006369b9e8e4b353d56c"
    assert tokens == "hp:emb:1da2b1caa9c35027b81fa6e19cfe9066"


def _reference_digest(*parts: bytes) -> str:
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        h.update(len(part).to_bytes(4, "big") + part)
    return h.hexdigest()


def test_chat_key_is_blake2b_of_length_prefixed_parts_and_sorted_compact_json() -> None:
    """The documented canonical form, rebuilt with the standard library."""
    request = {
        "model": "ignored",
        "stream": True,
        "temperature": 0.0,
        "messages": [{"role": "user", "content": "héllo"}],
    }
    canon = {"messages": request["messages"], "temperature": 0}
    blob = json.dumps(canon, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    digest = _reference_digest(KEY_VERSION, b"chat", b"acme", b"ns", b"openai:m", blob)
    got = chat_key(request, deployment="openai:m", tenant="acme", namespace="ns", prefix="px")
    assert got == f"px:chat:{digest}"


def test_embedding_key_is_blake2b_of_length_prefixed_parts() -> None:
    digest = _reference_digest(KEY_VERSION, b"emb", b"t", b"n", b"d", b"64", b"[1,2,3]")
    got = embedding_key([1, 2, 3], deployment="d", dimensions=64, tenant="t", namespace="n")
    assert got == f"hp:emb:{digest}"


def test_key_version_is_pinned() -> None:
    assert KEY_VERSION == b"hp-key-1"


# ---------------------------------------------------------------- what does not change it


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("stream", True),
        ("stream", False),
        ("stream_options", {"include_usage": True}),
        ("user", "end-user-42"),
        ("metadata", {"run": "7", "team": "search"}),
        ("store", True),
        ("service_tier", "flex"),
        ("safety_identifier", "hashed-user"),
        ("prompt_cache_key", "conversation-9"),
    ],
)
def test_fields_that_cannot_change_the_answer_do_not_change_the_key(field: str, value: Any) -> None:
    assert key(body(**{field: value})) == key(body())


def test_all_ignored_fields_together_do_not_change_the_key() -> None:
    noisy = body(
        stream=True,
        stream_options={"include_usage": True},
        user="u",
        metadata={"a": "b"},
        store=False,
        service_tier="auto",
        safety_identifier="s",
        prompt_cache_key="p",
    )
    assert key(noisy) == key(body())


def test_model_name_does_not_change_the_key_the_deployment_does() -> None:
    assert key(body(model="alias-a")) == key(body(model="alias-b"))
    assert key(body(), deployment="openai:a") != key(body(), deployment="openai:b")


def test_key_order_does_not_change_the_key_at_any_depth() -> None:
    first = {
        "model": "m",
        "messages": [{"role": "user", "content": "hi", "name": "ann"}],
        "tools": TOOLS,
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "strict": True}},
        "temperature": 0,
    }
    reordered = {
        "temperature": 0,
        "response_format": {"json_schema": {"strict": True, "name": "x"}, "type": "json_schema"},
        "tools": [
            {
                "function": {
                    "parameters": {
                        "required": ["city"],
                        "properties": {"city": {"type": "string"}},
                        "type": "object",
                    },
                    "name": "get_weather",
                },
                "type": "function",
            }
        ],
        "messages": [{"name": "ann", "content": "hi", "role": "user"}],
        "model": "m",
    }
    assert key(first) == key(reordered)


@pytest.mark.parametrize(
    ("field", "as_int", "as_float"),
    [
        ("temperature", 0, 0.0),
        ("temperature", 1, 1.0),
        ("top_p", 1, 1.0),
        ("presence_penalty", 0, 0.0),
        ("frequency_penalty", -2, -2.0),
    ],
)
def test_integral_float_sampling_fields_key_like_integers(
    field: str, as_int: int, as_float: float
) -> None:
    assert key(body(**{field: as_int})) == key(body(**{field: as_float}))


def test_chat_key_does_not_modify_the_body() -> None:
    request = body(temperature=0.0, stream=True, metadata={"a": "b"})
    before = copy.deepcopy(request)
    key(request)
    assert request == before
    assert type(request["temperature"]) is float


def test_huge_integral_sampling_value_still_gets_a_key() -> None:
    """1e20 is an integral float beyond 64 bits; it must not crash the key (a 500)."""
    big = key(body(temperature=1e20))
    assert big.startswith("hp:chat:")
    assert big != key(body(temperature=1e19))
    assert key(body(top_p=-1e300)).startswith("hp:chat:")


# ---------------------------------------------------------------- what changes it


@pytest.mark.parametrize(
    ("a", "b"),
    [
        pytest.param(body(), body(messages=[{"role": "user", "content": "hello!"}]), id="content"),
        pytest.param(body(), body(messages=[{"role": "system", "content": "hello"}]), id="role"),
        pytest.param(
            body(),
            body(
                messages=[
                    {"role": "user", "content": "hello"},
                    {"role": "assistant", "content": "hi"},
                ]
            ),
            id="extra-message",
        ),
        pytest.param(body(), body(tools=TOOLS), id="tools"),
        pytest.param(
            body(tools=TOOLS),
            body(tools=[{"type": "function", "function": {"name": "get_time"}}]),
            id="different-tools",
        ),
        pytest.param(body(temperature=0.5), body(temperature=0.7), id="temperature"),
        pytest.param(body(), body(temperature=0), id="temperature-absent-vs-0"),
        pytest.param(body(top_p=0.9), body(top_p=0.95), id="top_p"),
        pytest.param(body(seed=1), body(seed=2), id="seed"),
        pytest.param(body(), body(seed=1), id="seed-absent"),
        pytest.param(body(), body(response_format={"type": "json_object"}), id="response_format"),
        pytest.param(body(max_tokens=10), body(max_tokens=11), id="max_tokens"),
        pytest.param(body(), body(stop=["\n"]), id="stop"),
        pytest.param(body(), body(n=2), id="n"),
        pytest.param(body(), body(tool_choice="required"), id="tool_choice"),
        pytest.param(body(), body(logprobs=True), id="logprobs"),
        pytest.param(body(), body(reasoning_effort="high"), id="reasoning_effort"),
        pytest.param(body(), body(some_future_field=1), id="unknown-field"),
        pytest.param(body(x_a=1), body(x_a=2), id="unknown-field-value"),
        pytest.param(body(temperature=0), body(temperature=False), id="bool-is-not-0"),
        pytest.param(body(seed=1), body(seed="1"), id="type-of-value"),
    ],
)
def test_anything_that_may_change_the_answer_changes_the_key(
    a: dict[str, Any], b: dict[str, Any]
) -> None:
    assert key(a) != key(b)


@pytest.mark.parametrize(
    ("option", "first", "second"),
    [
        ("tenant", "acme", "globex"),
        ("tenant", "", "acme"),
        ("namespace", "", "run-1"),
        ("namespace", "run-1", "run-2"),
        ("deployment", "openai:gpt-4o", "anthropic:gpt-4o"),
    ],
)
def test_tenant_namespace_and_deployment_change_the_key(
    option: str, first: str, second: str
) -> None:
    assert key(body(), **{option: first}) != key(body(), **{option: second})


def test_parts_cannot_be_shifted_into_each_other() -> None:
    """Length-prefixed parts: tenant 'ab' + namespace 'c' is not 'a' + 'bc'."""
    assert key(body(), tenant="ab", namespace="c") != key(body(), tenant="a", namespace="bc")


def test_prefix_starts_the_key_and_changes_it() -> None:
    plain = key(body())
    prefixed = key(body(), prefix="tenant-x")
    assert plain.startswith("hp:chat:")
    assert prefixed.startswith("tenant-x:chat:")
    assert prefixed != plain
    assert prefixed.split(":")[-1] == plain.split(":")[-1]


def test_chat_key_is_a_prefix_and_32_hex_digits() -> None:
    prefix, kind, digest = key(body()).split(":")
    assert (prefix, kind, len(digest)) == ("hp", "chat", 32)
    int(digest, 16)


# ---------------------------------------------------------------- across processes

_CHILD = """
import json, sys
from hotpath.gateway._cache_key import chat_key, embedding_key
bodies = json.loads(sys.stdin.read())
out = [chat_key(b, deployment="d", tenant="t", namespace="n") for b in bodies]
out.append(embedding_key("hello", deployment="d", dimensions=8))
out.append(embedding_key([1, 2], deployment="d", dimensions=None))
print(json.dumps(out))
"""

CROSS_PROCESS_BODIES: list[dict[str, Any]] = [
    body(),
    body(temperature=0.3, seed=5, tools=TOOLS, metadata={"z": "1", "a": "2"}),
    body(messages=[{"role": "user", "content": "ünïcödé ✓"}], response_format={"b": 1, "a": 2}),
]


def _keys_here(bodies: list[dict[str, Any]]) -> list[str]:
    out = [chat_key(b, deployment="d", tenant="t", namespace="n") for b in bodies]
    out.append(embedding_key("hello", deployment="d", dimensions=8))
    out.append(embedding_key([1, 2], deployment="d", dimensions=None))
    return out


@pytest.mark.parametrize("hash_seed", ["0", "1", "12345"])
def test_keys_are_identical_in_another_process_with_another_hash_seed(hash_seed: str) -> None:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD],
        input=json.dumps(CROSS_PROCESS_BODIES),
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == _keys_here(CROSS_PROCESS_BODIES)


# ---------------------------------------------------------------- embeddings


def emb(item: str | list[int], **options: Any) -> str:
    options.setdefault("deployment", "openai:text-embedding-3-small")
    options.setdefault("dimensions", None)
    return embedding_key(item, **options)


def test_embedding_text_and_token_list_have_different_keys() -> None:
    assert emb("[1,2]") != emb([1, 2])
    assert emb("hello") != emb([15339])
    assert emb("") != emb([])


def test_embedding_dimensions_change_the_key() -> None:
    keys = {emb("hello", dimensions=d) for d in (None, 256, 512, 1536)}
    assert len(keys) == 4


@pytest.mark.parametrize(
    ("option", "first", "second"),
    [
        ("deployment", "openai:a", "openai:b"),
        ("tenant", "", "acme"),
        ("namespace", "", "ns"),
    ],
)
def test_embedding_tenant_namespace_and_deployment_change_the_key(
    option: str, first: str, second: str
) -> None:
    assert emb("hello", **{option: first}) != emb("hello", **{option: second})


def test_embedding_key_depends_on_the_item_and_starts_with_the_prefix() -> None:
    assert emb("hello") == emb("hello")
    assert emb("hello") != emb("hello ")
    assert emb([1, 2]) != emb([2, 1])
    assert emb("hello", prefix="px").startswith("px:emb:")
    assert emb("hello").startswith("hp:emb:")


# ---------------------------------------------------------------- is_sampled


@pytest.mark.parametrize(
    ("request_body", "sampled"),
    [
        pytest.param({}, True, id="absent"),
        pytest.param({"temperature": None}, True, id="None"),
        pytest.param({"temperature": 0}, False, id="0"),
        pytest.param({"temperature": 0.0}, False, id="0.0"),
        pytest.param({"temperature": 0.7}, True, id="0.7"),
        pytest.param({"temperature": 1}, True, id="1"),
        pytest.param({"temperature": 2.0}, True, id="2.0"),
        pytest.param({"temperature": 1e-9}, True, id="tiny"),
    ],
)
def test_is_sampled_when_temperature_is_absent_none_or_above_zero(
    request_body: dict[str, Any], sampled: bool
) -> None:
    assert is_sampled(request_body) is sampled
