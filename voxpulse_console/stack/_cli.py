"""``voxpulse stack up|down|status|logs|env|exec|build|restart`` (:func:`register_cli`), also
``python -m voxpulse_console.stack``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence

from voxpulse_console import settings
from voxpulse_console.stack import _media as media
from voxpulse_console.stack._catalogue import (
    COMPONENTS,
    LOOPBACK,
    OPTIONAL,
    TRACE_STORES,
    StackError,
    ensure_built,
    livekit_env,
)
from voxpulse_console.stack._layout import DEFAULT_STATE_DIR, env_file, state_path
from voxpulse_console.stack._services import SERVICES, write_env
from voxpulse_console.stack._services import env_file as services_env_file
from voxpulse_console.stack._supervisor import (
    ComponentStatus,
    component_names,
    down,
    logs,
    media_namespace,
    restart,
    status,
    stop,
    up,
)
from voxpulse_console.stack._topology import MAX_COLLECTORS

__all__ = ["main", "observability_url", "register_cli"]



def observability_url(env: Mapping[str, str] | None = None) -> str:
    """Where agents send LiveKit's observability upload: the stack's insights receiver, at
    ``VOXPULSE_INSIGHTS_LISTEN`` when set, else on ``VOXPULSE_STACK_BIND`` (``up(bind=...)``'s address)
    or the loopback; a wildcard address is given as the loopback."""
    env = os.environ if env is None else env
    found = settings.INSIGHTS_LISTEN.raw(env)
    if found:
        host, _, port = found[1].rpartition(":")
    else:
        host, _, port = settings.DEFAULT_INSIGHTS_LISTEN.rpartition(":")
        host = env.get("VOXPULSE_STACK_BIND") or host
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "::"):
        host = LOOPBACK
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _print_status(rows: list[ComponentStatus]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # pragma: no cover - rich is a dependency, but keep the module stdlib-only
        for r in rows:
            state = "ready" if r.ready else ("running" if r.running else "stopped")
            state = "restarting" if r.running and r.pid is None else state
            print(f"{r.name:13} {state:8} pid={r.pid or '-':<8} restarts={r.restarts:<3} {r.url}  log={r.log}")
        return
    table = Table(title="VoxPulse stack")
    for col in ("component", "state", "pid", "restarts", "ready endpoint", "binary", "log"):
        table.add_column(col, overflow="fold")
    for r in rows:
        state = "[green]ready" if r.ready else ("[yellow]running" if r.running else "[red]stopped")
        if r.running and r.pid is None:
            state = "[yellow]restarting"
        table.add_row(r.name, state, str(r.pid or "-"), str(r.restarts), r.url, str(r.binary or "missing"), str(r.log))
    Console().print(table)


def _cmd(args: argparse.Namespace) -> int:
    state_dir = args.state_dir
    comps = getattr(args, "components", None) or None
    try:
        if args.stack_cmd == "up":
            if args.docker:
                up(use_docker=True)
            else:
                if args.build:
                    ensure_built()
                env = {"VOXPULSE_SPANMETRICS_FLUSH": args.flush} if args.flush else {}
                if args.sampling_percent is not None:
                    env["VOXPULSE_TRACE_SAMPLING_PERCENT"] = f"{args.sampling_percent:g}"
                result = up(comps, state_dir=state_dir, wait_s=args.wait, env=env or None,
                            collectors=args.collectors, without_livekit=args.without_livekit,
                            bind=args.bind, allow_plain_http=args.allow_plain_http, trace_store=args.trace_store)
                for name, what in result.items():
                    print(f"{name}: {what}")
            _print_status(status(state_dir=state_dir))
        elif args.stack_cmd == "down":
            stopped = down(comps, state_dir=state_dir, use_docker=args.docker)
            print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
        elif args.stack_cmd == "status":
            rows = status(state_dir=state_dir)
            _print_status(rows)
            return 0 if all(r.ready for r in rows) else 3
        elif args.stack_cmd == "logs":
            for name in comps or component_names(None, state=state_path(state_dir)):
                print(f"==> {name} <==")
                print(logs(name, args.lines, state_dir=state_dir))
        elif args.stack_cmd == "restart":
            for name in comps or component_names(None, state=state_path(state_dir)):
                print(f"{name}: {restart(name, state_dir=state_dir, wait_s=args.wait)}")
        elif args.stack_cmd == "env":
            env = livekit_env(state_dir)
            if not env:
                print(f"no LiveKit keys yet in {env_file(state_path(state_dir))}: `voxpulse stack up` creates them",
                      file=sys.stderr)
                return 1
            for key, value in env.items():
                print(f"{key}={value}")
            print(f"LIVEKIT_OBSERVABILITY_URL={observability_url()}")
        elif args.stack_cmd == "services":
            return _services(args.action, state_dir)
        elif args.stack_cmd == "exec":
            argv = args.argv[1:] if args.argv[:1] == ["--"] else args.argv
            if not argv:
                print("usage: voxpulse stack exec -- COMMAND [ARG...]", file=sys.stderr)
                return 2
            try:
                prefix = media_namespace(state_dir).prepare(os.environ)
            except media.MediaError as exc:
                raise StackError(str(exc)) from exc
            os.execvp((prefix or argv)[0], [*prefix, *argv])
        elif args.stack_cmd == "build":
            found = ensure_built(with_linter=args.with_linter, with_compose=args.with_compose)
            for tool, path in found.items():
                print(f"{tool:17} {path or 'missing'}")
        else:  # pragma: no cover - argparse enforces the choices
            return 2
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


SERVICE_ACTIONS = ("start", "stop", "status", "env", "env-path", "start-postgres", "stop-postgres", "start-redis",
                   "stop-redis")


def _say(message: str) -> None:
    print(f"[services] {message}", file=sys.stderr, flush=True)


def _services(action: str, state_dir: str | None) -> int:
    """``voxpulse stack services ACTION`` (scripts/services.sh's commands): PostgreSQL and Redis."""
    state = state_path(state_dir)
    if action in ("start", "start-postgres", "start-redis"):
        names = list(SERVICES) if action == "start" else [action.removeprefix("start-")]
        for name, what in up(names, state_dir=state, wait_s=60).items():
            _say(f"{name} {'already running' if what == 'running' else 'started'}")
        if action == "start":
            print(write_env(state))
    elif action in ("stop", "stop-postgres", "stop-redis"):
        names = list(reversed(SERVICES)) if action == "stop" else [action.removeprefix("stop-")]
        for name in names:
            _say(f"{name} {'stopped' if stop(name, state_dir=state) else 'not running'}")
    elif action == "status":
        rows = {r.name: r for r in status(state_dir=state)}
        for name in SERVICES:
            row = rows.get(name)
            print(f"{name}: " + (f"running (pid {row.pid}, {row.url}, restarts {row.restarts})" if row else "stopped"))
        return 0 if all(n in rows and rows[n].ready for n in SERVICES) else 1
    elif action == "env":
        try:
            print(services_env_file(state).read_text(encoding="utf-8"), end="")
        except OSError:
            _say(f"no env file yet ({services_env_file(state)}): `voxpulse stack services start` writes it")
            return 1
    elif action == "env-path":
        print(services_env_file(state))
    return 0


def register_cli(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Add ``stack up|down|status|logs|env|restart|build`` to a CLI's subparsers.

    The handler is set as ``func`` (``args.func(args) -> int`` exit code).
    """
    p = subparsers.add_parser(
        "stack", help="run the collector, Jaeger, Prometheus, Alertmanager and LiveKit natively")
    p.set_defaults(func=_cmd)
    sub = p.add_subparsers(dest="stack_cmd", required=True)

    def common(sp: argparse.ArgumentParser, *, components: bool = True) -> None:
        sp.add_argument(
            "--state-dir",
            default=None,
            help="state, logs, pid files (default $VOXPULSE_STACK_DIR, else $VOXPULSE_STATE_DIR/stack, "
            f"else {DEFAULT_STATE_DIR})",
        )
        if components:
            sp.add_argument(
                "components",
                nargs="*",
                metavar="COMPONENT",
                help=f"any of {', '.join({**COMPONENTS, **OPTIONAL})} (default: all; ui when VOXPULSE_UI_USERS is set)",
            )

    sp = sub.add_parser("up", help="start what is not running and wait until ready")
    common(sp)
    sp.add_argument("--wait", type=float, default=60, help="seconds to wait for readiness")
    sp.add_argument("--build", action="store_true", help="run scripts/build-backends.sh first")
    sp.add_argument(
        "--flush", default=None,
        help="span metrics flush interval (default 4s; keep it above the collector jobs' 3 s scrape)",
    )
    sp.add_argument(
        "--docker", action="store_true", help="docker compose up -d instead (needs a Docker engine)"
    )
    sp.add_argument(
        "--without-livekit", action="store_true",
        help="no LiveKit server of ours and no media namespace: for agents on your own LiveKit server "
        "(LiveKit Cloud or self-hosted) exporting to this stack",
    )
    sp.add_argument(
        "--bind", default=None, metavar="ADDRESS",
        help="where the console and the collector's OTLP ports listen (default $VOXPULSE_STACK_BIND, else "
        "127.0.0.1); another address needs the console's TLS (VOXPULSE_UI_TLS_CERT/KEY) or --allow-plain-http",
    )
    sp.add_argument(
        "--allow-plain-http", action="store_true",
        help="let --bind open the console and OTLP to the network without TLS (VOXPULSE_ALLOW_PLAIN_HTTP=1)",
    )
    sp.add_argument(
        "--collectors", type=int, default=None, metavar="N",
        help=f"scale-out topology: a load-balancing collector and N processing collectors (1-{MAX_COLLECTORS}; "
        "0: one collector, the default); ports in docs/scaling.md",
    )
    sp.add_argument(
        "--trace-store", choices=TRACE_STORES, default=None,
        help="where Jaeger keeps the spans: badger (the local disk, the default) or cassandra (a Cassandra "
        "node of the stack's own, the store that scales out; docs/scaling.md, section 5); kept until "
        "`stack down`",
    )
    sp.add_argument(
        "--sampling-percent", type=float, default=None, metavar="P",
        help="processing collectors keep P %% of the traces no rule keeps (VOXPULSE_TRACE_SAMPLING_PERCENT; "
        "set the same for the agents)",
    )


    sp = sub.add_parser("down", help="stop the stack (SIGTERM, then SIGKILL)")
    common(sp)
    sp.add_argument("--docker", action="store_true", help="docker compose down")

    sp = sub.add_parser("status", help="what runs and what is ready (exit 3 when not all ready)")
    common(sp, components=False)

    sp = sub.add_parser("logs", help="the last lines of each component's log")
    common(sp)
    sp.add_argument("-n", "--lines", type=int, default=40)

    sp = sub.add_parser("restart", help="stop and start components")
    common(sp)
    sp.add_argument("--wait", type=float, default=60)

    sp = sub.add_parser("env", help="print the stack's env file (LiveKit URL, API key and secret) and "
                        "LIVEKIT_OBSERVABILITY_URL (the insights receiver)")
    common(sp, components=False)

    sp = sub.add_parser(
        "services", help="PostgreSQL and Redis (the call history): start, stop, status, env, env-path, "
        "start-postgres, ... (scripts/services.sh runs these); not part of stack up/down")
    common(sp, components=False)
    sp.add_argument("action", choices=SERVICE_ACTIONS, nargs="?", default="start")

    sp = sub.add_parser(
        "exec", help="run a command in the media namespace, next to the stack's LiveKit server (an agent of "
        "yours); the loopback ports its environment names are reachable there")
    common(sp, components=False)
    sp.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND [ARG...]")

    sp = sub.add_parser("build", help="build or reuse the binaries (scripts/build-backends.sh)")
    common(sp, components=False)
    sp.add_argument("--with-linter", action="store_true", help="also Grafana's dashboard-linter")
    sp.add_argument("--with-compose", action="store_true", help="also the docker compose CLI plugin")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m voxpulse_console.stack")
    subparsers = parser.add_subparsers(dest="cmd", required=True)
    register_cli(subparsers)
    args = parser.parse_args(["stack", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args))
