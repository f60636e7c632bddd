"""Self-hosted Agent insights: the receiver of LiveKit Agents' observability upload (protocol v0).

    voxpulse insights-receiver [--listen 127.0.0.1:9097] [--dsn postgresql://...]
    voxpulse insights erase CALL_ID --by NAME [--reason TEXT]     # an erasure request, audited
    voxpulse insights prune                                       # retention now (the receiver runs it hourly)

An agent on livekit-agents 1.8.x with ``LIVEKIT_OBSERVABILITY_URL=http://127.0.0.1:9097`` (and
``session.start(record=True)`` on a self-hosted LiveKit server) sends here what it sends LiveKit Cloud:

* ``POST /observability/{traces,metrics}/otlp/v0`` (OTLP/HTTP protobuf, gzip): forwarded to the
  collector's OTLP/HTTP endpoint (``telemetry._setup.resolve``: the library's own), so LiveKit's spans
  join VoxPulse's pipeline (span metrics, the trace store). Its metrics are DELTA temporality;
* ``POST /observability/logs/otlp/v0``: the transcript items, tags, judges' verdicts and outcome,
  merged into the call's ``insights_calls`` row; not forwarded (personal data, and the collector
  has no logs pipeline);
* ``POST /observability/recordings/v0`` (multipart: ``header`` MetricsRecordingHeader,
  ``chat_history.json``, ``recording.ogg``): the transcript and (``VOXPULSE_INSIGHTS_AUDIO=true``) the
  audio on the local disk, a truncated or corrupt Ogg kept and marked broken.

Each request's Bearer JWT must be signed by the stack's LiveKit key (``voxpulse stack env``) or one of
``VOXPULSE_INSIGHTS_KEYS`` and grant ``observability.write``: else 401 and nothing stored. A body over
``VOXPULSE_INSIGHTS_MAX_BODY_MB``: 413. A call is keyed by the room's id (else the job's), never the
room name. Rows live in the one migration tree (``0007_insights.sql``).

Its metrics (``voxpulse.insights.verdicts{judge, verdict}``, ``.outcomes``, ``.tags``, ``.uploads``;
:mod:`._metrics`) carry no per-call label and count each call's verdict, outcome and tag once; they go
by OTLP to the collector (``telemetry.configure``). ``voxpulse stack up`` runs the receiver as the
component ``insights-receiver``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from telemetry import _env
from voxpulse_console import settings
from voxpulse_console.insights._objects import LocalObjects, ObjectStore, ObjectStoreError, S3Objects, S3Settings
from voxpulse_console.insights._server import InsightsConfig, make_app, otlp_path, serve, start
from voxpulse_console.insights._wire import AuthError, call_id_for, inspect_ogg, parse_keys, read_header, verify_token

__all__ = [
    "AuthError",
    "InsightsConfig",
    "LocalObjects",
    "ObjectStore",
    "ObjectStoreError",
    "S3Objects",
    "S3Settings",
    "accepted_keys",
    "call_id_for",
    "config_from_env",
    "inspect_ogg",
    "make_app",
    "object_store",
    "otlp_path",
    "parse_keys",
    "read_header",
    "register_cli",
    "s3_from_env",
    "serve",
    "start",
    "verify_token",
]

log = logging.getLogger("voxpulse.insights")

#: ``service.name`` of the receiver's own metrics (``service_name`` in Prometheus)
SERVICE_NAME = "voxpulse-insights-receiver"


def accepted_keys(env: Mapping[str, str] | None = None, *, state_dir: Path | None = None) -> dict[str, str]:
    """The API keys whose tokens are accepted: the stack's LiveKit key and ``VOXPULSE_INSIGHTS_KEYS``."""
    from voxpulse_console.stack import livekit_env

    keys: dict[str, str] = {}
    stack = livekit_env(state_dir)
    if stack:
        keys[stack["LIVEKIT_API_KEY"]] = stack["LIVEKIT_API_SECRET"]
    keys.update(parse_keys(settings.text(settings.INSIGHTS_KEYS, env=env)))
    return keys


def default_folder(env: Mapping[str, str] | None = None) -> Path:
    """``VOXPULSE_INSIGHTS_DIR``, else ``insights/`` in the stack's state folder (``voxpulse stack``'s
    ``--state-dir`` default: ``$VOXPULSE_STACK_DIR``, else ``$VOXPULSE_STATE_DIR/stack``)."""
    from voxpulse_console.stack import state_dir

    own = settings.text(settings.INSIGHTS_DIR, env=env)
    p = Path(own) if own else Path(state_dir(None)) / "insights"
    return p if p.is_absolute() else Path.cwd() / p


def s3_from_env(env: Mapping[str, str] | None = None) -> S3Settings | None:
    """The bucket of ``VOXPULSE_INSIGHTS_S3_*``, or None when no bucket is set (the local folder).
    ValueError when a bucket is set without its endpoint or either key (there are no defaults)."""
    bucket = settings.text(settings.INSIGHTS_S3_BUCKET, env=env)
    if not bucket:
        return None
    need = (settings.INSIGHTS_S3_ENDPOINT, settings.INSIGHTS_S3_ACCESS_KEY_ID, settings.INSIGHTS_S3_SECRET_ACCESS_KEY)
    values = {var.name: settings.text(var, env=env) for var in need}
    missing = [name for name, value in values.items() if not value]
    if missing:
        raise ValueError(f"{settings.INSIGHTS_S3_BUCKET.name} is set but {', '.join(missing)} is not")
    endpoint, key_id, secret = (str(values[var.name]) for var in need)
    return S3Settings(bucket=str(bucket), endpoint=endpoint, region=str(settings.text(settings.INSIGHTS_S3_REGION,
                      env=env)), access_key_id=key_id, secret_access_key=secret)


def object_store(env: Mapping[str, str] | None = None) -> ObjectStore:
    """Where the calls' files are: the S3 bucket when one is configured, else the local folder."""
    s3 = s3_from_env(env)
    return S3Objects(s3) if s3 is not None else LocalObjects(default_folder(env))


def config_from_env(dsn: str | None, *, forward: bool = True) -> InsightsConfig:
    """The receiver's settings from the environment (``voxpulse_console.settings``)."""
    from telemetry._setup import resolve

    targets: dict[str, str] = {}
    if forward:
        resolved = resolve(protocol="http/protobuf")
        targets = {"traces": resolved.traces_endpoint, "metrics": resolved.metrics_endpoint}
    return InsightsConfig(
        dsn=dsn, keys=accepted_keys(), folder=default_folder(),
        keep_audio=_env.flag(settings.INSIGHTS_AUDIO),
        max_body=int(_env.number(settings.INSIGHTS_MAX_BODY_MB, minimum=1) * 1024 * 1024),
        retention_days=_env.number(settings.INSIGHTS_RETENTION_DAYS), forward=targets,
        objects=S3Objects(s3) if (s3 := s3_from_env()) is not None else None,
    )


def _dsn(arg: str | None) -> str | None:
    from telemetry.history import database_url

    return database_url(arg)


def _run_receiver(args: argparse.Namespace) -> int:
    import telemetry

    logging.basicConfig(level=str(_env.text(_env.VOXPULSE_LOG_LEVEL)).upper())
    # the receiver's own metrics (voxpulse.insights.*) go where the agents' go: OTLP to the collector
    telemetry.configure(service_name=SERVICE_NAME, livekit=False, libraries=False)
    config = config_from_env(_dsn(args.dsn), forward=not args.no_forward)
    if not config.keys:
        log.warning("no LiveKit key to verify tokens with: `voxpulse stack up` creates the stack's, or set %s; "
                    "every upload is refused (401)", settings.INSIGHTS_KEYS.name)
    listen = args.listen or str(settings.text(settings.INSIGHTS_LISTEN))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(config, listen))
    return 0


def _run_admin(args: argparse.Namespace) -> int:
    import asyncpg

    from telemetry.history import migrate
    from voxpulse_console.insights import _store

    dsn = _dsn(args.dsn)
    if dsn is None:
        print("error: no database: pass --dsn or set DATABASE_URL")
        return 2

    async def run() -> int:
        folder = object_store()
        conn = await asyncpg.connect(dsn, timeout=5)
        try:
            await migrate(conn)
            if args.insights_cmd == "erase":
                rows, files = await _store.erase(conn, folder, args.call_id, requested_by=args.by, reason=args.reason)
                print(f"erased {args.call_id}: {rows} row(s), {files} file(s); recorded in insights_erasures")
            else:
                gone = await _store.delete_expired(conn, folder, _env.number(settings.INSIGHTS_RETENTION_DAYS))
                print(f"deleted {len(gone)} call(s) past retention")
        finally:
            await conn.close()
            await folder.aclose()
        return 0

    return asyncio.run(run())


def register_cli(subparsers: Any) -> None:
    """Add ``insights-receiver`` and ``insights erase|prune`` to the ``voxpulse`` CLI."""
    p = subparsers.add_parser("insights-receiver", help="receive LiveKit Agents' observability upload (Agent insights)")
    p.add_argument("--listen", default=None, help=f"host:port (default ${settings.INSIGHTS_LISTEN.name} or "
                   f"{settings.DEFAULT_INSIGHTS_LISTEN})")
    p.add_argument("--dsn", help="PostgreSQL DSN (default: $VOXPULSE_DATABASE_URL or $DATABASE_URL)")
    p.add_argument("--no-forward", action="store_true", help="do not forward traces and metrics to the collector")
    p.set_defaults(func=_run_receiver)

    a = subparsers.add_parser("insights", help="the received calls' audio and transcripts: erasure, retention")
    a.add_argument("--dsn", help="PostgreSQL DSN (default: $VOXPULSE_DATABASE_URL or $DATABASE_URL)")
    sub = a.add_subparsers(dest="insights_cmd", required=True)
    e = sub.add_parser("erase", help="delete one call's audio, transcript, tags and verdicts (audited)")
    e.add_argument("call_id")
    e.add_argument("--by", required=True, help="who asked (kept in insights_erasures)")
    e.add_argument("--reason", default=None)
    sub.add_parser("prune", help=f"delete calls older than ${settings.INSIGHTS_RETENTION_DAYS.name} days")
    a.set_defaults(func=_run_admin)
