"""Every environment variable the library reads, in one table; nothing in ``telemetry`` reads
``os.environ`` anywhere else (a test checks).

Precedence everywhere: explicit argument > environment variable > default. Standard ``OTEL_*``
variables keep their OpenTelemetry meaning; ``VOXPULSE_*`` ones are ours. A variable may have
several names (the first set wins), e.g. ``VOXPULSE_DATABASE_URL`` then ``DATABASE_URL``.

``docs/configuration.md`` is generated from this table and from the tables other processes build
with :class:`EnvVar` (the console's, the example agent's): ``python -m telemetry._env
voxpulse_console.settings agent.settings > docs/configuration.md`` (``make docs``); a test keeps the
two equal. Every value is read when it is needed, never at import time, from ``os.environ`` or from
a mapping given in its place (``env=``).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal, TypeVar, get_args, overload

from telemetry.exceptions import TelemetryConfigError
from telemetry.redaction import ContentMode
from telemetry.semconv import TTFW_OBJECTIVE_S

__all__ = [
    "CONTENT_MODES",
    "ENV_VARS",
    "EXPORTERS",
    "LOG_FORMATS",
    "METRICS_EXPORTERS",
    "OTLP_GRPC_ENDPOINT",
    "OTLP_HTTP_ENDPOINT",
    "PROTOCOLS",
    "EnvVar",
    "Exporter",
    "LogFormat",
    "MetricsExporter",
    "Protocol",
    "choice",
    "flag",
    "number",
    "optional_flag",
    "render_markdown",
    "set_for_children",
    "text",
    "under_test",
]

S = TypeVar("S", bound=str)

Exporter = Literal["otlp", "console", "none"]
MetricsExporter = Literal["otlp", "prometheus", "both", "none"]
Protocol = Literal["http/protobuf", "grpc"]
LogFormat = Literal["json", "text"]
EXPORTERS: Final[tuple[Exporter, ...]] = get_args(Exporter)
METRICS_EXPORTERS: Final[tuple[MetricsExporter, ...]] = get_args(MetricsExporter)
PROTOCOLS: Final[tuple[Protocol, ...]] = get_args(Protocol)
CONTENT_MODES: Final[tuple[ContentMode, ...]] = get_args(ContentMode)
LOG_FORMATS: Final[tuple[LogFormat, ...]] = get_args(LogFormat)

#: The collector's OTLP base URLs when nothing names one (the native stack's collector).
OTLP_HTTP_ENDPOINT: Final = "http://127.0.0.1:4318"
OTLP_GRPC_ENDPOINT: Final = "http://127.0.0.1:4317"


@dataclass(frozen=True, slots=True)
class EnvVar:
    names: tuple[str, ...]
    default: str | None
    doc: str
    choices: tuple[str, ...] = ()
    secret: bool = False

    @property
    def name(self) -> str:
        return self.names[0]

    def raw(self, env: Mapping[str, str] | None = None) -> tuple[str, str] | None:
        """(name, value) of the first of ``names`` set to a non-blank value in ``env`` (default:
        ``os.environ``), else None."""
        source = os.environ if env is None else env
        for name in self.names:
            value = (source.get(name) or "").strip()
            if value:
                return name, value
        return None


OTEL_SDK_DISABLED: Final = EnvVar(("OTEL_SDK_DISABLED",), "false", "`true` turns every signal into a no-op.")
OTEL_SERVICE_NAME: Final = EnvVar(("OTEL_SERVICE_NAME",), "voxpulse-agent", "`service.name` of the agent.")
OTEL_EXPORTER_OTLP_ENDPOINT: Final = EnvVar(
    ("OTEL_EXPORTER_OTLP_ENDPOINT",), None,
    f"Collector base URL; default {OTLP_HTTP_ENDPOINT} (http/protobuf) or {OTLP_GRPC_ENDPOINT} (grpc). "
    "Over http/protobuf each signal goes to `/v1/traces` / `/v1/metrics` under it.",
)
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: Final = EnvVar(
    ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",), None,
    "The spans' full OTLP URL (no `/v1/traces` added); wins over `OTEL_EXPORTER_OTLP_ENDPOINT`.",
)
OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: Final = EnvVar(
    ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",), None,
    "The metrics' full OTLP URL (no `/v1/metrics` added); wins over `OTEL_EXPORTER_OTLP_ENDPOINT`.",
)
OTEL_EXPORTER_OTLP_INSECURE: Final = EnvVar(
    ("OTEL_EXPORTER_OTLP_INSECURE",), None,
    "gRPC only: `true` plaintext, `false` TLS, for an endpoint without a scheme (`https://` is always "
    "TLS, `http://` plaintext). Unset: plaintext.",
)
OTEL_EXPORTER_OTLP_PROTOCOL: Final = EnvVar(
    ("OTEL_EXPORTER_OTLP_PROTOCOL",), "http/protobuf", "OTLP protocol.", PROTOCOLS
)
OTEL_METRIC_EXPORT_INTERVAL: Final = EnvVar(
    ("OTEL_METRIC_EXPORT_INTERVAL",), "5000",
    "Milliseconds between metric exports; keep it above the interval Prometheus scrapes the collector at "
    "(3 s in the stack) or exemplars are lost.",
)
OTEL_BSP_MAX_QUEUE_SIZE: Final = EnvVar(
    ("OTEL_BSP_MAX_QUEUE_SIZE",), "4096", "Spans queued for export; beyond it they are dropped and counted."
)
OTEL_BSP_SCHEDULE_DELAY: Final = EnvVar(
    ("OTEL_BSP_SCHEDULE_DELAY",), "1000", "Milliseconds between span exports (our default; the SDK's is 5000)."
)
OTEL_BSP_MAX_EXPORT_BATCH_SIZE: Final = EnvVar(
    ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE",), "512", "Spans per export request (at most the queue size)."
)
OTEL_BSP_EXPORT_TIMEOUT: Final = EnvVar(
    ("OTEL_BSP_EXPORT_TIMEOUT",), "30000", "Milliseconds one span export may take."
)
VOXPULSE_EXPORTER: Final = EnvVar(
    ("VOXPULSE_EXPORTER",), "otlp", "Where spans go: the collector, a console tree, or nowhere.", EXPORTERS,
)
VOXPULSE_METRICS_EXPORTER: Final = EnvVar(
    ("VOXPULSE_METRICS_EXPORTER",), "otlp",
    "Where metrics go: OTLP to the collector, a Prometheus /metrics endpoint in the agent, both, or none.",
    METRICS_EXPORTERS,
)
VOXPULSE_PROMETHEUS_ADDR: Final = EnvVar(
    ("VOXPULSE_PROMETHEUS_ADDR",), "127.0.0.1:8080", "host:port of the agent's own /metrics endpoint."
)
VOXPULSE_METRICS_RELAY: Final = EnvVar(
    ("VOXPULSE_METRICS_RELAY",), "auto",
    "The worker's metrics relay (`telemetry.relay`), one writer of a LiveKit worker's series whatever its "
    "job processes: `auto` starts or finds one per worker when `configure()` runs in a LiveKit job process "
    "(elsewhere it does nothing); an OTLP/HTTP base URL sends the OTLP metrics there as deltas (what "
    "`telemetry.relay.worker_relay()` sets for the job processes); `off` exports from each process.",
)
VOXPULSE_CONTENT: Final = EnvVar(
    ("VOXPULSE_CONTENT",), "redacted", "Transcripts and tool arguments on spans: dropped, redacted or kept.",
    CONTENT_MODES,
)
VOXPULSE_MAX_ATTRIBUTE_LENGTH: Final = EnvVar(
    ("VOXPULSE_MAX_ATTRIBUTE_LENGTH",), "2048", "Longer string attributes are truncated before export."
)
VOXPULSE_TRACE_SAMPLING_PERCENT: Final = EnvVar(
    ("VOXPULSE_TRACE_SAMPLING_PERCENT",), "100",
    "Share (0-100) of the traces no rule keeps that the collectors' tail sampling keeps (scale-out "
    "topology). Set it alike for agents and collectors: the agent takes exemplars only from traces "
    "that will be kept, and marks them.",
)
VOXPULSE_TTFW_OBJECTIVE_S: Final = EnvVar(
    ("VOXPULSE_TTFW_OBJECTIVE_S",), f"{TTFW_OBJECTIVE_S:g}",
    "The time-to-first-word objective, seconds: a turn whose time to first word is at or over it is a slow "
    "turn (`voice.turn.slow` on its span, which the dashboards' Slow turns panels search by). Set it alike "
    "for agents and collectors: the collectors' tail sampling keeps a slow turn's trace by the same number.",
)
VOXPULSE_LOG_LEVEL: Final = EnvVar(
    ("VOXPULSE_LOG_LEVEL", "LOG_LEVEL"), "INFO",
    "Level of the root logger when VoxPulse installs its log handler (`LOG_LEVEL` is read as a fallback).",
)
VOXPULSE_LOG_FORMAT: Final = EnvVar(
    ("VOXPULSE_LOG_FORMAT", "LOG_FORMAT"), "json", "Format of that handler's lines (`LOG_FORMAT` as a fallback).",
    LOG_FORMATS,
)
VOXPULSE_RAISE_INTERNAL_ERRORS: Final = EnvVar(
    ("VOXPULSE_RAISE_INTERNAL_ERRORS",), None,
    "`true` re-raises internal telemetry errors instead of containing them; `false` contains them even "
    "while a test runs. Unset: re-raised only while pytest runs a test (`PYTEST_CURRENT_TEST`).",
)
VOXPULSE_TURN_BUDGET: Final = EnvVar(
    ("VOXPULSE_TURN_BUDGET",), None,
    "Live latency budget of a turn, seconds of the caller's time to first word: when a turn runs over while the "
    "caller still waits, a `budget_exceeded` event, `voice.budget.breaches` and the session's budget hooks "
    "(`telemetry.livekit`). Unset: `VOXPULSE_TTFW_OBJECTIVE_S`; `0` turns it off.",
)
VOXPULSE_SEGMENT_BUDGETS: Final = EnvVar(
    ("VOXPULSE_SEGMENT_BUDGETS",), None,
    "Budgets of parts of a turn, `part=seconds,...` (parts: `voice.segment.name` values, e.g. "
    "`llm_ttft=1.0,tts_ttfb=0.5`), checked when the turn's parts are known.",
)
DATABASE_URL: Final = EnvVar(
    ("VOXPULSE_DATABASE_URL", "DATABASE_URL"), None,
    "PostgreSQL DSN of the call history (`telemetry.history`) and of the console's alerts receiver.",
    secret=True,
)
REDIS_URL: Final = EnvVar(
    ("VOXPULSE_REDIS_URL", "REDIS_URL"), None,
    "Redis URL of the call history's outage buffer and per-call sessions (optional).", secret=True,
)

ENV_VARS: Final[tuple[EnvVar, ...]] = (
    OTEL_SDK_DISABLED,
    OTEL_SERVICE_NAME,
    OTEL_EXPORTER_OTLP_ENDPOINT,
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
    OTEL_EXPORTER_OTLP_METRICS_ENDPOINT,
    OTEL_EXPORTER_OTLP_INSECURE,
    OTEL_EXPORTER_OTLP_PROTOCOL,
    OTEL_METRIC_EXPORT_INTERVAL,
    OTEL_BSP_MAX_QUEUE_SIZE,
    OTEL_BSP_SCHEDULE_DELAY,
    OTEL_BSP_MAX_EXPORT_BATCH_SIZE,
    OTEL_BSP_EXPORT_TIMEOUT,
    VOXPULSE_EXPORTER,
    VOXPULSE_METRICS_EXPORTER,
    VOXPULSE_PROMETHEUS_ADDR,
    VOXPULSE_METRICS_RELAY,
    VOXPULSE_CONTENT,
    VOXPULSE_MAX_ATTRIBUTE_LENGTH,
    VOXPULSE_TRACE_SAMPLING_PERCENT,
    VOXPULSE_TTFW_OBJECTIVE_S,
    VOXPULSE_LOG_LEVEL,
    VOXPULSE_LOG_FORMAT,
    VOXPULSE_RAISE_INTERNAL_ERRORS,
    VOXPULSE_TURN_BUDGET,
    VOXPULSE_SEGMENT_BUDGETS,
    DATABASE_URL,
    REDIS_URL,
)


@overload
def text(var: EnvVar, explicit: str, *, env: Mapping[str, str] | None = None) -> str: ...
@overload
def text(var: EnvVar, explicit: str | None = None, *, env: Mapping[str, str] | None = None) -> str | None: ...
def text(var: EnvVar, explicit: str | None = None, *, env: Mapping[str, str] | None = None) -> str | None:
    """The explicit value, else the variable's non-blank value (in ``env``, default ``os.environ``),
    else its default."""
    if explicit is not None:
        return explicit
    found = var.raw(env)
    return found[1] if found else var.default


def choice(var: EnvVar, explicit: S | None, allowed: tuple[S, ...]) -> S:
    """One of ``allowed`` (the variable's choices, typed as their Literal), from the explicit value,
    the environment or the default; anything else is a :class:`TelemetryConfigError`."""
    found = var.raw() if explicit is None else None
    value = explicit if explicit is not None else found[1] if found else var.default
    normalised = (value or "").strip().lower()
    for option in allowed:
        if option == normalised:
            return option
    source = "argument" if explicit is not None else f"environment variable {found[0]}" if found else var.name
    raise TelemetryConfigError(f"{source} is {value!r}; expected one of {', '.join(allowed)}")


# Every flag, OTEL_SDK_DISABLED included, takes these spellings: a superset of the OpenTelemetry
# spec's true/false (case-insensitive), since whoever writes 1 or yes means it; anything else is an
# error (TelemetryConfigError), never a silent false.
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off"})


def optional_flag(var: EnvVar, *, env: Mapping[str, str] | None = None) -> bool | None:
    """The variable as a boolean, None when it is unset (and has no default)."""
    found = var.raw(env)
    value = (found[1] if found else var.default or "").lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    if not value:
        return None
    raise TelemetryConfigError(f"environment variable {found[0] if found else var.name} is {value!r}; "
                               "expected true or false")


def flag(var: EnvVar, explicit: bool | None = None, *, env: Mapping[str, str] | None = None) -> bool:
    if explicit is not None:
        return explicit
    return bool(optional_flag(var, env=env))


def number(var: EnvVar, explicit: float | None = None, *, minimum: float = 0.0) -> float:
    if explicit is not None:
        value = float(explicit)
        source = "argument"
    else:
        found = var.raw()
        raw = found[1] if found else var.default
        source = f"environment variable {found[0]}" if found else f"default of {var.name}"
        try:
            value = float(raw or "")
        except ValueError:
            raise TelemetryConfigError(f"{source} is {raw!r}; expected a number") from None
    if value < minimum:
        raise TelemetryConfigError(f"{source} is {value}; expected at least {minimum}")
    return value


def set_for_children(var: EnvVar, value: str | None) -> None:
    """Sets (None: removes) the variable in this process's environment, which the processes it starts
    inherit (a LiveKit worker's job processes: ``telemetry.relay.worker_relay``)."""
    if value is None:
        os.environ.pop(var.name, None)
    else:
        os.environ[var.name] = value


def under_test() -> bool:
    """True while pytest runs a test (it sets ``PYTEST_CURRENT_TEST`` then, not merely when imported)."""
    return "PYTEST_CURRENT_TEST" in os.environ


def render_markdown(sections: Sequence[str] = ()) -> str:
    """The body of docs/configuration.md: the library's table, then one per module named in
    ``sections`` (its ``ENV_VARS``, under the first line of its docstring; ``make docs`` names them)."""
    out = [
        "# Configuration: the environment variables VoxPulse reads",
        "",
        "Generated from `telemetry/_env.py` (the library) and the tables built with its `EnvVar` (the",
        f"console, the example agent) by `python -m telemetry._env {' '.join(sections)}`; a test keeps",
        "the two equal and checks that the code reads no variable outside these tables.",
        "",
        "Precedence: an explicit argument (`telemetry.configure(...)`, `CallLogger(...)`, a command-line",
        "option) wins over the variable, which wins over the default. Where a row lists several names,",
        "the first one set wins. Standard `OTEL_*` variables keep their OpenTelemetry meaning; the OTel",
        "SDK and its exporters also read the other standard ones themselves (`OTEL_EXPORTER_OTLP_HEADERS`,",
        "`OTEL_EXPORTER_OTLP_CERTIFICATE`, `OTEL_RESOURCE_ATTRIBUTES`, ...). Invalid values raise",
        "`telemetry.TelemetryConfigError` at `configure()`.",
        "",
        "## The library (`telemetry`)",
        "",
        *_table(ENV_VARS),
    ]
    for name in sections:
        module = importlib.import_module(name)
        title = (module.__doc__ or name).strip().splitlines()[0].rstrip(".")
        out += ["", f"## {title}", "", *_table(module.ENV_VARS)]
    out.append("")
    return "\n".join(out)


def _table(variables: Sequence[EnvVar]) -> list[str]:
    out = ["| variable | default | values | meaning |", "|---|---|---|---|"]
    for var in variables:
        names = " or ".join(f"`{n}`" for n in var.names)
        default = f"`{var.default}`" if var.default is not None else ""
        values = ", ".join(f"`{c}`" for c in var.choices)
        doc = var.doc + (" Holds credentials: set it from your secret store." if var.secret else "")
        out.append(f"| {names} | {default} | {values} | {doc} |")
    return out


if __name__ == "__main__":
    sys.stdout.write(render_markdown(sys.argv[1:]))
