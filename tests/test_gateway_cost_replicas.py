"""Cost across ``hotpath serve`` replicas sharing one Redis: a global budget that
no burst over three processes overspends by more than one request's
reservation, gateway keys revoked everywhere within a second, a key's own rpm
and budget held across replicas, and one spend report whichever replica
answers it."""

from __future__ import annotations

import contextlib
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from hotpath.cost import PriceTable, Usage
from hotpath.providers.mock import MockConfig, MockUpstream
from serve_support import free_port, hotpath_serve, wait_until_healthy

pytestmark = pytest.mark.redis

ADMIN_ENV = "HPTEST_REPLICAS_ADMIN_KEY"  # hotpath_serve drops HOTPATH_* variables
ADMIN_KEY = "replicas-admin-secret"
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
MODEL = "gpt-4o-mini"
COMPLETION = 8  # what the mock answers when max_tokens does not cut it shorter
_PRICE = PriceTable.default().lookup(MODEL)
assert _PRICE is not None
PRICE = _PRICE


# -- set-up ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mock() -> Iterator[MockUpstream]:
    with MockUpstream(MockConfig(completion_tokens=COMPLETION)) as upstream:
        yield upstream


@pytest.fixture
def namespace(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A cache namespace of this test, its Redis keys deleted afterwards; the
    admin key in the replicas' environment."""
    monkeypatch.setenv(ADMIN_ENV, ADMIN_KEY)
    name = f"hpcr{uuid.uuid4().hex[:10]}"
    yield name
    client = redis.Redis.from_url(redis_url)
    try:
        # The cache tier's entries are under its own prefix: hp:v:{namespace}:...
        for pattern in (f"{name}:*", f"hp:?:{name}:*"):
            keys = list(client.scan_iter(match=pattern, count=1000))
            for i in range(0, len(keys), 500):
                client.delete(*keys[i : i + 500])
    finally:
        client.close()


def write_config(
    tmp_path: Path, upstream: str, redis_url: str, namespace: str, extra: str = ""
) -> Path:
    """A config for every replica: the mock upstream, a Redis cache tier (whose
    Redis also holds budgets, usage, keys and rate limits) and the admin API."""
    path = tmp_path / "hotpath.toml"
    path.write_text(
        f"""
[upstreams.mock]
base_url = "{upstream}"

[cache]
tiers = ["memory://", "{redis_url}"]
namespace = "{namespace}"

[cost]
flush_interval = 0.1

[admin]
key_env = "{ADMIN_ENV}"
{extra}
""",
        encoding="utf-8",
    )
    return path


@contextlib.contextmanager
def replicas(tmp_path: Path, config: Path, count: int) -> Iterator[list[httpx.Client]]:
    """``count`` ``hotpath serve`` processes on ``config``, started together; a
    client of each."""
    with contextlib.ExitStack() as stack:
        started = []
        for i in range(count):
            port = free_port()
            log = tmp_path / f"replica{i}.log"
            args = ["--config", str(config), "--port", str(port)]
            proc = stack.enter_context(hotpath_serve(args, tmp_path, log))
            client = stack.enter_context(
                httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10.0)
            )
            started.append((client, proc, log))
        deadline = time.monotonic() + 60
        for client, proc, log in started:
            wait_until_healthy(client, proc, log, deadline)
        yield [client for client, _, _ in started]


class Prompts:
    """Unique prompts of one token count: fixed words and zero-padded numbers
    (o200k cuts digits in threes), so every request reserves the same amount."""

    def __init__(self) -> None:
        self._run = random.randrange(1_000_000)
        self._next = 0
        self._lock = threading.Lock()

    def body(self, max_tokens: int) -> dict[str, Any]:
        with self._lock:
            self._next += 1
            number = self._next
        text = f"budget check {self._run:06d} {number:06d}"
        return {
            "model": MODEL,
            "messages": [{"role": "user", "content": text}],
            "max_tokens": max_tokens,
        }


def chat(client: httpx.Client, body: dict[str, Any], key: str | None = None) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key is not None else {}
    return client.post("/v1/chat/completions", json=body, headers=headers)


def usage_of(response: httpx.Response) -> Usage:
    usage = response.json()["usage"]
    return Usage(usage["prompt_tokens"], usage["completion_tokens"])


def reservation(prompt_tokens: int, max_tokens: int) -> float:
    """What the gateway reserves for a call: the prompt and the completion ceiling."""
    return (prompt_tokens * PRICE.input + max_tokens * PRICE.output) / 1e6


def budgets(client: httpx.Client, **query: str) -> list[dict[str, Any]]:
    response = client.get("/admin/budgets", params=query, headers=ADMIN)
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


def create_key(client: httpx.Client, **fields: Any) -> str:
    response = client.post("/admin/keys", json=fields, headers=ADMIN)
    assert response.status_code == 201, response.text
    secret: str = response.json()["key"]
    return secret


def poll(check: Callable[[], bool], within: float, every: float = 0.02) -> float | None:
    """Seconds until ``check()`` held (checked every ``every`` s), or ``None``
    if it did not within ``within`` s."""
    start = time.monotonic()
    while True:
        if check():
            return time.monotonic() - start
        if time.monotonic() - start > within:
            return None
        time.sleep(every)


def knows_keys(client: httpx.Client, names: set[str]) -> Callable[[], bool]:
    """Whether the replica's view of the stored keys has ``names`` yet."""

    def check() -> bool:
        listed = client.get("/admin/keys", headers=ADMIN).json()["data"]
        return names <= {k["name"] for k in listed}

    return check


def answers(client: httpx.Client, prompts: Prompts, key: str, status: int) -> Callable[[], bool]:
    """Whether a request with ``key`` gets ``status`` from the replica now."""

    def check() -> bool:
        return chat(client, prompts.body(4), key).status_code == status

    return check


# -- a global budget over three replicas -------------------------------------------------

LIMIT_USD = 0.0015
MAX_TOKENS = 64  # the reservation's ceiling; the mock answers 8, so a call costs less


@dataclass
class Outcomes:
    answered: list[httpx.Response]
    refused: list[httpx.Response]


def hammer(clients: list[httpx.Client], prompts: Prompts, *, refusals: int) -> Outcomes:
    """Four threads per replica send requests until ``refusals`` were refused."""
    out = Outcomes([], [])
    lock = threading.Lock()
    stop = threading.Event()

    def run(client: httpx.Client) -> None:
        while not stop.is_set():
            response = chat(client, prompts.body(MAX_TOKENS))
            with lock:
                (out.answered if response.status_code == 200 else out.refused).append(response)
                if len(out.refused) >= refusals:
                    stop.set()

    threads = [threading.Thread(target=run, args=(c,)) for c in clients for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return out


@pytest.mark.slow
def test_three_replicas_do_not_overspend_a_shared_budget(
    tmp_path: Path, redis_url: str, namespace: str, mock: MockUpstream
) -> None:
    """Nobody overspends by more than one request's reservation, and the budget
    is usable to within one reservation of its limit."""
    extra = f"""
[[cost.budgets]]
scope = "global"
limit_usd = {LIMIT_USD}
period = "day"
"""
    config = write_config(tmp_path, mock.url, redis_url, namespace, extra)
    prompts = Prompts()
    with replicas(tmp_path, config, 3) as clients:
        out = hammer(clients, prompts, refusals=30)
        # Every answer is in; their settlements go out right after. Then one request
        # at a time until one is refused: the budget is then as used as it can be.
        assert poll(lambda: budgets(clients[0])[0]["reserved_usd"] == 0, within=5.0) is not None
        # (Under load the burst can stop far below the limit: each answer's settle
        # trails it, so reservations pile up. The sequential phase is not bounded by it.)
        for i in range(2000):
            response = chat(clients[i % 3], prompts.body(MAX_TOKENS))
            if response.status_code != 200:
                out.refused.append(response)
                break
            out.answered.append(response)
        statuses = [budgets(client) for client in clients]

    usages = [usage_of(r) for r in out.answered]
    [prompt_tokens] = {u.prompt_tokens for u in usages}  # one reservation for all
    assert {u.completion_tokens for u in usages} == {COMPLETION}
    one_reservation = reservation(prompt_tokens, MAX_TOKENS)
    per_request = PRICE.cost(Usage(prompt_tokens, COMPLETION))
    priced = sum(PRICE.cost(u) for u in usages)

    # Every replica reads the same counter, with nothing left reserved.
    assert statuses[1] == statuses[0]
    assert statuses[2] == statuses[0]
    [status] = statuses[0]
    assert status["budget"] == "global:*:day"
    assert status["limit_usd"] == LIMIT_USD
    assert status["reserved_usd"] == 0
    spent = status["spent_usd"]
    # What the budget booked is what the answers' usage costs (to the nano-dollar).
    assert spent == pytest.approx(priced, abs=1e-9 * len(usages))
    # No overspending by more than one reservation, by either account.
    assert spent <= LIMIT_USD + one_reservation
    assert priced <= LIMIT_USD + one_reservation
    # The budget was usable: not refused early by the reservations of the burst.
    assert len(out.answered) >= (LIMIT_USD - one_reservation) / per_request
    assert spent >= LIMIT_USD - one_reservation
    # Every refusal is the budget's, named.
    assert len(out.refused) >= 30
    for response in out.refused:
        assert response.status_code == 429, response.text
        error = response.json()["error"]
        assert error["code"] == "budget_exceeded"
        assert error["type"] == "insufficient_quota"
        assert "budget global:*:day" in error["message"]
        assert response.headers["x-hotpath-budget"] == "global:*:day"


# -- gateway keys across replicas --------------------------------------------------------


def test_a_key_revoked_on_one_replica_stops_working_on_all_within_a_second(
    tmp_path: Path, redis_url: str, namespace: str, mock: MockUpstream
) -> None:
    config = write_config(tmp_path, mock.url, redis_url, namespace)
    prompts = Prompts()
    with replicas(tmp_path, config, 3) as clients:
        first, others = clients[0], clients[1:]
        # A first key, so that every replica asks for one (with none stored, a
        # gateway lets every request in, whatever key it sends).
        create_key(first, name=f"other-{uuid.uuid4().hex[:8]}")
        for client in others:
            assert poll(answers(client, prompts, "hp-bogus", 401), within=2.0) is not None

        name = f"rev-{uuid.uuid4().hex[:8]}"
        made = time.monotonic()
        secret = create_key(first, name=name)
        assert chat(first, prompts.body(4), secret).status_code == 200
        for client in others:
            assert poll(answers(client, prompts, secret, 200), within=2.0) is not None
        adopted = time.monotonic() - made

        revoking = time.monotonic()
        revoked = first.delete(f"/admin/keys/{name}", headers=ADMIN)
        assert revoked.status_code == 200, revoked.text
        assert chat(first, prompts.body(4), secret).status_code == 401
        latencies = []
        for client in others:
            assert poll(answers(client, prompts, secret, 401), within=2.0) is not None
            latencies.append(time.monotonic() - revoking)

    assert adopted < 1.0
    assert max(latencies) < 1.0


@pytest.mark.slow
def test_a_keys_own_rpm_and_budget_hold_across_replicas(
    tmp_path: Path, redis_url: str, namespace: str, mock: MockUpstream
) -> None:
    config = write_config(tmp_path, mock.url, redis_url, namespace)
    prompts = Prompts()
    with replicas(tmp_path, config, 2) as (a, b):
        # The prompt's tokens, from an answer while no key exists (anyone may call).
        prompt_tokens = usage_of(chat(a, prompts.body(COMPLETION))).prompt_tokens
        per_call = reservation(prompt_tokens, COMPLETION)  # = its cost: the mock answers 8
        limited, capped = f"rpm-{uuid.uuid4().hex[:8]}", f"usd-{uuid.uuid4().hex[:8]}"
        limited_key = create_key(a, name=limited, rpm=3)
        capped_key = create_key(a, name=capped, budget_usd=3.5 * per_call)
        assert poll(knows_keys(b, {limited, capped}), within=2.0) is not None

        by_rpm = [chat(c, prompts.body(COMPLETION), limited_key) for c in (a, b, a, b, a)]
        by_usd = [chat(c, prompts.body(COMPLETION), capped_key) for c in (b, a, b, a, b)]
        key_budget = [budgets(c, key=capped) for c in (a, b)]

    assert [r.status_code for r in by_rpm] == [200, 200, 200, 429, 429]
    for response in by_rpm[3:]:
        assert response.json()["error"]["code"] == "rate_limit_exceeded"
    assert [r.status_code for r in by_usd] == [200, 200, 200, 429, 429]
    for response in by_usd[3:]:
        error = response.json()["error"]
        assert error["code"] == "budget_exceeded"
        assert f"budget key:{capped}:month" in error["message"]
        assert response.headers["x-hotpath-budget"] == f"key:{capped}:month"
    assert key_budget[0] == key_budget[1]
    [status] = key_budget[0]
    assert status["budget"] == f"key:{capped}:month"
    assert status["spent_usd"] == pytest.approx(3 * per_call, abs=1e-9 * 3)


def test_the_spend_report_holds_every_replicas_requests(
    tmp_path: Path, redis_url: str, namespace: str, mock: MockUpstream
) -> None:
    config = write_config(tmp_path, mock.url, redis_url, namespace)
    prompts = Prompts()
    with replicas(tmp_path, config, 2) as (a, b):
        names = [f"spend-{i}-{uuid.uuid4().hex[:8]}" for i in range(2)]
        secrets = [create_key(a, name=name) for name in names]
        assert poll(knows_keys(b, set(names)), within=2.0) is not None
        sent = {names[0]: (a, a, a, b, b), names[1]: (a, b, b)}
        replies: dict[str, list[httpx.Response]] = {}
        for name, secret in zip(names, secrets, strict=True):
            replies[name] = [chat(c, prompts.body(COMPLETION), secret) for c in sent[name]]

        expected = {name: len(sent[name]) for name in names}
        reports: list[list[dict[str, Any]]] = []

        def booked() -> bool:
            reports.clear()
            for client in (a, b):
                response = client.get("/admin/spend", params={"by": "key"}, headers=ADMIN)
                assert response.status_code == 200, response.text
                reports.append(response.json()["data"])
            return all(
                {row["group"]["key"]: row["requests"] for row in report} == expected
                for report in reports
            )

        assert poll(booked, within=5.0, every=0.05) is not None, reports

    assert reports[0] == reports[1]
    for row in reports[0]:
        usages = [usage_of(r) for r in replies[row["group"]["key"]]]
        assert row["prompt_tokens"] == sum(u.prompt_tokens for u in usages)
        assert row["completion_tokens"] == sum(u.completion_tokens for u in usages)
        assert row["cost_usd"] == pytest.approx(sum(PRICE.cost(u) for u in usages))
