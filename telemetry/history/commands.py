"""CLI hook: ``voxpulse db migrate``, ``voxpulse db stats``, ``voxpulse calls``.

The ``voxpulse`` CLI calls :func:`register_cli` with its argparse subparsers; every command sets
``func`` (``args.func(args) -> int``, exit status).
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from telemetry import _env

__all__ = ["main", "register_cli"]


def _dsn(args: argparse.Namespace) -> str:
    dsn: str | None = _env.text(_env.DATABASE_URL, args.dsn)
    if not dsn:
        raise SystemExit("no database: pass --dsn or set DATABASE_URL (scripts/services.sh writes one)")
    return dsn


def _add_dsn(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dsn", help="PostgreSQL DSN (default: $VOXPULSE_DATABASE_URL or $DATABASE_URL)")


def register_cli(subparsers: Any) -> None:
    """Add ``db migrate``, ``db stats`` and ``calls`` to an argparse subparsers object."""
    db = subparsers.add_parser("db", help="call-history database (PostgreSQL)")
    dbsub = db.add_subparsers(dest="db_command", required=True)
    p = dbsub.add_parser("migrate", help="apply schema migrations and create partitions")
    _add_dsn(p)
    p.add_argument("--months-ahead", type=int, default=2, help="future monthly partitions to create")
    p.set_defaults(func=_cmd_migrate)
    p = dbsub.add_parser("stats", help="refresh daily_stats and print them")
    _add_dsn(p)
    p.add_argument("--days", type=int, default=7, help="days to recompute (today included)")
    p.set_defaults(func=_cmd_stats)
    p = subparsers.add_parser("calls", help="recent calls from the call history")
    _add_dsn(p)
    p.add_argument("--limit", type=int, default=20)
    p.set_defaults(func=_cmd_calls)


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True))

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def _cmd_migrate(args: argparse.Namespace) -> int:
    from telemetry.history.schema import migrate

    applied = asyncio.run(migrate(_dsn(args), months_ahead=args.months_ahead))
    print(f"applied migrations: {', '.join(f'{v:04d}' for v in applied)}" if applied else "schema up to date")
    return 0


def _cmd_stats(args: argparse.Namespace) -> int:
    from telemetry.history.schema import connection, refresh_daily_stats

    async def run() -> list[Any]:
        dsn = _dsn(args)
        await refresh_daily_stats(dsn, days=args.days)
        async with connection(dsn) as conn:
            rows: list[Any] = await conn.fetch(
                "SELECT * FROM daily_stats ORDER BY day DESC LIMIT $1", args.days)
            return rows

    rows = asyncio.run(run())
    cols = ["day", "calls", "resolved_by_bot", "transferred", "abandoned", "failed", "avg_cost",
            "total_cost", "avg_duration", "app"]
    print(_table(cols, [[_fmt(r[c]) for c in cols] for r in rows]))
    return 0


def _cmd_calls(args: argparse.Namespace) -> int:
    from telemetry.history.schema import recent_calls
    from telemetry.redaction import redact

    rows = asyncio.run(recent_calls(_dsn(args), limit=args.limit))
    cols = ["started_at", "call_id", "phone", "direction", "status", "outcome", "scenario",
            "duration_seconds", "cost_usd", "turns", "tool_calls", "trace_id"]
    out = []
    for r in rows:
        r = dict(r)
        r["phone"] = redact(r["phone"]) if r.get("phone") else None  # PII masked on screen
        out.append([_fmt(r.get(c)) for c in cols])
    print(_table(cols, out))
    return 0


def _fmt(v: object) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.2f}"
    if hasattr(v, "isoformat") and hasattr(v, "hour"):
        return v.strftime("%Y-%m-%d %H:%M:%S")  # type: ignore[attr-defined, no-any-return]
    return str(v)



def main(argv: list[str] | None = None) -> int:
    """``python -m telemetry.history db migrate|stats``, ``python -m telemetry.history calls``."""
    parser = argparse.ArgumentParser(prog="python -m telemetry.history")
    register_cli(parser.add_subparsers(dest="command", required=True))
    ns = parser.parse_args(argv)
    code: int = ns.func(ns)
    return code
