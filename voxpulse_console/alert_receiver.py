"""Alertmanager webhook receiver: keeps every firing and resolved alert in PostgreSQL ``alerts_history``.

    voxpulse alerts-receiver [--listen 127.0.0.1:9095] [--dsn postgresql://...]
    voxpulse alertmanager-config --out .voxpulse/alertmanager/alertmanager.yml [--allow-missing]

``prometheus/alertmanager.yml`` sends every alert (``send_resolved: true``) to
``http://127.0.0.1:9095/alerts``. Each alert of a notification becomes one row per
``(fingerprint, starts_at, status)``; a replayed notification inserts nothing (``ON CONFLICT DO
NOTHING``), and a resolution also stamps ``resolved_at`` on the firing row. When PostgreSQL is
unreachable the receiver answers 503, so Alertmanager retries the notification later.

``alerts_history`` is the console's table, not the call history's, but its schema lives in the
database's one migration tree (``telemetry/history/migrations``), applied by its one runner
(:func:`telemetry.history.migrate`) when the receiver first reaches the database. The DSN is the
call history's (``telemetry.history.database_url()``: ``--dsn``, ``VOXPULSE_DATABASE_URL``, ``DATABASE_URL``).

``alertmanager-config`` renders the Alertmanager config with its secrets from the environment
(Alertmanager 0.25 has no ``bot_token_file`` for Telegram); see the header of
``prometheus/alertmanager.yml`` for the variables.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import stat
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from telemetry import _env
from voxpulse_console import settings
from voxpulse_console._paths import ConfigDirError, config_dir

__all__ = [
    "AlertRecord",
    "console_url",
    "insert_alerts",
    "parse_notification",
    "register_cli",
    "render_alertmanager_config",
    "serve",
    "start",
]

log = logging.getLogger("voxpulse.alert_receiver")

DEFAULT_LISTEN = settings.DEFAULT_ALERTS_RECEIVER_LISTEN
WEBHOOK_RECEIVER = "webhook"  # prometheus/alertmanager.yml's generic webhook (ALERT_WEBHOOK_URL)
TEMPLATE = Path("prometheus") / "alertmanager.yml"  # inside the config directory
MAX_BODY = 4 * 1024 * 1024


# --------------------------------------------------------------------------------------- parsing
class AlertRecord(dict[str, Any]):
    """One alerts_history row (column -> value)."""


def _ts(value: Any) -> dt.datetime | None:
    """Alertmanager timestamps (RFC 3339, up to nanoseconds); Go's zero time means 'none'."""
    if not value or not isinstance(value, str) or value.startswith("0001-01-01"):
        return None
    s = value.strip().replace("Z", "+00:00")
    date, sep, rest = s.partition(".")
    if sep:  # trim fractional seconds to microseconds
        digits = "".join(c for c in rest if c.isdigit())
        tz = rest[len(digits):]
        s = f"{date}.{digits[:6].ljust(6, '0')}{tz}"
    try:
        t = dt.datetime.fromisoformat(s)
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def _str_map(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): str(v) for k, v in value.items()}


def parse_notification(payload: Any) -> list[AlertRecord]:
    """Alertmanager webhook JSON (version 4) -> alerts_history rows. Raises ValueError when the
    payload is not a notification."""
    if not isinstance(payload, Mapping) or not isinstance(payload.get("alerts"), list):
        raise ValueError("not an Alertmanager notification: no alerts list")
    rows: list[AlertRecord] = []
    for alert in payload["alerts"]:
        if not isinstance(alert, Mapping):
            raise ValueError("alert is not an object")
        labels = _str_map(alert.get("labels"))
        annotations = _str_map(alert.get("annotations"))
        status = str(alert.get("status") or payload.get("status") or "")
        if status not in ("firing", "resolved"):
            raise ValueError(f"unknown alert status {status!r}")
        starts_at = _ts(alert.get("startsAt"))
        if starts_at is None:
            raise ValueError("alert without startsAt")
        fingerprint = str(alert.get("fingerprint") or "")
        if not fingerprint:  # Alertmanager always sends one; derive a stable one otherwise
            fingerprint = "labels:" + json.dumps(labels, sort_keys=True)
        ends_at = _ts(alert.get("endsAt"))
        summary = annotations.get("summary")
        rows.append(AlertRecord(
            fingerprint=fingerprint,
            alertname=labels.get("alertname", "unknown"),
            severity=labels.get("severity"),
            service=labels.get("service") or labels.get("job") or "",
            status=status,
            message=annotations.get("description") or summary or labels.get("alertname", ""),
            summary=summary,
            labels=labels,
            annotations=annotations,
            starts_at=starts_at,
            resolved_at=ends_at if status == "resolved" else None,
            generator_url=str(alert.get("generatorURL") or "") or None,
        ))
    return rows


_INSERT = """
INSERT INTO alerts_history (fingerprint, alertname, severity, service, status, message, summary,
                            labels, annotations, starts_at, triggered_at, resolved_at, generator_url)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9::jsonb, $10, $10, $11, $12)
ON CONFLICT (fingerprint, starts_at, status) DO NOTHING
"""
_RESOLVE = """
UPDATE alerts_history SET resolved_at = $3
 WHERE fingerprint = $1 AND starts_at = $2 AND status = 'firing' AND resolved_at IS NULL
"""


async def insert_alerts(conn: Any, rows: list[AlertRecord]) -> int:
    """Write rows in one transaction; returns how many were new. Idempotent on replays."""
    new = 0
    async with conn.transaction():
        for r in rows:
            result = await conn.execute(
                _INSERT, r["fingerprint"], r["alertname"], r["severity"], r["service"], r["status"],
                r["message"], r["summary"], json.dumps(r["labels"], sort_keys=True),
                json.dumps(r["annotations"], sort_keys=True), r["starts_at"], r["resolved_at"],
                r["generator_url"],
            )
            new += int(str(result).rsplit(" ", 1)[-1] or 0)
            if r["status"] == "resolved":
                await conn.execute(_RESOLVE, r["fingerprint"], r["starts_at"],
                                   r["resolved_at"] or dt.datetime.now(dt.UTC))
    return new


# ---------------------------------------------------------------------------------------- server
def make_app(dsn: str | None, *, token: str | None = None) -> Any:
    """The aiohttp application: POST /alerts (and /), GET /healthz.

    Without a DSN it still answers (health, 503 for notifications, so Alertmanager keeps retrying
    and nothing is lost once a database is configured and the receiver restarted)."""
    import asyncpg
    from aiohttp import web

    from telemetry.history import migrate

    state: dict[str, Any] = {"pool": None}
    lock = asyncio.Lock()

    async def pool() -> Any:
        if dsn is None:
            raise OSError("no database configured (set DATABASE_URL)")
        async with lock:
            if state["pool"] is None:
                new = await asyncpg.create_pool(dsn, min_size=0, max_size=4, timeout=5, command_timeout=10)
                try:
                    await migrate(new)  # alerts_history exists before the first insert (idempotent)
                except BaseException:
                    await new.close()
                    raise
                state["pool"] = new
            return state["pool"]

    async def receive(request: web.Request) -> web.Response:
        if token and request.headers.get("Authorization", "") != f"Bearer {token}":
            return web.json_response({"error": "unauthorized"}, status=401)
        if (request.content_length or 0) > MAX_BODY:
            return web.json_response({"error": "payload too large"}, status=413)
        try:
            rows = parse_notification(await request.json())
        except (ValueError, json.JSONDecodeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        try:
            p = await pool()
            async with p.acquire() as conn:
                new = await insert_alerts(conn, rows)
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("alerts_history unavailable (%s); Alertmanager will retry", exc)
            return web.json_response({"error": "database unavailable"}, status=503)
        log.info("stored %d of %d alert(s)", new, len(rows))
        return web.json_response({"received": len(rows), "stored": new})

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def close(_: web.Application) -> None:
        if state["pool"] is not None:
            await state["pool"].close()

    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_post("/alerts", receive)
    app.router.add_post("/", receive)
    app.router.add_get("/healthz", health)
    app.on_cleanup.append(close)
    return app


async def start(dsn: str | None, listen: str = DEFAULT_LISTEN, *, token: str | None = None) -> Any:
    """Start the receiver on ``listen`` (``host:0``: a free port); returns its aiohttp runner.

    ``runner.addresses[0]`` is the (host, port) it listens on; ``await runner.cleanup()`` stops it."""
    from aiohttp import web

    host, _, port = listen.rpartition(":")
    runner = web.AppRunner(make_app(dsn, token=token))
    await runner.setup()
    await web.TCPSite(runner, host or "127.0.0.1", int(port)).start()
    bound_host, bound_port = runner.addresses[0][:2]
    log.info("alerts receiver on http://%s:%s/alerts", bound_host, bound_port)
    return runner


async def serve(dsn: str | None, listen: str = DEFAULT_LISTEN, *, token: str | None = None) -> None:
    """Run the receiver until cancelled."""
    runner = await start(dsn, listen, token=token)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


# ------------------------------------------------------------------------ alertmanager config
class ConfigError(RuntimeError):
    pass


def _secret(env: Mapping[str, str], name: str) -> str | None:
    """NAME, or the content of the file named by NAME_FILE."""
    if env.get(name):
        return env[name]
    path = env.get(f"{name}_FILE")
    if path:
        return Path(path).read_text(encoding="utf-8").strip()
    return None


def _configs(cfg: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    """Every ``kind`` (``telegram_configs``, ...) block of every receiver."""
    return [c for r in cfg.get("receivers", []) for c in r.get(kind, [])]


def _drop(cfg: dict[str, Any], kind: str) -> None:
    for r in cfg.get("receivers", []):
        r.pop(kind, None)


def _fill_telegram(cfg: dict[str, Any], env: Mapping[str, str]) -> list[str]:
    """Bot token and chat id into the Telegram blocks; returns the settings that are missing."""
    token, chat = _secret(env, "TELEGRAM_BOT_TOKEN"), env.get("TELEGRAM_CHAT_ID")
    if not (token and chat):
        return [n for n, v in (("TELEGRAM_BOT_TOKEN", token), ("TELEGRAM_CHAT_ID", chat)) if not v]
    try:
        chat_id = int(chat)
    except ValueError as exc:
        raise ConfigError("TELEGRAM_CHAT_ID must be an integer") from exc
    for c in _configs(cfg, "telegram_configs"):
        c["bot_token"], c["chat_id"] = token, chat_id
        if env.get("TELEGRAM_API_URL"):  # a Bot API server of one's own (default api.telegram.org)
            c["api_url"] = env["TELEGRAM_API_URL"]
    return []


def _fill_slack(cfg: dict[str, Any], env: Mapping[str, str]) -> list[str]:
    """The webhook URL (or its file) and the channel; returns the settings that are missing."""
    glob = cfg["global"]
    url, url_file = env.get("SLACK_WEBHOOK_URL"), env.get("SLACK_WEBHOOK_URL_FILE")
    if not (url or url_file):
        glob.pop("slack_api_url_file", None)
        return ["SLACK_WEBHOOK_URL"]
    if url:
        glob.pop("slack_api_url_file", None)
        glob["slack_api_url"] = url
    else:
        glob["slack_api_url_file"] = url_file
    if env.get("SLACK_CHANNEL"):
        for c in _configs(cfg, "slack_configs"):
            c["channel"] = env["SLACK_CHANNEL"]
    return []


def _fill_email(cfg: dict[str, Any], env: Mapping[str, str]) -> list[str]:
    """SMTP server, sender, credentials and recipient; returns the settings that are missing."""
    glob = cfg["global"]
    if not (env.get("SMTP_SMARTHOST") and env.get("ALERT_EMAIL_TO")):
        glob.pop("smtp_auth_password_file", None)
        return [n for n in ("SMTP_SMARTHOST", "ALERT_EMAIL_TO") if not env.get(n)]
    glob["smtp_smarthost"] = env["SMTP_SMARTHOST"]
    for key, name in (("smtp_from", "SMTP_FROM"), ("smtp_auth_username", "SMTP_USERNAME")):
        if env.get(name):
            glob[key] = env[name]
    if env.get("SMTP_PASSWORD"):
        glob.pop("smtp_auth_password_file", None)
        glob["smtp_auth_password"] = env["SMTP_PASSWORD"]
    elif env.get("SMTP_PASSWORD_FILE"):
        glob["smtp_auth_password_file"] = env["SMTP_PASSWORD_FILE"]
    else:
        glob.pop("smtp_auth_password_file", None)
    for c in _configs(cfg, "email_configs"):
        c["to"] = env["ALERT_EMAIL_TO"]
    return []


def _fill_webhook(cfg: dict[str, Any], env: Mapping[str, str]) -> list[str]:
    """The generic webhook's URL (or the content of its file) into the ``webhook`` receiver; returns
    the settings that are missing. (The alerts-history webhook is filled from ALERTS_RECEIVER_URL.)"""
    url = _secret(env, "ALERT_WEBHOOK_URL")
    if not url:
        return ["ALERT_WEBHOOK_URL"]
    if not url.startswith(("http://", "https://")):
        raise ConfigError("ALERT_WEBHOOK_URL must start with http:// or https://")
    for c in _webhook_blocks(cfg):
        c["url"] = url
    return []


def _webhook_blocks(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for r in cfg.get("receivers", []) if r.get("name") == WEBHOOK_RECEIVER
            for c in r.get("webhook_configs", [])]


def console_url(env: Mapping[str, str]) -> str:
    """Where a notification's reader opens the console's alerts page: ``VOXPULSE_UI_PUBLIC_URL``, else
    the console's listen address (``VOXPULSE_UI_LISTEN``, default 127.0.0.1:8090), plus ``/alerts``."""
    public = (settings.text(settings.UI_PUBLIC_URL, env=env) or "").rstrip("/")
    if public:
        if not public.startswith(("http://", "https://")):
            raise ConfigError(f"{settings.UI_PUBLIC_URL.name} must start with http:// or https://")
        return f"{public}/alerts"
    host, _, port = str(settings.text(settings.UI_LISTEN, env=env)).rpartition(":")
    if host in ("", "0.0.0.0", "::", "[::]"):  # every address: the reader reaches it on loopback here
        host = "127.0.0.1"
    return f"http://{host}:{port}/alerts"


def _link_console(cfg: dict[str, Any], env: Mapping[str, str]) -> None:
    """Every chat and e-mail notification links to the console's alerts page: Slack's title, a line
    under Telegram's message and the e-mail's text. (The webhooks' JSON is Alertmanager's own.)"""
    url = console_url(env)
    for c in _configs(cfg, "slack_configs"):
        c["title_link"] = url
    for c in _configs(cfg, "telegram_configs"):
        c["message"] = f'{c.get("message", "")}\n<a href="{url}">Open in the VoxPulse console</a>'
    for c in _configs(cfg, "email_configs"):
        c["text"] = f'{c.get("text", "")}\nConsole: {url}\n'


# Each integration of the template: its receivers' block and what fills it from the environment.
_INTEGRATIONS = (
    ("telegram_configs", _fill_telegram),
    ("slack_configs", _fill_slack),
    ("email_configs", _fill_email),
)


def render_alertmanager_config(template: str, env: Mapping[str, str], *, allow_missing: bool = False) -> str:
    """Fill prometheus/alertmanager.yml's integrations from ``env`` (see its header).

    An integration whose settings are missing is an error, or with ``allow_missing`` left out of
    the rendered config (a local stack then records alerts in ``alerts_history`` only)."""
    import yaml

    cfg = yaml.safe_load(template)
    cfg.setdefault("global", {})
    missing: list[str] = []
    for kind, fill in _INTEGRATIONS:
        if not _configs(cfg, kind):
            continue
        lacking = fill(cfg, env)
        if lacking and allow_missing:
            _drop(cfg, kind)
        missing += lacking
    if _webhook_blocks(cfg):
        lacking = _fill_webhook(cfg, env)
        if lacking and allow_missing:
            for r in cfg.get("receivers", []):
                if r.get("name") == WEBHOOK_RECEIVER:
                    r.pop("webhook_configs", None)
        missing += lacking
    _link_console(cfg, env)
    if env.get("ALERTS_RECEIVER_URL"):
        for r in cfg.get("receivers", []):
            if r.get("name") == "alerts-history":
                for c in r.get("webhook_configs", []):
                    c["url"] = env["ALERTS_RECEIVER_URL"]
    if missing and not allow_missing:
        raise ConfigError("missing settings for Alertmanager: " + ", ".join(sorted(set(missing)))
                          + " (or pass --allow-missing)")
    header = "# Rendered by `voxpulse alertmanager-config` from prometheus/alertmanager.yml. HOLDS SECRETS.\n"
    return header + str(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True))


def write_alertmanager_config(out: Path, text: str, template_dir: Path) -> None:
    """Write ``text`` with mode 0600; templates are referenced from the template's folder."""
    import yaml

    cfg = yaml.safe_load(text)
    cfg["templates"] = [str((template_dir / t).resolve()) if not Path(t).is_absolute() else t
                        for t in cfg.get("templates", [])]
    body = text.splitlines(keepends=True)[0] + yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(body)
    os.chmod(out, stat.S_IRUSR | stat.S_IWUSR)


# ------------------------------------------------------------------------------------------- CLI
def _dsn(arg: str | None) -> str | None:
    from telemetry.history import database_url

    return database_url(arg)


def _run_receiver(args: argparse.Namespace) -> int:
    logging.basicConfig(level=str(_env.text(_env.VOXPULSE_LOG_LEVEL)).upper())
    dsn = _dsn(args.dsn)
    if dsn is None:
        log.warning("no database: pass --dsn or set DATABASE_URL (scripts/services.sh writes one); "
                    "notifications are answered 503 so that Alertmanager keeps them and retries")
    with contextlib.suppress(KeyboardInterrupt):
        listen = args.listen or str(settings.text(settings.ALERTS_RECEIVER_LISTEN))
        asyncio.run(serve(dsn, listen, token=settings.text(settings.ALERTS_RECEIVER_TOKEN)))
    return 0


def _run_config(args: argparse.Namespace) -> int:
    try:
        template = Path(args.template) if args.template else config_dir() / TEMPLATE
    except ConfigDirError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        text = render_alertmanager_config(template.read_text(encoding="utf-8"), os.environ,
                                          allow_missing=args.allow_missing)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write_alertmanager_config(Path(args.out), text, template.parent)
    print(args.out)
    return 0


def register_cli(subparsers: Any) -> None:
    """Add ``alerts-receiver`` and ``alertmanager-config`` to the ``voxpulse`` CLI."""
    p = subparsers.add_parser("alerts-receiver", help="Alertmanager webhook -> PostgreSQL alerts_history")
    p.add_argument("--listen", default=None,
                   help=f"host:port (default ${settings.ALERTS_RECEIVER_LISTEN.name} or {DEFAULT_LISTEN})")
    p.add_argument("--dsn", help="PostgreSQL DSN (default: $VOXPULSE_DATABASE_URL or $DATABASE_URL)")
    p.set_defaults(func=_run_receiver)

    c = subparsers.add_parser("alertmanager-config",
                              help="render prometheus/alertmanager.yml with secrets from the environment")
    c.add_argument("--template", help=f"default: {TEMPLATE} in the config directory")
    c.add_argument("--out", required=True, help="where to write the rendered config (mode 0600)")
    c.add_argument("--allow-missing", action="store_true",
                   help="drop integrations whose settings are not in the environment")
    c.set_defaults(func=_run_config)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m voxpulse_console.alert_receiver")
    register_cli(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
