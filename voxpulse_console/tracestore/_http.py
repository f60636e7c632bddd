"""What both implementations share: the HTTP client's life cycle, error translation, id hygiene."""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self

import httpx

from ._model import TraceStoreError

__all__ = ["HttpTraceStore", "trace_id_hex"]

_HEX = re.compile(r"[0-9a-fA-F]{1,32}")


def trace_id_hex(trace_id: str) -> str:
    """A trace id as 32 lower-case hex digits (stores may drop leading zeros); ValueError if not hex."""
    value = trace_id.strip()
    if not _HEX.fullmatch(value):
        raise ValueError(f"not a trace id (1 to 32 hex digits): {trace_id!r}")
    return value.lower().rjust(32, "0")


class HttpTraceStore:
    """Base of the HTTP-API stores: one ``httpx.AsyncClient`` (given, or owned and closed here)."""

    kind: str = ""

    def __init__(self, url: str, *, timeout_s: float = 10.0, client: httpx.AsyncClient | None = None) -> None:
        self.url = url.rstrip("/")
        self._owns_client = client is None
        self._client = client if client is not None else httpx.AsyncClient(timeout=timeout_s)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    async def _get(self, path: str, params: Mapping[str, Any] | None = None, *, allow_404: bool = False) -> Any:
        """GET ``path`` and return its JSON; None for a 404 when ``allow_404``."""
        try:
            response = await self._client.get(f"{self.url}{path}", params=params)
        except httpx.HTTPError as exc:
            raise TraceStoreError(f"{self.kind} at {self.url} did not answer {path}: {exc!r}") from exc
        if allow_404 and response.status_code == 404:
            return None
        if response.status_code != 200:
            raise TraceStoreError(
                f"{self.kind} at {self.url} answered {response.status_code} to {path}: {response.text[:300]}"
            )
        try:
            return response.json()
        except ValueError as exc:
            raise TraceStoreError(f"{self.kind} at {self.url} answered {path} with no JSON") from exc

    async def _ok(self, path: str) -> bool:
        try:
            response = await self._client.get(f"{self.url}{path}", timeout=2.0)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
