"""The tyre shop's own metrics, declared the way ``telemetry.semconv`` declares VoxPulse's.

The library knows calls, turns, stages, cost, outcomes and transfers; orders, fitting bookings and
the store API are this agent's business, so they are declared here, as data in ``agent/metrics.toml``
(which the dashboard generator reads without importing the agent), and recorded through the
library's public metric API (``telemetry.metrics.Counter``), with the same naming, Prometheus and
label rules. The Prometheus names are what the dashboards and alert rules use (``spec.prometheus``).
"""

from __future__ import annotations

from importlib import resources
from typing import Final

from telemetry import metrics
from telemetry.semconv import Attr, MetricSpec, read_metric_specs

__all__ = ["AGENT_METRICS", "FITTINGS_BOOKED", "ORDERS_CREATED", "STORE_API_ERRORS", "store_api_error"]

AGENT_METRICS: Final[tuple[MetricSpec, ...]] = read_metric_specs(
    resources.files("agent").joinpath("metrics.toml").read_text(encoding="utf-8"))
_BY_NAME: Final = {m.name: m for m in AGENT_METRICS}

ORDERS_CREATED: Final = metrics.Counter(_BY_NAME["voice.orders.created"])
FITTINGS_BOOKED: Final = metrics.Counter(_BY_NAME["voice.fittings.booked"])
STORE_API_ERRORS: Final = metrics.Counter(_BY_NAME["voice.store_api.errors"])


def store_api_error(status_code: int) -> None:
    """A failed store API request; ``status_code`` 0 means no response (timeout, refused)."""
    STORE_API_ERRORS.add(1, {Attr.HTTP_STATUS: status_code})
