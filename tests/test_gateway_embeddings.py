"""Embeddings through the gateway: cached item by item."""

from __future__ import annotations

import asyncio
import base64
from array import array
from collections.abc import Iterator

import httpx
import pytest

from gateway_support import gateway_config, running_gateway, sdk, unique
from hotpath._background import BackgroundServer
from hotpath.providers.mock import MockConfig, MockUpstream


@pytest.fixture(scope="module")
def mock() -> Iterator[MockUpstream]:
    with MockUpstream(MockConfig(embedding_dimensions=64)) as upstream:
        yield upstream


@pytest.fixture
def gateway(mock: MockUpstream) -> Iterator[BackgroundServer]:
    with running_gateway(gateway_config(mock.url)) as server:
        yield server


def test_a_batch_sends_only_the_inputs_not_cached(
    gateway: BackgroundServer, mock: MockUpstream
) -> None:
    client = sdk(gateway)
    texts = [unique(f"doc {i}") for i in range(100)]
    warm = client.embeddings.create(model="text-embedding-3-small", input=texts[:97])
    before = mock.stats().embedding_inputs
    raw = client.embeddings.with_raw_response.create(model="text-embedding-3-small", input=texts)
    assert mock.stats().embedding_inputs - before == 3
    assert raw.headers["x-hotpath-cache"] == "partial"
    assert raw.headers["x-hotpath-cache-hits"] == "97"
    answer = raw.parse()
    assert [d.index for d in answer.data] == list(range(100))
    assert [d.embedding for d in answer.data[:97]] == [d.embedding for d in warm.data]
    direct = sdk(mock.url).embeddings.create(model="text-embedding-3-small", input=texts[97:])
    assert [d.embedding for d in answer.data[97:]] == [d.embedding for d in direct.data]


def test_float_and_base64_formats_share_entries(
    gateway: BackgroundServer, mock: MockUpstream
) -> None:
    text = unique()
    with httpx.Client(base_url=gateway.base) as http:
        floats = http.post(
            "/v1/embeddings",
            json={"model": "e", "input": text, "encoding_format": "float"},
        )
        before = mock.stats().embedding_inputs
        packed = http.post(
            "/v1/embeddings",
            json={"model": "e", "input": text, "encoding_format": "base64"},
        )
    assert mock.stats().embedding_inputs == before
    assert packed.headers["x-hotpath-cache"] == "hit"
    vector = floats.json()["data"][0]["embedding"]
    assert len(vector) == 64
    decoded = array("f", base64.b64decode(packed.json()["data"][0]["embedding"])).tolist()
    assert decoded == vector


def test_token_array_inputs_and_usage(gateway: BackgroundServer) -> None:
    tokens = [[1, 2, 3], [4, 5, 6, 7]]
    with httpx.Client(base_url=gateway.base) as http:
        first = http.post("/v1/embeddings", json={"model": "e", "input": tokens}).json()
        second = http.post("/v1/embeddings", json={"model": "e", "input": tokens})
    assert first["usage"]["prompt_tokens"] == 7
    assert second.headers["x-hotpath-cache"] == "hit"
    assert second.json()["usage"]["prompt_tokens"] == 0  # nothing was sent upstream
    assert len(second.json()["data"]) == 2


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "e"}, "input"),
        ({"model": "e", "input": 5}, "input"),
        ({"model": "e", "input": ["ok", 3]}, "input[1]"),
        ({"model": "e", "input": "x", "encoding_format": "hex"}, "encoding_format"),
        ({"input": "x"}, "model"),
    ],
)
def test_bad_embedding_requests_are_400(
    gateway: BackgroundServer, body: dict[str, object], param: str
) -> None:
    with httpx.Client(base_url=gateway.base) as http:
        response = http.post("/v1/embeddings", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


async def test_concurrent_batches_share_inputs_in_flight(
    gateway: BackgroundServer, mock: MockUpstream
) -> None:
    texts = [unique(f"shared {i}") for i in range(5)]
    before = mock.stats().embedding_inputs
    async with httpx.AsyncClient(base_url=gateway.base, timeout=30) as http:
        responses = await asyncio.gather(
            *[
                http.post(
                    "/v1/embeddings",
                    json={"model": "e", "input": texts},
                    headers={"x-mock-ttft-ms": "200"},
                )
                for _ in range(4)
            ]
        )
    assert all(r.status_code == 200 for r in responses)
    assert mock.stats().embedding_inputs - before == 5
    vectors = [[d["embedding"] for d in r.json()["data"]] for r in responses]
    assert all(v == vectors[0] for v in vectors)
    assert [r.headers["x-hotpath-cache"] for r in responses].count("miss") == 1


def test_a_repeated_input_in_one_batch_is_sent_once(
    gateway: BackgroundServer, mock: MockUpstream
) -> None:
    text = unique()
    before = mock.stats().embedding_inputs
    with httpx.Client(base_url=gateway.base) as http:
        answer = http.post("/v1/embeddings", json={"model": "e", "input": [text, text]}).json()
    assert mock.stats().embedding_inputs - before == 1
    assert answer["data"][0]["embedding"] == answer["data"][1]["embedding"]
