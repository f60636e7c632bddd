"""``voxpulse ui``: run the web console; ``voxpulse ui hash-password``: make a password hash.

    voxpulse ui [--listen 127.0.0.1:8090]          # needs VOXPULSE_UI_USERS (refuses to start without)
    voxpulse ui hash-password [--user NAME] [--pii] [--audio] # reads the password twice from the terminal (or stdin)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import logging
import signal
import ssl
import sys
from typing import Any

from telemetry import _env
from voxpulse_console import settings

__all__ = ["register_cli", "serve"]

log = logging.getLogger("voxpulse.console.ui")


async def serve(config: Any, *, ready: asyncio.Event | None = None, stop: asyncio.Event | None = None) -> None:
    """Run the console until ``stop`` is set (or SIGTERM/SIGINT)."""
    from aiohttp import web

    from voxpulse_console.ui.app import make_app, static_dir

    app = make_app(config)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    tls = None
    if config.tls_cert:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(config.tls_cert, config.tls_key)
    site = web.TCPSite(runner, config.host, config.port, ssl_context=tls)
    await site.start()
    if not (static_dir() / "index.html").is_file():
        log.warning("the frontend is not built (scripts/bootstrap.sh builds web/): pages answer 503")
    log.info("VoxPulse console on %s://%s (%d user(s))", config.scheme, config.listen, len(config.users))
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def _run(args: argparse.Namespace) -> int:
    from voxpulse_console.ui.auth import AuthConfigError
    from voxpulse_console.ui.config import UiConfig, UiConfigError

    logging.basicConfig(level=str(_env.text(_env.VOXPULSE_LOG_LEVEL)).upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = UiConfig.from_env(listen=args.listen)
    except (AuthConfigError, UiConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        print("the console does not start without credentials; see docs/console.md", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(config))
    except ssl.SSLError as exc:
        print(f"error: VOXPULSE_UI_TLS_CERT / VOXPULSE_UI_TLS_KEY: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"error: cannot listen on {config.listen}: {exc}", file=sys.stderr)
        return 1
    return 0


def _hash(args: argparse.Namespace) -> int:
    from voxpulse_console.ui.auth import hash_password

    if args.stdin or not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass("password: ")
        again = getpass.getpass("again: ")
        if password != again:
            print("error: the two passwords differ", file=sys.stderr)
            return 2
    if len(password) < 12:
        print("error: use at least 12 characters", file=sys.stderr)
        return 2
    encoded = hash_password(password)
    if args.user:
        perms = "+".join(p for p, on in (("pii", args.pii), ("audio", args.audio)) if on)
        print(f"{args.user}:{encoded}{':' + perms if perms else ''}")
    else:
        print(encoded)
    return 0


def register_cli(subparsers: Any) -> None:
    """Add ``ui`` (and ``ui hash-password``) to the ``voxpulse`` CLI."""
    p = subparsers.add_parser("ui", help="the web console (calls, call timelines, latency, alerts)")
    p.add_argument("--listen", default=None,
                   help=f"HOST:PORT (default ${settings.UI_LISTEN.name} or {settings.DEFAULT_UI_LISTEN})")
    p.set_defaults(func=_run)
    sub = p.add_subparsers(dest="ui_cmd")
    h = sub.add_parser("hash-password", help="print a password hash for VOXPULSE_UI_USERS")
    h.add_argument("--user", help="print a whole NAME:HASH entry")
    h.add_argument("--pii", action="store_true", help="with --user: may see raw phone numbers and transcripts")
    h.add_argument("--audio", action="store_true", help="with --user: may play and download calls' recordings")
    h.add_argument("--stdin", action="store_true", help="read the password from standard input")
    h.set_defaults(func=_hash)
    s = sub.add_parser("serve", help="run the console (the default)")
    s.add_argument("--listen", default=None, help="HOST:PORT")
    s.set_defaults(func=_run)
