"""Budget counters in Redis, shared by every gateway replica.

Each operation is one Lua script, so a reservation's check and its increments
are one atomic step however many replicas race for the last dollar. A counter
is a hash (``s`` spent, ``r`` reserved, nano-dollars) that expires a week after
its period ends; holds under way are a hash (hold id -> amount and counter keys)
and a sorted set of their deadlines, which :meth:`RedisBudgetStore.sweep` settles
at their reserved amount when a process died before booking them.

The scripts touch the counters a hold names from its stored record, so they
need a single Redis node (not Redis Cluster).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from typing import TYPE_CHECKING, Any

from hotpath._errors import ConfigError, short_repr
from hotpath.cost._budget_store import Counter, Outcome

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisBudgetStore"]

_SEP = "\x1f"

# KEYS: n counters, then the pending hash and the deadline set.
# ARGV: hold, estimate, downgrade (-1: none), deadline, then per counter: limit,
# alert_at, downgrade_at, expire_at. decide() of _budget_store, step for step.
RESERVE = """
local n = #KEYS - 2
local est = tonumber(ARGV[2])
local down = tonumber(ARGV[3])
local spent, res = {}, {}
for i = 1, n do
  local v = redis.call('HMGET', KEYS[i], 's', 'r')
  spent[i] = tonumber(v[1]) or 0
  res[i] = tonumber(v[2]) or 0
end
local action = 0
if down >= 0 then
  for i = 1, n do
    local j = 4 * i
    if spent[i] + res[i] + est >= tonumber(ARGV[j + 3]) * tonumber(ARGV[j + 1]) then
      action = 1
      break
    end
  end
end
local amount = est
if action == 1 then amount = down end
local out = {}
for i = 1, n do
  out[#out + 1] = spent[i]
  out[#out + 1] = res[i]
end
for i = 1, n do
  local j = 4 * i
  local limit = tonumber(ARGV[j + 1])
  local used = spent[i] + res[i]
  if used >= limit or used + amount > limit then
    local first = redis.call('SET', KEYS[i] .. ':x', '1', 'NX', 'EXAT', ARGV[j + 4])
    local fresh = 0
    if first then fresh = 1 end
    return {2, i - 1, amount, fresh, out}
  end
end
local alerts = {}
local names = {string.format('%d', amount)}
for i = 1, n do
  local j = 4 * i
  redis.call('HINCRBY', KEYS[i], 'r', string.format('%d', amount))
  redis.call('EXPIREAT', KEYS[i], ARGV[j + 4])
  names[#names + 1] = KEYS[i]
  alerts[i] = 0
  if spent[i] + res[i] + amount >= tonumber(ARGV[j + 2]) * tonumber(ARGV[j + 1]) then
    if redis.call('SET', KEYS[i] .. ':a', '1', 'NX', 'EXAT', ARGV[j + 4]) then alerts[i] = 1 end
  end
end
redis.call('HSET', KEYS[n + 1], ARGV[1], table.concat(names, '\\31'))
redis.call('ZADD', KEYS[n + 2], ARGV[4], ARGV[1])
return {action, -1, amount, 0, out, alerts}
"""

# KEYS: the pending hash, the deadline set. ARGV: hold, actual (-1: the reserved
# amount). 1 if this call booked the hold, 0 if it was already booked.
SETTLE = """
local record = redis.call('HGET', KEYS[1], ARGV[1])
if not record then return 0 end
local parts = {}
for part in string.gmatch(record, '[^\\31]+') do parts[#parts + 1] = part end
local amount = tonumber(parts[1])
local actual = tonumber(ARGV[2])
if actual < 0 then actual = amount end
for k = 2, #parts do
  redis.call('HINCRBY', parts[k], 'r', string.format('%d', -amount))
  if actual > 0 then redis.call('HINCRBY', parts[k], 's', string.format('%d', actual)) end
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""

# KEYS: the pending hash, the deadline set. ARGV: now, batch size. Settles the
# holds past their deadline at their reserved amount; returns how many.
SWEEP = """
local late = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, hold in ipairs(late) do
  local record = redis.call('HGET', KEYS[1], hold)
  if record then
    local parts = {}
    for part in string.gmatch(record, '[^\\31]+') do parts[#parts + 1] = part end
    local amount = tonumber(parts[1])
    for k = 2, #parts do
      redis.call('HINCRBY', parts[k], 'r', string.format('%d', -amount))
      if amount > 0 then redis.call('HINCRBY', parts[k], 's', string.format('%d', amount)) end
    end
    redis.call('HDEL', KEYS[1], hold)
  end
  redis.call('ZREM', KEYS[2], hold)
end
return #late
"""

_SCHEMES = ("redis://", "rediss://", "unix://")


class RedisBudgetStore:
    """Budget counters under ``prefix`` in the Redis at ``url``. Every call is
    bounded by ``timeout`` seconds (connecting included) and raises on a fault:
    :class:`~hotpath.cost.Budgets` decides what a fault means."""

    def __init__(self, url: str, *, prefix: str = "hp:budget:", timeout: float = 0.5) -> None:
        if not isinstance(url, str) or not url.startswith(_SCHEMES):
            raise ConfigError(
                f"budget store url must start with redis://, rediss:// or unix://, "
                f"got {short_repr(url)}"
            )
        self._url = url
        self._prefix = prefix
        self._timeout = timeout
        self._pending = prefix + "holds"
        self._deadlines = prefix + "deadlines"
        self._clients: dict[asyncio.AbstractEventLoop, Redis] = {}
        self._shas = {
            s: hashlib.sha1(s.encode(), usedforsecurity=False).hexdigest()
            for s in (RESERVE, SETTLE, SWEEP)
        }

    @property
    def prefix(self) -> str:
        return self._prefix

    def _client(self) -> Redis:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            from redis.asyncio import Redis

            client = Redis.from_url(
                self._url,
                socket_timeout=self._timeout,
                socket_connect_timeout=self._timeout,
            )
            self._clients[loop] = client
        return client

    async def _run(self, script: str, keys: list[str], args: list[Any]) -> Any:
        from redis.exceptions import NoScriptError

        client = self._client()
        sha = self._shas[script]
        async with asyncio.timeout(self._timeout * 2):
            try:
                return await client.evalsha(sha, len(keys), *keys, *args)
            except NoScriptError:
                await client.script_load(script)
                return await client.evalsha(sha, len(keys), *keys, *args)

    async def reserve(
        self, counters: list[Counter], *, hold: str, estimate: int, downgrade: int, deadline: float
    ) -> Outcome:
        keys = [c.key for c in counters]
        if any(_SEP in k for k in keys):
            raise ConfigError(f"a budget counter key holds the separator \\x1f: {keys!r}")
        args: list[Any] = [hold, estimate, downgrade, f"{deadline:.3f}"]
        for c in counters:
            args += (c.limit, repr(c.alert_at), repr(c.downgrade_at), c.expire_at)
        out = await self._run(RESERVE, [*keys, self._pending, self._deadlines], args)
        action, index, amount, fresh, pairs = (
            int(out[0]),
            int(out[1]),
            int(out[2]),
            int(out[3]),
            out[4],
        )
        spent = tuple(int(pairs[2 * i]) for i in range(len(keys)))
        reserved = tuple(int(pairs[2 * i + 1]) for i in range(len(keys)))
        alerts = tuple(bool(int(a)) for a in out[5]) if len(out) > 5 else ()
        return Outcome(action, index, spent, reserved, alerts, bool(fresh), amount)

    async def settle(self, hold: str, actual: int) -> bool:
        out = await self._run(SETTLE, [self._pending, self._deadlines], [hold, actual])
        return bool(int(out))

    async def sweep(self, now: float) -> int:
        out = await self._run(SWEEP, [self._pending, self._deadlines], [f"{now:.3f}", 100])
        return int(out)

    async def read(self, keys: list[str]) -> list[tuple[int, int]]:
        client = self._client()
        async with asyncio.timeout(self._timeout * 2), client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hmget(key, "s", "r")
            rows = await pipe.execute()
        return [(int(s or 0), int(r or 0)) for s, r in rows]

    async def aclose(self) -> None:
        clients, self._clients = self._clients, {}
        current = asyncio.get_running_loop()
        for loop, client in clients.items():
            if loop is current:
                with contextlib.suppress(Exception):
                    await client.aclose()
