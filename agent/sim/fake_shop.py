"""A local fake of the tyre shop's store API (aiohttp), for the simulator, the demo and tests.

In-memory catalogue of tyres in sizes common in Ukraine, orders and fitting bookings. Latency and
5xx errors can be injected (per request, reproducible with a seed). Binds 127.0.0.1 on an ephemeral
port by default::

    async with FakeStore(latency_s=0.03, error_rate=0.05, seed=1) as store:
        client = StoreClient(base_url=store.url)

Endpoints (JSON):

* ``GET  /tyres?size=205/55 R16&season=winter`` -> ``{"items": [{id, brand, model, size, season, price_uah, stock}]}``
* ``POST /orders`` ``{tyre_id, quantity, phone, name?}`` -> ``201 {order_id, status, total_uah}``
* ``GET  /orders/{order_id}`` -> ``{order_id, status, tyre_id, quantity, total_uah}``
* ``POST /fittings`` ``{date, time, phone, order_id?}`` -> ``201 {booking_id, date, time, station}``
* ``GET  /healthz``
"""

from __future__ import annotations

import asyncio
import itertools
import random
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiohttp import web

__all__ = ["CATALOGUE", "FakeStore", "Tyre"]


@dataclass(frozen=True, slots=True)
class Tyre:
    id: str
    brand: str
    model: str
    size: str
    season: str  # summer | winter | all_season
    price_uah: int
    stock: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "brand": self.brand,
            "model": self.model,
            "size": self.size,
            "season": self.season,
            "price_uah": self.price_uah,
            "stock": self.stock,
        }


def _catalogue() -> tuple[Tyre, ...]:
    sizes = ["175/70 R13", "185/65 R14", "195/65 R15", "205/55 R16", "215/60 R16", "225/45 R17", "235/55 R18"]
    models = {
        "summer": [("Michelin", "Primacy 4+"), ("Continental", "PremiumContact 7"), ("Rosava", "Itegro")],
        "winter": [("Nokian", "Hakkapeliitta R5"), ("Belshina", "Artmotion Snow"), ("Michelin", "Alpin 7")],
        "all_season": [("Goodyear", "Vector 4Seasons"), ("Premiorri", "Solazo")],
    }
    rng = random.Random(42)
    out: list[Tyre] = []
    n = itertools.count(1)
    for size in sizes:
        width = int(size.split("/")[0])
        for season, pairs in models.items():
            for brand, model in pairs:
                base = 1400 + (width - 175) * 25 + rng.randint(0, 900)
                premium = 1.6 if brand in ("Michelin", "Continental", "Nokian") else 1.0
                out.append(
                    Tyre(
                        id=f"T{next(n):04d}",
                        brand=brand,
                        model=model,
                        size=size,
                        season=season,
                        price_uah=int(base * premium) // 10 * 10,
                        stock=rng.choice([0, 2, 4, 4, 8, 12, 16, 24]),
                    )
                )
    return tuple(out)


CATALOGUE: tuple[Tyre, ...] = _catalogue()


def normalise_size(size: str) -> str:
    """'205 55 r16', '205/55R16', '205/55 R16' -> '205/55 R16'."""
    digits = "".join(ch if ch.isdigit() else " " for ch in size).split()
    if len(digits) >= 3:
        return f"{digits[0]}/{digits[1]} R{digits[2]}"
    return size.strip().upper()


@dataclass
class FakeStore:
    """The fake store server. ``error_rate`` injects HTTP 5xx; ``latency_s`` (+ lognormal jitter) delays responses."""

    latency_s: float = 0.02
    jitter_sigma: float = 0.3
    error_rate: float = 0.0
    error_statuses: tuple[int, ...] = (500, 502, 503)
    seed: int | None = None
    host: str = "127.0.0.1"
    port: int = 0
    catalogue: tuple[Tyre, ...] = CATALOGUE
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    fittings: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: int = 0

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._order_seq = itertools.count(10001)
        self._fitting_seq = itertools.count(501)
        self._runner: web.AppRunner | None = None
        self._stock = {t.id: t.stock for t in self.catalogue}
        self._fail_next: list[int] = []
        self._fail_for: dict[str, list[int]] = {}
        self.url = ""

    # -- control ---------------------------------------------------------------------------------
    def fail_next(self, *statuses: int) -> None:
        """Make the next requests fail with these statuses (tests, scenarios)."""
        self._fail_next.extend(statuses)

    def fail_for(self, call_id: str, *statuses: int) -> None:
        """Make the next requests carrying ``x-call-id: call_id`` fail with these statuses."""
        self._fail_for.setdefault(call_id, []).extend(statuses)

    async def start(self) -> str:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/tyres", self._find_tyres)
        app.router.add_post("/orders", self._create_order)
        app.router.add_get("/orders/{order_id}", self._get_order)
        app.router.add_post("/fittings", self._book_fitting)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        assert server is not None
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1]
        self.url = f"http://{self.host}:{self.port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeStore:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # -- HTTP ------------------------------------------------------------------------------------
    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests += 1
        if request.path == "/healthz":
            return await handler(request)  # type: ignore[no-any-return]
        delay = self.latency_s * self._rng.lognormvariate(0.0, self.jitter_sigma) if self.latency_s else 0.0
        status = 0
        per_call = self._fail_for.get(request.headers.get("x-call-id", ""))
        if per_call:
            status = per_call.pop(0)
        elif self._fail_next:
            status = self._fail_next.pop(0)
        elif self.error_rate and self._rng.random() < self.error_rate:
            status = self._rng.choice(self.error_statuses)
        if delay:
            await asyncio.sleep(delay)
        if status:
            return web.json_response({"error": "injected failure"}, status=status)
        return await handler(request)  # type: ignore[no-any-return]

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def _find_tyres(self, request: web.Request) -> web.Response:
        size = normalise_size(request.query.get("size", ""))
        season = request.query.get("season", "").strip().lower() or None
        items = [
            {**t.as_dict(), "stock": self._stock[t.id]}
            for t in self.catalogue
            if t.size == size and (season is None or t.season == season)
        ]
        items.sort(key=lambda i: i["price_uah"])
        return web.json_response({"items": items})

    async def _create_order(self, request: web.Request) -> web.Response:
        body = await request.json()
        tyre = next((t for t in self.catalogue if t.id == body.get("tyre_id")), None)
        qty = int(body.get("quantity", 4))
        if tyre is None:
            return web.json_response({"error": "unknown tyre"}, status=404)
        if qty <= 0 or qty > self._stock[tyre.id]:
            return web.json_response({"error": "not enough stock", "stock": self._stock[tyre.id]}, status=409)
        self._stock[tyre.id] -= qty
        order_id = f"UA-{next(self._order_seq)}"
        order = {
            "order_id": order_id,
            "status": "created",
            "tyre_id": tyre.id,
            "quantity": qty,
            "total_uah": tyre.price_uah * qty,
        }
        self.orders[order_id] = {**order, "phone": body.get("phone")}
        return web.json_response(order, status=201)

    async def _get_order(self, request: web.Request) -> web.Response:
        order_id = request.match_info["order_id"].upper()
        order = self.orders.get(order_id)
        if order is None:
            # orders placed "before the simulation": a deterministic status per id
            digits = "".join(ch for ch in order_id if ch.isdigit())
            if not digits:
                return web.json_response({"error": "order not found"}, status=404)
            statuses = ["created", "paid", "shipped", "ready_for_pickup", "delivered"]
            return web.json_response(
                {"order_id": order_id, "status": statuses[int(digits) % len(statuses)], "tyre_id": None,
                 "quantity": 4, "total_uah": None}
            )
        return web.json_response({k: v for k, v in order.items() if k != "phone"})

    async def _book_fitting(self, request: web.Request) -> web.Response:
        body = await request.json()
        booking_id = f"F-{next(self._fitting_seq)}"
        booking = {
            "booking_id": booking_id,
            "date": body.get("date"),
            "time": body.get("time"),
            "station": "Kyiv, Peremohy Ave 67",
            "order_id": body.get("order_id"),
        }
        self.fittings[booking_id] = {**booking, "phone": body.get("phone")}
        return web.json_response(booking, status=201)


async def _main() -> None:  # pragma: no cover - manual use
    import argparse

    p = argparse.ArgumentParser(description="Run the fake store API")
    p.add_argument("--port", type=int, default=8088)
    p.add_argument("--latency", type=float, default=0.03)
    p.add_argument("--error-rate", type=float, default=0.0)
    a = p.parse_args()
    async with FakeStore(port=a.port, latency_s=a.latency, error_rate=a.error_rate) as store:
        print(f"fake store on {store.url}", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":  # pragma: no cover
    asyncio.run(_main())
