"""configure(): precedence, idempotence, bad input, disabled SDK, never blocking the event loop."""

from __future__ import annotations

import asyncio
import io
import threading
import time
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

import telemetry
from telemetry._state import STATE
from telemetry.semconv import DISTRO, Attr
from telemetry.span_tree import ConsoleTreeExporter
from tests.support import closed_port


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("OTEL_SDK_DISABLED", "OTEL_SERVICE_NAME", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL",
                 "VOXPULSE_EXPORTER", "VOXPULSE_METRICS_EXPORTER", "VOXPULSE_CONTENT"):
        monkeypatch.delenv(name, raising=False)
    yield
    from telemetry import _setup

    if _setup._active is not None:
        _setup._active.shutdown_sync(timeout=2)


def test_argument_beats_environment_beats_default(monkeypatch: pytest.MonkeyPatch) -> None:
    handle = telemetry.configure(exporter="none", metrics_exporter="none", setup_logs=False)
    assert handle.config.service_name == "voxpulse-agent"
    assert handle.config.content == "redacted"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    monkeypatch.setenv("VOXPULSE_CONTENT", "off")
    handle = telemetry.configure(exporter="none", metrics_exporter="none", setup_logs=False)
    assert (handle.config.service_name, handle.config.content) == ("from-env", "off")
    handle = telemetry.configure(service_name="from-arg", content="full", exporter="none",
                                 metrics_exporter="none", setup_logs=False)
    assert (handle.config.service_name, handle.config.content) == ("from-arg", "full")
    assert handle.tracer_provider is not None
    assert handle.tracer_provider.resource.attributes["service.name"] == "from-arg"
    # the insights receiver tells VoxPulse's spans in LiveKit's upload by this (it leaves them out)
    assert handle.tracer_provider.resource.attributes[Attr.DISTRO_NAME] == DISTRO
    assert handle.tracer_provider.resource.attributes[Attr.DISTRO_VERSION] == telemetry.__version__


def test_safe_to_call_twice() -> None:
    first = telemetry.configure(exporter="none", metrics_exporter="none", setup_logs=False)
    assert telemetry.configure(exporter="none", metrics_exporter="none", setup_logs=False) is first
    second = telemetry.configure(exporter="none", metrics_exporter="none", service_name="other", setup_logs=False)
    assert second is not first and STATE.enabled


def test_bad_values_give_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOXPULSE_EXPORTER", "kafka")
    with pytest.raises(telemetry.TelemetryConfigError, match="VOXPULSE_EXPORTER is 'kafka'; expected one of"):
        telemetry.configure(setup_logs=False)
    monkeypatch.delenv("VOXPULSE_EXPORTER")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "maybe")
    with pytest.raises(telemetry.TelemetryConfigError, match="OTEL_SDK_DISABLED"):
        telemetry.configure(setup_logs=False)
    with pytest.raises(telemetry.TelemetryConfigError, match="argument is 'smtp'"):
        telemetry.configure(metrics_exporter="smtp", disabled=True, setup_logs=False)  # type: ignore[arg-type]
    monkeypatch.delenv("OTEL_SDK_DISABLED")
    monkeypatch.setenv("VOXPULSE_TRACE_SAMPLING_PERCENT", "150")
    with pytest.raises(telemetry.TelemetryConfigError, match=r"PERCENT is 150\.0; expected 0 to 100"):
        telemetry.configure(setup_logs=False)
    handle = telemetry.configure(trace_sampling_percent=5, exporter="none", metrics_exporter="none", setup_logs=False)
    assert handle.config.trace_sampling_percent == 5  # the argument wins over the environment
    with pytest.raises(telemetry.TelemetryConfigError, match=r"argument is 101\.0; expected 0 to 100"):
        telemetry.configure(trace_sampling_percent=101, exporter="none", setup_logs=False)


async def test_sdk_disabled_is_a_no_op_but_calls_still_work(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    handle = telemetry.configure(setup_logs=False)
    assert handle.tracer_provider is None and not STATE.enabled

    @telemetry.trace_llm
    async def llm() -> str:
        return "ok"

    async with telemetry.call("off") as call:
        assert await llm() == "ok"
        assert telemetry.current_call() is call
    assert call.trace_id == ""
    assert await handle.shutdown() is True


async def test_console_exporter_prints_each_calls_tree() -> None:
    out = io.StringIO()
    handle = telemetry.configure(exporter="none", metrics_exporter="none", setup_logs=False)
    assert handle.tracer_provider is not None
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    handle.tracer_provider.add_span_processor(SimpleSpanProcessor(ConsoleTreeExporter(out)))

    @telemetry.trace_tool
    async def find_tyres(size: str) -> list[str]:
        return [size]

    async with telemetry.call("tree-1"):
        await find_tyres("205/55 R16")
    text = out.getvalue()
    assert text.splitlines()[0].startswith("call  ")
    assert "call_id=tree-1" in text and "outcome=resolved_by_bot" in text
    assert "└─ execute_tool find_tyres" in text


async def test_dead_collector_never_blocks_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every export to a collector that refuses connections and every flush (the network I/O, with
    the exporters' retries and back-off) run on threads of their own, never on the event loop's: the
    OTLP exporters are the real ones, their calls recorded with the thread that made them. (Stopping
    them after a missed deadline happens on the loop: it only sets a flag and closes the session.)"""
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    loop_thread = threading.get_ident()
    calls: list[tuple[str, int]] = []

    def record(cls: type, name: str) -> None:
        original = getattr(cls, name)

        def recorded(self: object, *args: object, **kwargs: object) -> object:
            calls.append((f"{cls.__name__}.{name}", threading.get_ident()))
            return original(self, *args, **kwargs)

        monkeypatch.setattr(cls, name, recorded)

    for cls in (OTLPSpanExporter, OTLPMetricExporter):
        for name in ("export", "force_flush"):
            record(cls, name)

    @telemetry.traced(name="work", stage="llm")
    async def work() -> None:
        await asyncio.sleep(0)

    with closed_port() as port:  # nothing listens there, and nothing else can take it meanwhile
        handle = telemetry.configure(exporter="otlp", endpoint=f"http://127.0.0.1:{port}", metrics_exporter="otlp",
                                     metric_export_interval_s=0.2, setup_logs=False)
        async with telemetry.call("dead"):
            for _ in range(200):
                await work()
        start = time.perf_counter()
        finished = await handle.shutdown(timeout=1.0)
        took = time.perf_counter() - start
    assert took < 2.0  # bounded by the deadline, while the SDK alone can block 30 s
    assert finished in (True, False)
    assert {"OTLPSpanExporter.export", "OTLPMetricExporter.export"} <= {name for name, _ in calls}
    on_loop = [name for name, thread in calls if thread == loop_thread]
    assert not on_loop, f"ran on the event loop: {on_loop}"
    assert Attr.CALL_ID  # names import


async def test_flush_and_shutdown_start_no_thread_on_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """Starting a thread blocks its starter until the thread runs (tens of milliseconds on a loaded
    machine: a real call's loop was seen stalled 97 ms in a flush): the off-loop thread is started
    by configure(), and flush()/shutdown() on a loop only queue work for it."""
    loop_thread = threading.get_ident()
    started: list[str] = []
    real_start = threading.Thread.start

    def spy(self: threading.Thread) -> None:
        if threading.get_ident() == loop_thread:
            started.append(self.name)
        real_start(self)

    with closed_port() as port:
        handle = telemetry.configure(exporter="otlp", endpoint=f"http://127.0.0.1:{port}", metrics_exporter="none",
                                     setup_logs=False)
        monkeypatch.setattr(threading.Thread, "start", spy)
        async with telemetry.call("off-loop"):
            pass
        assert await handle.flush(timeout=2) in (True, False)
        assert await handle.shutdown(timeout=1) in (True, False)
    assert started == [], f"threads started on the event loop: {started}"


async def test_undelivered_spans_are_counted() -> None:
    with closed_port() as port:
        handle = telemetry.configure(exporter="otlp", endpoint=f"http://127.0.0.1:{port}", metrics_exporter="none",
                                     setup_logs=False)
        async with telemetry.call("count"):
            pass
        await handle.flush(timeout=15)
        assert handle.dropped_spans >= 1
        await handle.shutdown(timeout=1)


async def test_spans_left_at_the_shutdown_deadline_are_counted_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import socket

    # A collector that accepts connections and never answers: the first export hangs in the exporter.
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(16)
    port = hung.getsockname()[1]
    try:
        handle = telemetry.configure(exporter="otlp", endpoint=f"http://127.0.0.1:{port}", metrics_exporter="none",
                                     setup_logs=False)

        @telemetry.traced(name="work", stage="llm")
        async def work() -> None:
            await asyncio.sleep(0)

        async with telemetry.call("deadline"):
            for _ in range(1500):
                await work()
        with caplog.at_level("WARNING", logger="voxpulse"):
            finished = await handle.shutdown(timeout=0.5)
        assert finished is False
        # nothing could be delivered: every span is accounted for as dropped, none silently lost
        assert handle.dropped_spans == 1501
        lines = [r for r in caplog.records if "deadline passed" in r.getMessage()]
        assert len(lines) == 1 and "1501 spans" in lines[0].getMessage()
    finally:
        hung.close()
    # the exporter was stopped at the deadline: no retry loop outlives it, nothing counted twice
    for t in [t for t in threading.enumerate() if t.name == "voxpulse-flush"]:
        await asyncio.to_thread(t.join, 10)
    assert not [t for t in threading.enumerate() if t.name == "voxpulse-flush" and t.is_alive()]
    assert handle.dropped_spans == 1501


async def test_queue_full_warning_carries_no_call_id() -> None:
    import logging

    from telemetry._processors import QueueingSpanProcessor, SafeExporter
    from telemetry.redaction import Redactor

    seen: list[object] = []

    class Grab(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            from telemetry.logs import _ContextFilter

            _ContextFilter().filter(record)  # what the JSON log handler would add
            seen.append((getattr(record, "call_id", None), getattr(record, "trace_id", None)))

    release = threading.Event()

    class Stuck(SpanExporter):
        def export(self, spans: object) -> SpanExportResult:
            release.wait(5)
            return SpanExportResult.SUCCESS

    grab = Grab(level=logging.WARNING)
    logging.getLogger("voxpulse.export").addHandler(grab)
    proc = QueueingSpanProcessor(SafeExporter(Stuck(), Redactor()), max_queue_size=4,
                                 schedule_delay_ms=60_000, max_export_batch_size=4)
    try:
        handle = telemetry.configure(exporter="none", metrics_exporter="none", setup_logs=False,
                                     additional_span_processors=[proc])
        async with telemetry.call("queue-full"):
            for _ in range(20):
                with STATE.tracer.start_as_current_span("s"):
                    pass
        assert proc.dropped > 0
        assert seen and all(ids == (None, None) for ids in seen)
        release.set()
        await handle.shutdown(timeout=2)
    finally:
        release.set()
        logging.getLogger("voxpulse.export").removeHandler(grab)


def test_configure_masks_the_handler_it_finds_instead_of_adding_one() -> None:
    """A LiveKit job process: LiveKit's handler (it forwards records to the worker) is on the root
    logger; configure() masks it and adds no second, VoxPulse handler."""
    import logging

    from telemetry import logs

    root = logging.getLogger()
    saved = list(root.handlers)
    out = io.StringIO()
    theirs = logging.StreamHandler(out)
    root.handlers = [theirs]
    try:
        telemetry.configure(exporter="none", metrics_exporter="none")
        assert root.handlers == [theirs]
        logging.getLogger("app").warning("room sip-_+380501234567_Xa9")
    finally:
        root.handlers = saved
        theirs.removeFilter(logs._MASK_FILTER)
        for name in logs.LIVEKIT_LOGGERS:
            logging.getLogger(name).removeFilter(logs._MASK_FILTER)
    assert out.getvalue().strip() == "room sip-_+380***567_Xa9"
