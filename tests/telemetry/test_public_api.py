"""The public surface is deliberate, documented and the only thing other modules lean on.

* Each public module's ``__all__`` is pinned here: a change to the API is a change to this file.
* docs/library-api.md names every public name.
* Inside ``telemetry``, a name taken from another module is in that module's ``__all__`` (its
  declared interface) or starts with ``_`` (shared inside the package, not API).
* docs/configuration.md is generated from ``telemetry/_env.py``, and nothing in ``telemetry`` reads
  the environment anywhere else.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

from telemetry import _env

ROOT = Path(__file__).resolve().parents[2]
#: The tables after the library's in docs/configuration.md, as the Makefile's ``docs`` names them.
DOC_SECTIONS = ("voxpulse_console.settings", "agent.settings")
PACKAGE = ROOT / "telemetry"

PUBLIC: dict[str, set[str]] = {
    "telemetry": {
        "Attr", "CallOutcome", "CallScope", "Stage", "Telemetry", "TelemetryConfig", "TelemetryConfigError",
        "TelemetryError", "__version__", "call", "configure", "current_call", "inject", "mask_logs", "metrics",
        "redact", "setup_logging", "trace_llm", "trace_stt", "trace_tool", "trace_tts", "traced",
    },
    "telemetry.semconv": {
        "ATTRIBUTES", "CALL_DURATION_BUCKETS_S", "COST_BUCKETS_USD", "DURATION_BUCKETS_S", "LIVEKIT_JOB_ROOT",
        "LIVEKIT_JOB_SPANS", "LIVEKIT_METER", "LIVEKIT_METRIC_LABELS", "LIVEKIT_STAGE_SPANS", "LIVEKIT_TURN_SPANS",
        "LIVEKIT_USER_TURN", "DISTRO",
        "METRICS", "OTHER", "SEGMENT_BUCKETS_S", "SPANMETRICS_CALLS", "SPANMETRICS_DIMENSIONS", "SPANMETRICS_DURATION",
        "SPANMETRICS_KEPT_CALLS", "SPANMETRICS_KEPT_DURATION", "TTFW_OBJECTIVE_S", "TURN_SEGMENT_OWNERS", "Attr",
        "AttributeSpec", "CallOutcome", "EventName", "GenAIOperation", "Metric", "MetricKind", "MetricSpec", "SpanName",
        "Stage",
        "TurnSegment", "error_type", "metric_spec", "prometheus_name", "read_metric_specs", "render_markdown",
    },
    "telemetry.metrics": {
        "Counter", "Gauge", "Histogram", "UpDownCounter", "record_time_to_first_chunk", "record_time_to_first_word",
        "registered", "set_operator_queue", "tool_anomaly",
    },
    "telemetry.pricing": {"DEFAULT_PRICES", "ModelPrice", "PriceTable"},
    "telemetry.sampling": {"HASH_SALT", "KeptTraceExemplarFilter", "in_share", "keeps_span", "share_threshold"},
    "telemetry.exceptions": {"TelemetryConfigError", "TelemetryError"},
    "telemetry.testing": {"CapturedTelemetry", "IncrementalIdGenerator", "capture_telemetry"},
    "telemetry.livekit": {
        "AUDIBLE_RMS", "BudgetBreach", "BudgetHook", "Budgets", "CallLog", "MeasuredTurn", "SessionInstrumentation",
        "instrument_session",
    },
    "telemetry.relay": {"MetricsRelay", "worker_relay", "worker_relay_endpoint"},
    "telemetry.history": {
        "CallEnded", "CallLogger", "CallStarted", "LoggerStats", "Mode", "Record", "RejectedRecord", "SessionStore",
        "ToolCallRecord", "TurnRecord", "apply_migrations", "clean_text", "database_url", "ensure_partitions",
        "instrument", "load_migrations", "migrate", "recent_calls", "redis_url", "refresh_daily_stats",
        "register_cli", "to_datetime", "to_jsonable",
    },
}


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_public_surface_is_pinned(module: str) -> None:
    mod = importlib.import_module(module)  # (ruff's RUF022 keeps each __all__ sorted)
    assert set(mod.__all__) == PUBLIC[module]
    for name in mod.__all__:
        assert hasattr(mod, name), f"{module}.{name}"


def test_every_public_name_is_documented() -> None:
    doc = (ROOT / "docs" / "library-api.md").read_text(encoding="utf-8")
    for module, names in PUBLIC.items():
        assert f"`{module}`" in doc or module == "telemetry", module
        for name in names:
            assert re.search(rf"\b{re.escape(name)}\b", doc), f"docs/library-api.md does not mention {module}.{name}"


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def test_modules_use_each_others_declared_interface_only() -> None:
    modules = _modules()
    offences = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom) or not node.module or node.module not in modules:
                continue
            source = importlib.import_module(node.module)
            exported = set(getattr(source, "__all__", ()))
            for alias in node.names:
                if alias.name.startswith("_") or alias.name in exported:
                    continue
                if f"{node.module}.{alias.name}" in modules:  # a submodule
                    continue
                offences.append(f"{name} imports {node.module}.{alias.name} (not in its __all__)")
    assert not offences, "\n".join(offences)


def test_configuration_docs_are_generated_from_the_env_table() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert doc == _env.render_markdown(DOC_SECTIONS), "run: make docs"


def test_the_library_reads_the_environment_only_through_the_table() -> None:
    reads = re.compile(r"os\.environ|os\.getenv|getenv\(")
    for name, path in _modules().items():
        if name == "telemetry._env":
            continue
        assert not reads.search(path.read_text(encoding="utf-8")), f"{name} reads the environment itself"
    # and every name the table reads is documented
    doc = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    for var in _env.ENV_VARS:
        for n in var.names:
            assert f"`{n}`" in doc, n
