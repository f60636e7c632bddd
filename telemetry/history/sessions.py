"""Per-call session state in Redis (a hash per call, with a TTL), degrading to memory.

Operations are awaited inside the call, so the Redis instrumentor's spans join the call's trace.
When Redis is unreachable the call goes on with the in-process copy (a call never fails because a
store is down: docs/call-history.md): every write also updates a local dict, reads fall back to it,
and one log line marks each change of mode.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Final

import redis.asyncio as aioredis
import redis.exceptions as redis_exc

__all__ = ["SessionStore"]

log = logging.getLogger("telemetry.history")

_ERRORS: Final = (redis_exc.RedisError, OSError, TimeoutError)
Value = str | int | float


class SessionStore:
    """``voxpulse:session:{call_id}`` hashes with a TTL (default 1 h, refreshed on write)."""

    def __init__(
        self,
        redis: aioredis.Redis | None = None,
        *,
        ttl_s: int = 3600,
        prefix: str = "voxpulse:session:",
        timeout_s: float = 0.5,
        max_local: int = 10_000,
    ) -> None:
        self._redis = redis
        self.ttl_s = ttl_s
        self.prefix = prefix
        self.timeout_s = timeout_s
        self.max_local = max_local
        self._local: dict[str, tuple[float, dict[str, str]]] = {}
        self._redis_ok = True
        self._dirty: set[str] = set()  # calls whose latest state is only local

    @classmethod
    def from_url(cls, url: str, **kwargs: object) -> SessionStore:
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        client = aioredis.Redis.from_url(
            url, socket_connect_timeout=0.5, socket_timeout=0.5, retry=Retry(NoBackoff(), 0),
            decode_responses=False,
        )
        return cls(client, **kwargs)  # type: ignore[arg-type]

    @property
    def redis_available(self) -> bool:
        return self._redis is not None and self._redis_ok

    def _key(self, call_id: str) -> str:
        return f"{self.prefix}{call_id}"

    def _set_ok(self, ok: bool, exc: BaseException | None = None) -> None:
        if ok != self._redis_ok:
            self._redis_ok = ok
            if ok:
                log.warning("sessions: Redis reachable again; session state back in Redis")
            else:
                log.warning("sessions: Redis unreachable (%s); session state kept in memory",
                            type(exc).__name__ if exc else "?")

    def _local_update(self, call_id: str, fields: Mapping[str, str]) -> dict[str, str]:
        now = time.monotonic()
        exp, data = self._local.get(call_id, (0.0, {}))
        if exp and exp < now:
            data = {}
        data = {**data, **fields}
        if call_id not in self._local and len(self._local) >= self.max_local:
            self._expire_local(now)
            if len(self._local) >= self.max_local:
                self._local.pop(next(iter(self._local)))
        self._local[call_id] = (now + self.ttl_s, data)
        return data

    def _expire_local(self, now: float) -> None:
        for k in [k for k, (exp, _) in self._local.items() if exp < now]:
            del self._local[k]

    async def update(self, call_id: str, fields: Mapping[str, Value]) -> None:
        """Set fields of the call's session (values stored as strings); never raises."""
        data = {k: str(v) for k, v in fields.items()}
        merged = self._local_update(call_id, data)
        if self._redis is None or not data:
            return
        if call_id in self._dirty:
            # Redis missed updates of this call (it may come back with an older copy): write the
            # whole local state, not the delta
            data = merged
        try:
            async with asyncio.timeout(self.timeout_s):
                async with self._redis.pipeline(transaction=True) as pipe:
                    pipe.hset(self._key(call_id), mapping=data)  # type: ignore[arg-type]
                    pipe.expire(self._key(call_id), self.ttl_s)
                    await pipe.execute()
        except _ERRORS as exc:
            self._dirty.add(call_id)
            self._set_ok(False, exc)
            return
        self._dirty.discard(call_id)
        self._set_ok(True)

    async def get(self, call_id: str) -> dict[str, str]:
        """The call's session (Redis first, the local copy when Redis is down or lost it)."""
        if self._redis is not None and call_id not in self._dirty:
            try:
                async with asyncio.timeout(self.timeout_s):
                    raw = await self._redis.hgetall(self._key(call_id))
            except _ERRORS as exc:
                self._set_ok(False, exc)
            else:
                self._set_ok(True)
                if raw:
                    return {_s(k): _s(v) for k, v in raw.items()}
        exp, data = self._local.get(call_id, (0.0, {}))
        return dict(data) if exp >= time.monotonic() else {}

    async def delete(self, call_id: str) -> None:
        self._local.pop(call_id, None)
        self._dirty.discard(call_id)
        if self._redis is None:
            return
        try:
            async with asyncio.timeout(self.timeout_s):
                await self._redis.delete(self._key(call_id))
        except _ERRORS as exc:
            self._set_ok(False, exc)

    async def ttl(self, call_id: str) -> int | None:
        """Seconds to expiry in Redis (None when unknown)."""
        if self._redis is None:
            return None
        try:
            async with asyncio.timeout(self.timeout_s):
                t = await self._redis.ttl(self._key(call_id))
        except _ERRORS as exc:
            self._set_ok(False, exc)
            return None
        return int(t) if t is not None and t >= 0 else None

    async def aclose(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()


def _s(v: object) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
