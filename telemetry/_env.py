"""The one table of environment variables VoxPulse reads.

Precedence everywhere: explicit argument > environment variable > default. Standard ``OTEL_*``
variables keep their OpenTelemetry meaning; ``VOXPULSE_*`` ones are ours.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Final

from telemetry.exceptions import TelemetryConfigError

__all__ = ["ENV_VARS", "EnvVar", "choice", "flag", "number", "text"]


@dataclass(frozen=True, slots=True)
class EnvVar:
    name: str
    default: str | None
    doc: str
    choices: tuple[str, ...] = ()


OTEL_SDK_DISABLED: Final = EnvVar("OTEL_SDK_DISABLED", "false", "true turns every signal into a no-op.")
OTEL_SERVICE_NAME: Final = EnvVar("OTEL_SERVICE_NAME", "voxpulse-agent", "service.name of the agent.")
OTEL_EXPORTER_OTLP_ENDPOINT: Final = EnvVar(
    "OTEL_EXPORTER_OTLP_ENDPOINT", None,
    "Collector base URL; default http://127.0.0.1:4318 (http/protobuf) or :4317 (grpc).",
)
OTEL_EXPORTER_OTLP_PROTOCOL: Final = EnvVar(
    "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf", "OTLP protocol.", ("http/protobuf", "grpc")
)
OTEL_METRIC_EXPORT_INTERVAL: Final = EnvVar(
    "OTEL_METRIC_EXPORT_INTERVAL", "20000",
    "Milliseconds between metric exports; keep it above the Prometheus scrape interval (15 s) or exemplars are lost.",
)
VOXPULSE_EXPORTER: Final = EnvVar(
    "VOXPULSE_EXPORTER", "otlp", "Where spans go: the collector, a console tree, or nowhere.",
    ("otlp", "console", "none"),
)
VOXPULSE_METRICS_EXPORTER: Final = EnvVar(
    "VOXPULSE_METRICS_EXPORTER", "otlp",
    "Where metrics go: OTLP to the collector, a Prometheus /metrics endpoint in the agent, both, or none.",
    ("otlp", "prometheus", "both", "none"),
)
VOXPULSE_PROMETHEUS_ADDR: Final = EnvVar(
    "VOXPULSE_PROMETHEUS_ADDR", "127.0.0.1:8080", "host:port of the agent's own /metrics endpoint."
)
VOXPULSE_CONTENT: Final = EnvVar(
    "VOXPULSE_CONTENT", "redacted", "Transcripts and tool arguments on spans: dropped, redacted or kept.",
    ("off", "redacted", "full"),
)
VOXPULSE_MAX_ATTRIBUTE_LENGTH: Final = EnvVar(
    "VOXPULSE_MAX_ATTRIBUTE_LENGTH", "2048", "Longer string attributes are truncated before export."
)
LOG_LEVEL: Final = EnvVar("LOG_LEVEL", "INFO", "Level of the root logger.")
LOG_FORMAT: Final = EnvVar("LOG_FORMAT", "json", "Log line format.", ("json", "text"))

ENV_VARS: Final[tuple[EnvVar, ...]] = (
    OTEL_SDK_DISABLED,
    OTEL_SERVICE_NAME,
    OTEL_EXPORTER_OTLP_ENDPOINT,
    OTEL_EXPORTER_OTLP_PROTOCOL,
    OTEL_METRIC_EXPORT_INTERVAL,
    VOXPULSE_EXPORTER,
    VOXPULSE_METRICS_EXPORTER,
    VOXPULSE_PROMETHEUS_ADDR,
    VOXPULSE_CONTENT,
    VOXPULSE_MAX_ATTRIBUTE_LENGTH,
    LOG_LEVEL,
    LOG_FORMAT,
)


def text(var: EnvVar, explicit: str | None = None) -> str | None:
    """The explicit value, else the variable's non-empty value, else its default."""
    if explicit is not None:
        return explicit
    raw = os.environ.get(var.name, "").strip()
    return raw or var.default


def choice(var: EnvVar, explicit: str | None = None) -> str:
    value = text(var, explicit)
    assert value is not None, var.name
    value = value.strip().lower()
    if value not in var.choices:
        source = "argument" if explicit is not None else f"environment variable {var.name}"
        raise TelemetryConfigError(
            f"{source} is {value!r}; expected one of {', '.join(var.choices)}"
        )
    return value


def flag(var: EnvVar, explicit: bool | None = None) -> bool:
    if explicit is not None:
        return explicit
    value = (text(var) or "").lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("", "0", "false", "no", "off"):
        return False
    raise TelemetryConfigError(f"environment variable {var.name} is {value!r}; expected true or false")


def number(var: EnvVar, explicit: float | None = None, *, minimum: float = 0.0) -> float:
    if explicit is not None:
        value = float(explicit)
        source = "argument"
    else:
        raw = text(var)
        source = f"environment variable {var.name}"
        try:
            value = float(raw or "")
        except ValueError:
            raise TelemetryConfigError(f"{source} is {raw!r}; expected a number") from None
    if value < minimum:
        raise TelemetryConfigError(f"{source} is {value}; expected at least {minimum}")
    return value
