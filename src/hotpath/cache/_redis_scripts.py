"""Lua scripts of the Redis tier.

Each declares the keys it touches, except TAG_REMOVE, which removes members it
reads from a set: only a single node allows that (a cluster will remove tagged
entries with per-slot pipelines instead; see ``RedisTier._remove_tag``).
"""

from __future__ import annotations

__all__ = ["EXTEND", "TAG_ADD", "TAG_REMOVE", "UNLOCK"]

# Add members to one tag set and keep the set alive as long as its longest-lived
# member (ARGV[1] = that member's TTL in ms, 0 = never expires). PTTL is -2 for a new
# set, -1 for a set that already holds a member without expiry. One key: cluster-safe.
TAG_ADD = """
local pttl = redis.call('PTTL', KEYS[1])
redis.call('SADD', KEYS[1], unpack(ARGV, 2))
local ms = tonumber(ARGV[1])
if ms == 0 then
  if pttl ~= -1 then redis.call('PERSIST', KEYS[1]) end
elseif pttl == -2 or (pttl >= 0 and pttl < ms) then
  redis.call('PEXPIRE', KEYS[1], ms)
end
return 1
"""

# Remove every value stored with one tag, and the tag set, atomically. It touches
# keys it does not declare, which only a single node allows (see _remove_tag).
TAG_REMOVE = """
local removed = 0
local batch = {}
for _, member in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  batch[#batch + 1] = ARGV[1] .. member
  if #batch == 500 then
    removed = removed + redis.call('UNLINK', unpack(batch))
    batch = {}
  end
end
if #batch > 0 then removed = removed + redis.call('UNLINK', unpack(batch)) end
redis.call('UNLINK', KEYS[1])
return removed
"""

# Release a lock only if we still hold it (one key: cluster-safe).
UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# Extend a lock's lease only if we still hold it (one key: cluster-safe).
EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
