"""The voxpulse CLI: the command wiring (no backend needed). The waterfall: tests/console/test_waterfall.py."""

from __future__ import annotations

from voxpulse_console.cli import build_parser


def test_commands_are_wired() -> None:
    parser = build_parser()
    args = parser.parse_args(["simulate", "--calls", "3", "--concurrency", "2", "--exporter", "none"])
    assert (args.calls, args.concurrency, args.exporter) == (3, 2, "none")
    assert parser.parse_args(["trace", "sim-1-0001"]).call_id == "sim-1-0001"
    args = parser.parse_args(["trace", "sim-1-0001", "--trace-store", "tempo", "--trace-store-url", "http://t:3200"])
    assert (args.trace_store, args.trace_store_url) == ("tempo", "http://t:3200")
    assert parser.parse_args(["demo"]).trace_store is None  # VOXPULSE_TRACE_STORE, else jaeger
    assert parser.parse_args(["demo", "--no-stack"]).no_stack
    commands = set(parser._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    assert {"simulate", "demo", "trace", "stack", "calls"} <= commands
