"""The receiver's aiohttp application: LiveKit Agents' four v0 endpoints, ``/healthz``.

Order of checks on every upload: the token (401, nothing read or stored), then the declared size
(413), then the body (aiohttp refuses more than the limit while reading: 413). Every answer is
counted (``voxpulse.insights.uploads`` by kind and status), and what a logs upload stored that was
not stored before (verdicts, outcomes, tags: :mod:`._metrics`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from opentelemetry.metrics import MeterProvider

from voxpulse_console.insights import _store, _wire
from voxpulse_console.insights._fold import DeltaFolder
from voxpulse_console.insights._metrics import InsightsMetrics
from voxpulse_console.insights._objects import ObjectStore, ObjectStoreError
from voxpulse_console.insights._waveform import waveform

__all__ = ["InsightsConfig", "make_app", "serve", "start"]

log = logging.getLogger("voxpulse.insights")

OTLP_SIGNALS: Final = ("traces", "logs", "metrics")
RECORDINGS_PATH: Final = "/observability/recordings/v0"


def otlp_path(signal: str) -> str:
    return f"/observability/{signal}/otlp/v0"


@dataclass(frozen=True)
class InsightsConfig:
    dsn: str | None
    keys: Mapping[str, str] = field(repr=False)
    folder: Path
    keep_audio: bool = False
    max_body: int = 100 * 1024 * 1024
    retention_days: float = 30.0
    #: OTLP/HTTP URLs of the collector (``.../v1/traces``, ``.../v1/metrics``); None: not forwarded
    forward: Mapping[str, str] = field(default_factory=dict)
    prune_every_s: float = 3600.0
    #: where the metrics go: None, the process's (``telemetry.configure``); tests pass their own
    meter_provider: MeterProvider | None = field(default=None, repr=False, compare=False)
    #: distinct values per metric label (judge, verdict, outcome, tag) before the rest are ``_OTHER``
    label_values: int = 50
    #: where the recordings and transcripts go: None, ``folder`` on the local disk; else (an S3 bucket,
    #: ``VOXPULSE_INSIGHTS_S3_BUCKET``) that store, closed with the receiver
    objects: ObjectStore | None = field(default=None, compare=False)


def make_app(config: InsightsConfig) -> Any:
    import asyncpg
    import httpx
    from aiohttp import web
    from aiohttp.web_protocol import RequestPayloadError

    from telemetry.history import migrate

    state: dict[str, Any] = {"pool": None, "http": None, "pruner": None}
    files: Path | ObjectStore = config.objects if config.objects is not None else config.folder
    counters = InsightsMetrics(config.meter_provider, limit=config.label_values)
    folder = DeltaFolder()  # LiveKit's per-job delta metrics -> one cumulative series each (_fold)
    lock = asyncio.Lock()
    db_errors = (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError)

    async def pool() -> Any:
        if config.dsn is None:
            raise OSError("no database configured (set DATABASE_URL)")
        async with lock:
            if state["pool"] is None:
                new = await asyncpg.create_pool(config.dsn, min_size=0, max_size=4, timeout=5, command_timeout=30)
                try:
                    await migrate(new)
                except BaseException:
                    await new.close()
                    raise
                state["pool"] = new
            return state["pool"]

    def refuse(status: int, message: str) -> web.Response:
        return web.json_response({"error": message}, status=status)

    async def admitted(request: web.Request) -> web.Response | bytes:
        """The body once the token and the size pass; else the refusal."""
        try:
            _wire.verify_token(request.headers.get("Authorization"), config.keys)
        except _wire.AuthError as exc:
            log.warning("refused an upload to %s: %s", request.path, exc)
            return refuse(401, str(exc))
        if (request.content_length or 0) > config.max_body:
            return refuse(413, f"body over {config.max_body} bytes")
        try:
            return await request.read()  # decoded (gzip) and bounded by client_max_size
        except web.HTTPRequestEntityTooLarge:
            return refuse(413, f"body over {config.max_body} bytes")
        except RequestPayloadError as exc:  # e.g. a body that says gzip and is not
            return refuse(400, f"unreadable body ({exc})")

    async def forward(signal: str, body: bytes) -> web.Response:
        url = config.forward.get(signal)
        if url is None:
            return web.Response(status=200, content_type="application/x-protobuf")
        if state["http"] is None:
            state["http"] = httpx.AsyncClient(timeout=10)
        try:
            resp = await state["http"].post(url, content=body, headers={"Content-Type": "application/x-protobuf"})
        except httpx.HTTPError as exc:
            log.warning("collector unreachable at %s (%s); the agent's exporter retries", url, exc)
            return refuse(503, "collector unavailable")
        return web.Response(status=resp.status_code, body=resp.content, content_type="application/x-protobuf")

    def otlp(signal: str) -> Any:
        async def handler(request: web.Request) -> web.Response:
            body = await admitted(request)
            if isinstance(body, web.Response):
                return body
            if signal == "traces":
                try:
                    stamped = _wire.stamp_spans(body)
                except ValueError as exc:
                    return refuse(400, str(exc))
                if stamped is None:  # nothing VoxPulse did not export itself
                    return web.Response(status=200, content_type="application/x-protobuf")
                return await forward(signal, stamped)
            if signal == "metrics":
                try:
                    folded = folder.fold(body)
                except ValueError as exc:
                    return refuse(400, str(exc))
                if folded is None:
                    return web.Response(status=200, content_type="application/x-protobuf")
                return await forward(signal, folded)
            if signal != "logs":
                return await forward(signal, body)
            # the transcript, tags, verdicts and outcome: kept against the call, not forwarded
            # (personal data stays out of the trace store; the collector has no logs pipeline)
            try:
                calls = _wire.call_events(body)
            except ValueError as exc:
                return refuse(400, str(exc))
            if calls:
                try:
                    async with (await pool()).acquire() as conn:
                        new = await _store.save_events(conn, calls)
                except db_errors as exc:
                    log.warning("insights_calls unavailable (%s); the agent's exporter retries", exc)
                    return refuse(503, "database unavailable")
                counters.stored(new)  # committed: counted once, whatever is uploaded again
            return web.Response(status=200, content_type="application/x-protobuf")

        return handler

    async def recording(request: web.Request) -> web.Response:
        body = await admitted(request)
        if isinstance(body, web.Response):
            return body
        try:
            parts = _wire.read_multipart(request.headers.get("Content-Type", ""), body)
            header = _wire.read_header(parts["header"][1])
        except (ValueError, KeyError) as exc:
            return refuse(400, f"not a recording upload: {exc!r}")
        chat = parts.get("chat_history", (None, None))[1]
        audio = parts.get("audio", (None, None))[1]
        ogg = await asyncio.to_thread(_wire.inspect_ogg, audio) if audio is not None and config.keep_audio else None
        # the waveform the call page draws at once (decoding there takes seconds for a long call)
        wave = await asyncio.to_thread(waveform, audio) if ogg is not None and audio is not None else None
        try:
            async with (await pool()).acquire() as conn:
                call_id = await _store.save_recording(conn, files, header, chat=chat, audio=audio, ogg=ogg,
                                                      keep_audio=config.keep_audio, wave=wave)
        except ValueError as exc:
            return refuse(400, str(exc))
        except ObjectStoreError as exc:  # nothing stored: no row names files that are not there
            log.warning("object store unavailable (%s); this call's recording upload is lost", exc)
            return refuse(503, "object store unavailable")
        except db_errors as exc:
            log.warning("insights_calls unavailable (%s)", exc)
            return refuse(503, "database unavailable")
        if ogg is not None and not ogg.ok:
            log.warning("call %s: the recording is kept but broken (%s)", call_id, ogg.problem)
        return web.json_response({"call_id": call_id, "audio_broken": bool(ogg and not ogg.ok)})

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def prune_forever() -> None:
        while True:
            await asyncio.sleep(config.prune_every_s)
            try:
                async with (await pool()).acquire() as conn:
                    gone = await _store.delete_expired(conn, files, config.retention_days)
                if gone:
                    log.info("retention: deleted %d call(s) older than %s days", len(gone), config.retention_days)
            except db_errors as exc:
                log.warning("retention pass skipped (%s)", exc)

    async def on_startup(_: web.Application) -> None:
        if config.dsn is not None and config.retention_days > 0:
            state["pruner"] = asyncio.get_running_loop().create_task(prune_forever())

    async def close(_: web.Application) -> None:
        if state["pruner"] is not None:
            state["pruner"].cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await state["pruner"]
        if state["http"] is not None:
            await state["http"].aclose()
        if state["pool"] is not None:
            await state["pool"].close()
        if config.objects is not None:
            await config.objects.aclose()

    @web.middleware
    async def count_uploads(request: web.Request, handler: Any) -> Any:
        parts = request.path.split("/")
        kind = parts[2] if len(parts) > 3 and parts[1] == "observability" else None
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            if kind in (*OTLP_SIGNALS, "recordings"):
                counters.answered(kind, status)

    app = web.Application(client_max_size=config.max_body, middlewares=[count_uploads])
    for signal in OTLP_SIGNALS:
        app.router.add_post(otlp_path(signal), otlp(signal))
    app.router.add_post(RECORDINGS_PATH, recording)
    app.router.add_get("/healthz", health)
    app.on_startup.append(on_startup)
    app.on_cleanup.append(close)
    return app


async def start(config: InsightsConfig, listen: str) -> Any:
    """Start the receiver on ``listen`` (``host:0``: a free port); returns its aiohttp runner."""
    from aiohttp import web

    host, _, port = listen.rpartition(":")
    runner = web.AppRunner(make_app(config))
    await runner.setup()
    await web.TCPSite(runner, host or "127.0.0.1", int(port)).start()
    bound_host, bound_port = runner.addresses[0][:2]
    log.info("insights receiver on http://%s:%s (LIVEKIT_OBSERVABILITY_URL)", bound_host, bound_port)
    return runner


async def serve(config: InsightsConfig, listen: str) -> None:
    runner = await start(config, listen)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
