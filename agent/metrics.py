"""The tyre shop's own metrics, declared the way ``telemetry.semconv`` declares VoxPulse's.

The library knows calls, turns, stages, cost, outcomes and transfers; orders, fitting bookings and
the store API are this agent's business, so they are defined here through the library's public
metric API (``telemetry.metrics.Counter``), with the same naming, Prometheus and label rules. The
Prometheus names are what the dashboards and alert rules use (``spec.prometheus``).
"""

from __future__ import annotations

from typing import Final

from telemetry import metrics
from telemetry.semconv import Attr, MetricKind, MetricSpec

__all__ = ["AGENT_METRICS", "FITTINGS_BOOKED", "ORDERS_CREATED", "STORE_API_ERRORS", "store_api_error"]

ORDERS_CREATED: Final = metrics.Counter(MetricSpec(
    "voice.orders.created", MetricKind.COUNTER, "{order}", "Orders the bot created.",
))
FITTINGS_BOOKED: Final = metrics.Counter(MetricSpec(
    "voice.fittings.booked", MetricKind.COUNTER, "{booking}", "Tyre-fitting appointments the bot booked.",
))
STORE_API_ERRORS: Final = metrics.Counter(MetricSpec(
    "voice.store_api.errors", MetricKind.COUNTER, "{error}",
    "Store API errors by HTTP status code (0: no response: timeout or connection failure).", (Attr.HTTP_STATUS,),
))

AGENT_METRICS: Final[tuple[MetricSpec, ...]] = (ORDERS_CREATED.spec, FITTINGS_BOOKED.spec, STORE_API_ERRORS.spec)


def store_api_error(status_code: int) -> None:
    """A failed store API request; ``status_code`` 0 means no response (timeout, refused)."""
    STORE_API_ERRORS.add(1, {Attr.HTTP_STATUS: status_code})
