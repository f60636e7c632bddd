"""Client for the tyre shop's store API (httpx, timeouts, retries with backoff).

Base URL from ``STORE_API_URL`` (default ``http://127.0.0.1:8088``). Every operation is a traced
span (``store_api.*``); every 5xx / timeout is counted by ``voice.store_api.errors`` (label:
HTTP status; 0 when there was no response: timeout or connection failure). 5xx, timeouts and connection
errors are retried with exponential backoff; 4xx are not.
"""

from __future__ import annotations

import asyncio
import importlib
import random
import ssl
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx

import telemetry

from . import settings
from .metrics import store_api_error

__all__ = ["StoreClient", "StoreError", "prepare"]

DEFAULT_URL = "http://127.0.0.1:8088"
_SSL: ssl.SSLContext | None = None


def _ssl_context() -> ssl.SSLContext:
    """One TLS context per process: building one costs ~25 ms of CPU (per client otherwise)."""
    global _SSL
    if _SSL is None:
        _SSL = ssl.create_default_context()
    return _SSL


def prepare() -> None:
    """Does now, before a call, what a client's creation would do on the call's event loop: the
    process's TLS context (~25-350 ms) and httpx's lazy transport import (httpcore, ~80 ms)."""
    _ssl_context()
    importlib.import_module("httpcore")


class StoreError(Exception):
    """The store API failed (after retries) or refused the request."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"store API {status}: {message}")
        self.status = status
        self.message = message

    @property
    def retryable(self) -> bool:
        """5xx, or no response at all (status 0: timeout, connection refused)."""
        return self.status >= 500 or self.status == 0


@dataclass
class StoreClient:
    base_url: str | None = None
    timeout_s: float = 2.0
    retries: int = 2
    backoff_s: float = 0.05
    backoff_max_s: float = 1.0
    headers: dict[str, str] | None = None

    def __post_init__(self) -> None:
        self.base_url = (self.base_url or settings.text(settings.STORE_API_URL) or DEFAULT_URL).rstrip("/")
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(self.timeout_s, connect=min(self.timeout_s, 1.0)),
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
            headers={"user-agent": f"voxpulse-agent/{telemetry.__version__}", **(self.headers or {})},
            verify=_ssl_context(),
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> StoreClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # -- operations ------------------------------------------------------------------------------
    @telemetry.traced(name="store_api.find_tyres")
    async def find_tyres(self, size: str, season: str | None = None) -> list[dict[str, Any]]:
        params = {"size": size}
        if season:
            params["season"] = season
        data = await self._request("GET", "/tyres", params=params)
        items: list[dict[str, Any]] = data.get("items", [])
        return items

    @telemetry.traced(name="store_api.create_order")
    async def create_order(self, tyre_id: str, quantity: int, phone: str, name: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"tyre_id": tyre_id, "quantity": quantity, "phone": phone}
        if name:
            body["name"] = name
        return await self._request("POST", "/orders", json=body)

    @telemetry.traced(name="store_api.book_fitting")
    async def book_fitting(
        self, date: str, time: str, phone: str, order_id: str | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"date": date, "time": time, "phone": phone}
        if order_id:
            body["order_id"] = order_id
        return await self._request("POST", "/fittings", json=body)

    @telemetry.traced(name="store_api.order_status")
    async def order_status(self, order_id: str) -> dict[str, Any]:
        return await self._request("GET", f"/orders/{order_id.strip().upper()}")

    # -- transport -------------------------------------------------------------------------------
    async def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        attempt = 0
        while True:
            status: int
            message: str
            try:
                resp = await self._client.request(method, path, **kwargs)
            except httpx.TimeoutException:
                status, message = 0, "timeout"
            except httpx.TransportError as e:
                status, message = 0, f"connection failed: {type(e).__name__}"
            else:
                if resp.status_code < 400:
                    result: dict[str, Any] = resp.json()
                    return result
                status = resp.status_code
                try:
                    message = str(resp.json().get("error", resp.reason_phrase))
                except ValueError:
                    message = resp.reason_phrase
                if status < 500:
                    raise StoreError(status, message)
            store_api_error(status)
            if attempt >= self.retries:
                raise StoreError(status, message)
            delay = min(self.backoff_max_s, self.backoff_s * (2**attempt))
            await asyncio.sleep(delay * (0.5 + random.random()))
            attempt += 1
