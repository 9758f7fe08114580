"""docs/metrics.md is the catalog of what ``/metrics`` exports: every ``hotpath_*``
family a gateway under load exports is listed with the same type and labels, and
every listed family is exported; labels stay bounded when clients send hundreds of
model names."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

from gateway_support import chat_body, gateway_config, gateway_of, running_gateway, unique
from hotpath.gateway import ConcurrencyConfig, TrafficConfig
from hotpath.gateway._metrics import SCRAPED, GatewayMetrics
from hotpath.providers.mock import MockUpstream
from hotpath.traffic._retry import RetryPolicy
from serve_support import free_port, hotpath_serve, wait_until_healthy

CATALOG = Path(__file__).parent.parent / "docs" / "metrics.md"
_ROW = re.compile(r"^\| `(hotpath_[a-z_]+)` \| (counter|gauge|histogram) \|([^|]*)\|")


@dataclass(frozen=True)
class Entry:
    type: str
    labels: frozenset[str]


def catalog() -> dict[str, Entry]:
    """Family name (as the text parser names it: a counter without ``_total``) ->
    its documented type and label names."""
    out: dict[str, Entry] = {}
    for line in CATALOG.read_text().splitlines():
        match = _ROW.match(line)
        if match is None:
            continue
        name, kind, labels = match.groups()
        if kind == "counter":
            assert name.endswith("_total"), f"counter {name} must end in _total"
            name = name.removesuffix("_total")
        assert name not in out, f"{name} is listed twice"
        # Label names are in backticks; their values follow in parentheses.
        names = re.findall(r"`([a-z_]+)`", re.sub(r"\([^)]*\)", "", labels))
        out[name] = Entry(kind, frozenset(names))
    return out


def exported(text: str) -> dict[str, tuple[str, frozenset[str] | None]]:
    """Family -> (type, label names of its samples, ``None`` if it has none)."""
    out: dict[str, tuple[str, frozenset[str] | None]] = {}
    for family in text_string_to_metric_families(text):
        if not family.name.startswith("hotpath_") or family.name.endswith("_created"):
            continue
        names = {k for s in family.samples for k in s.labels if k != "le"}
        out[family.name] = (family.type, frozenset(names) if family.samples else None)
    return out


def declared(metrics: GatewayMetrics) -> dict[str, tuple[str, frozenset[str]]]:
    """Every family the gateway's metrics object declares, with its label names."""
    out: dict[str, tuple[str, frozenset[str]]] = {}
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            out[value._name] = (str(value._type), frozenset(value._labelnames))
    for family in SCRAPED:
        out[family.name] = (family.kind, frozenset(family.labels))
    return out


@pytest.fixture(scope="module")
def mock() -> Iterator[MockUpstream]:
    with MockUpstream() as upstream:
        yield upstream


def _load(base: str) -> None:
    """A little of everything: misses, hits, streams, embeddings, a coalesced
    pair, an upstream error, a bad request, an unknown route."""
    with httpx.Client(base_url=base, timeout=30) as http:
        for stream in (False, True):
            body = chat_body(unique(), stream=stream)
            for _ in range(2):
                assert http.post("/v1/chat/completions", json=body).status_code == 200
        bypass = {"cache-control": "no-store"}
        assert http.post("/v1/chat/completions", json=chat_body(), headers=bypass).is_success
        embed = {"model": "text-embedding-3-small", "input": [unique(), unique()]}
        for _ in range(2):
            assert http.post("/v1/embeddings", json=embed).status_code == 200
        failed = http.post(
            "/v1/chat/completions", json=chat_body(unique()), headers={"x-mock-fault": "500"}
        )
        assert failed.status_code == 500
        assert http.post("/v1/chat/completions", content=b"{").status_code == 400
        assert http.get("/nowhere").status_code == 404
        slow = chat_body(unique())

        def post(_: int) -> int:
            headers = {"x-mock-ttft-ms": "300"}
            return http.post("/v1/chat/completions", json=slow, headers=headers).status_code

        with ThreadPoolExecutor(2) as pool:
            assert list(pool.map(post, range(2))) == [200, 200]


def test_catalog_lists_every_exported_family_with_its_type_and_labels(
    mock: MockUpstream, tmp_path: Path
) -> None:
    documented = catalog()
    config = gateway_config(
        mock.url,
        tiers=("memory://", f"sqlite:///{tmp_path / 'c.db'}"),
        traffic=TrafficConfig(
            retry=RetryPolicy(attempts=1), concurrency=ConcurrencyConfig(algorithm="fixed")
        ),
    )
    with running_gateway(config) as server:
        _load(server.base)
        text = httpx.get(f"{server.base}/metrics").text
        metrics = gateway_of(server).state.metrics
    scraped = exported(text)
    assert set(scraped) == set(documented), (
        f"exported, not documented: {sorted(set(scraped) - set(documented))}; "
        f"documented, not exported: {sorted(set(documented) - set(scraped))}"
    )
    for name, (kind, labels) in scraped.items():
        entry = documented[name]
        assert kind == entry.type, f"{name}: exported as {kind}, documented as {entry.type}"
        if labels is not None:
            assert labels == entry.labels, f"{name}: labels {sorted(labels)}"
    # Families with no sample yet: their declared labels.
    for name, (kind, labels) in declared(metrics).items():
        assert documented[name] == Entry(kind, labels), name
    # The load reached the families this issue added.
    with_samples = {name for name, (_, labels) in scraped.items() if labels is not None}
    assert {
        "hotpath_model_requests",
        "hotpath_gateway_overhead_seconds",
        "hotpath_cache_tier_entries",
        "hotpath_cache_tier_bytes",
        "hotpath_cache_tier_evictions",
        "hotpath_coalesced_requests",
        "hotpath_circuit_breaker_state",
        "hotpath_concurrency_limit",
        "hotpath_concurrency_in_flight",
        "hotpath_concurrency_queued_requests",
    } <= with_samples


def _series(text: str, name: str) -> list[dict[str, str]]:
    return [
        s.labels
        for family in text_string_to_metric_families(text)
        if family.name == name
        for s in family.samples
        if not s.name.endswith(("_created", "_bucket"))
    ]


def test_metrics_count_requests_by_model_cache_outcome_and_status(
    mock: MockUpstream, tmp_path: Path
) -> None:
    config = gateway_config(mock.url, tiers=("memory://", f"sqlite:///{tmp_path / 'c.db'}"))
    with running_gateway(config) as server, httpx.Client(base_url=server.base) as http:
        body = chat_body(unique())
        for _ in range(3):
            http.post("/v1/chat/completions", json=body)
        http.post("/v1/chat/completions", json=chat_body(unique()), headers={"x-mock-fault": "429"})
        text = http.get("/metrics").text
    counts = {
        (s["cache"], s["status"]): float(v)
        for s, v in (
            (sample.labels, sample.value)
            for family in text_string_to_metric_families(text)
            if family.name == "hotpath_model_requests"
            for sample in family.samples
            if sample.name.endswith("_total")
        )
        if s["model"] == "gpt-4o-mini"
    }
    assert counts == {("miss", "200"): 1.0, ("hit", "200"): 2.0, ("miss", "429"): 1.0}
    entries = {s["tier"] for s in _series(text, "hotpath_cache_tier_entries")}
    assert entries == {"memory", "sqlite"}
    overhead = _series(text, "hotpath_gateway_overhead_seconds")
    assert {"route": "chat"} in overhead


def test_labels_stay_bounded_when_clients_send_500_model_names(mock: MockUpstream) -> None:
    config = gateway_config(mock.url)
    models = [f"model-{i:03d}-{unique('m')[2:10]}" for i in range(500)]
    with running_gateway(config) as server:
        with httpx.Client(base_url=server.base, timeout=30) as http:

            def post(model: str) -> int:
                body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
                return http.post("/v1/chat/completions", json=body).status_code

            with ThreadPoolExecutor(4) as pool:
                assert set(pool.map(post, models)) == {200}
            text = http.get("/metrics").text
        metrics = gateway_of(server).state.metrics
    bounded = {"model", "deployment", "source", "target", "budget"}
    seen_other = False
    for family in text_string_to_metric_families(text):
        if not family.name.startswith("hotpath_"):
            continue
        for label in bounded:
            values = {s.labels[label] for s in family.samples if label in s.labels}
            assert len(values) <= 201, f"{family.name}: {len(values)} values of {label}"
            seen_other = seen_other or "other" in values
        series = {tuple(sorted(s.labels.items())) for s in family.samples}
        assert len(series) <= 2000, f"{family.name}: {len(series)} series"
    assert seen_other
    # The memoized children are bounded too (one per label set).
    assert len(metrics._children) < 2000


def _value(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


@pytest.mark.slow
def test_with_two_workers_a_scrape_shows_every_worker(mock: MockUpstream, tmp_path: Path) -> None:
    """``hotpath serve --workers 2``: counters are summed over the workers, the
    scraped families of every worker are published, and the catalog still holds."""
    port = free_port()
    log = tmp_path / "stderr.log"
    args = ["--upstream", mock.url, "--port", str(port), "--workers", "2"]
    args += ["--cache-tiers", "memory://"]
    base = f"http://127.0.0.1:{port}"
    with hotpath_serve(args, tmp_path, log) as proc, httpx.Client(base_url=base) as http:
        wait_until_healthy(http, proc, log, time.monotonic() + 60)
        for _ in range(20):
            # A connection each, so that both workers take some.
            response = httpx.post(f"{base}/v1/chat/completions", json=chat_body(unique()))
            assert response.status_code == 200
        deadline = time.monotonic() + 15
        while True:
            text = http.get("/metrics").text
            sets = _value(
                text, "hotpath_cache_tier_operations_total", tier="memory", operation="set"
            )
            if sets >= 20 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    assert _value(text, "hotpath_model_requests_total", cache="miss", status="200") == 20
    assert sets == 20  # every worker's memory tier, published into the shared files
    assert _value(text, "hotpath_cache_tier_entries", tier="memory") >= 10  # the fullest one's
    documented = catalog()
    for name, (kind, labels) in exported(text).items():
        assert documented[name].type == kind, name
        if labels is not None:
            assert labels == documented[name].labels, name
