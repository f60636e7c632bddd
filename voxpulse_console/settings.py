"""The operator console (`voxpulse_console`, the `voxpulse` command).

Every environment variable the console reads that the library does not, in one table built with the
library's :class:`telemetry._env.EnvVar` (``docs/configuration.md`` lists it after the library's);
the library's own variables (``OTEL_*``, ``DATABASE_URL``, ``VOXPULSE_LOG_LEVEL``...) are read through
``telemetry._env``. Nothing is read at import time: each value when a command needs it, from
``os.environ`` or from a mapping given in its place (``env=``).

    prometheus = settings.text(settings.PROMETHEUS_URL)       # $VOXPULSE_PROMETHEUS_URL, else the default
"""

from __future__ import annotations

from typing import Final

from telemetry._env import EnvVar, text
from voxpulse_console.tracestore import TRACE_STORE, TRACE_STORE_URL
from voxpulse_console.tracestore._defaults import DEFAULT_KIND, DEFAULT_URLS

__all__ = [
    "ALERTMANAGER_CONFIG",
    "ALERTS_RECEIVER_LISTEN",
    "ALERTS_RECEIVER_TOKEN",
    "CACHE_DIR",
    "CONFIG_DIR",
    "DEFAULT_ALERTS_RECEIVER_LISTEN",
    "DEFAULT_GRAFANA_URL",
    "DEFAULT_INSIGHTS_LISTEN",
    "DEFAULT_PROMETHEUS_URL",
    "DEFAULT_TRACE_STORE",
    "DEFAULT_TRACE_STORE_URLS",
    "DEFAULT_UI_LISTEN",
    "ENV_VARS",
    "GRAFANA_URL",
    "INSIGHTS_AUDIO",
    "INSIGHTS_DIR",
    "INSIGHTS_KEYS",
    "INSIGHTS_LISTEN",
    "INSIGHTS_MAX_BODY_MB",
    "INSIGHTS_RETENTION_DAYS",
    "INSIGHTS_S3_ACCESS_KEY_ID",
    "INSIGHTS_S3_BUCKET",
    "INSIGHTS_S3_ENDPOINT",
    "INSIGHTS_S3_REGION",
    "INSIGHTS_S3_SECRET_ACCESS_KEY",
    "PGDATABASE",
    "PGPASSWORD",
    "PGPORT",
    "PGUSER",
    "PG_FAST",
    "PROMETHEUS_URL",
    "REDIS_PASSWORD",
    "REDIS_PORT",
    "TRACE_STORE",
    "TRACE_STORE_URL",
    "UI_LISTEN",
    "UI_LOGIN_ADDRESS_FAILURES",
    "UI_LOGIN_DELAY_S",
    "UI_LOGIN_FREE_FAILURES",
    "UI_LOGIN_USER_FAILURES",
    "UI_LOGS_URL",
    "UI_ORIGIN",
    "UI_PUBLIC_URL",
    "UI_SESSION_HOURS",
    "UI_TIMEZONE",
    "UI_TLS_CERT",
    "UI_TLS_KEY",
    "UI_TRACE_CACHE",
    "UI_TRACE_URL",
    "UI_TRUSTED_PROXIES",
    "UI_USERS",
    "text",
]

#: Prometheus's query API (the native stack's Prometheus listens there).
DEFAULT_PROMETHEUS_URL: Final = "http://127.0.0.1:9090"
DEFAULT_GRAFANA_URL: Final = "http://127.0.0.1:3000"
#: 127.0.0.1:8090 -- clear of the collector (4317/4318, 8888/8889, 13133), the agent's /metrics
#: (8080), the store API (8081), Prometheus (9090), Alertmanager (9093) and the alerts receiver (9095).
DEFAULT_UI_LISTEN: Final = "127.0.0.1:8090"
DEFAULT_ALERTS_RECEIVER_LISTEN: Final = "127.0.0.1:9095"
#: LiveKit Agents' observability upload (`voxpulse insights-receiver`): next to the alerts receiver.
DEFAULT_INSIGHTS_LISTEN: Final = "127.0.0.1:9097"
#: Each trace store's query API on this machine: Jaeger (the native stack), Tempo (docker compose).
DEFAULT_TRACE_STORE: Final = DEFAULT_KIND
DEFAULT_TRACE_STORE_URLS: Final = DEFAULT_URLS

PROMETHEUS_URL: Final = EnvVar(
    ("VOXPULSE_PROMETHEUS_URL",), DEFAULT_PROMETHEUS_URL,
    "Prometheus's query API: the console's latency and alert pages, `voxpulse demo`'s latency table.",
)
GRAFANA_URL: Final = EnvVar(("VOXPULSE_GRAFANA_URL",), DEFAULT_GRAFANA_URL, "Grafana, for the links `voxpulse` prints.")
CONFIG_DIR: Final = EnvVar(
    ("VOXPULSE_CONFIG_DIR",), None,
    "The folder holding the stack's configuration files (`otel-collector/`, `prometheus/`, ...); unset: the "
    "source checkout the console runs from, else the one holding the current directory.",
)
ALERTS_RECEIVER_LISTEN: Final = EnvVar(
    ("VOXPULSE_ALERTS_RECEIVER_LISTEN",), DEFAULT_ALERTS_RECEIVER_LISTEN,
    "host:port of the Alertmanager webhook receiver (`voxpulse alerts-receiver`).",
)
ALERTS_RECEIVER_TOKEN: Final = EnvVar(
    ("ALERTS_RECEIVER_TOKEN",), None, "Bearer token the alerts receiver requires (unset: none).", secret=True,
)
INSIGHTS_LISTEN: Final = EnvVar(
    ("VOXPULSE_INSIGHTS_LISTEN",), DEFAULT_INSIGHTS_LISTEN,
    "host:port of the receiver of LiveKit Agents' observability upload (`voxpulse insights-receiver`); "
    "an agent sends there with `LIVEKIT_OBSERVABILITY_URL=http://<this address>`.",
)
INSIGHTS_KEYS: Final = EnvVar(
    ("VOXPULSE_INSIGHTS_KEYS",), None,
    "LiveKit API keys besides the stack's whose tokens the insights receiver accepts (your own LiveKit "
    "server's or a Cloud project's), `KEY: SECRET` separated by commas.", secret=True,
)
INSIGHTS_DIR: Final = EnvVar(
    ("VOXPULSE_INSIGHTS_DIR",), None,
    "Where the insights receiver keeps recordings and transcripts; unset: `insights/` in the stack's state "
    "folder (`$VOXPULSE_STACK_DIR`, else `$VOXPULSE_STATE_DIR/stack`).",
)
INSIGHTS_AUDIO: Final = EnvVar(
    ("VOXPULSE_INSIGHTS_AUDIO",), "false",
    "Keep the calls' audio (personal data) the agents upload; off: the audio part is dropped, the "
    "transcript, tags and verdicts are kept.",
)
INSIGHTS_MAX_BODY_MB: Final = EnvVar(
    ("VOXPULSE_INSIGHTS_MAX_BODY_MB",), "100", "Largest upload the insights receiver accepts (MiB); larger: 413.",
)
INSIGHTS_RETENTION_DAYS: Final = EnvVar(
    ("VOXPULSE_INSIGHTS_RETENTION_DAYS",), "30",
    "Days a call's recording, transcript, tags and verdicts are kept (0: kept until erased).",
)
INSIGHTS_S3_BUCKET: Final = EnvVar(
    ("VOXPULSE_INSIGHTS_S3_BUCKET",), None,
    "An S3-compatible bucket for the recordings and transcripts instead of `VOXPULSE_INSIGHTS_DIR` (the "
    "receiver writes there, the console's player reads there); needs the endpoint and both keys below.",
)
INSIGHTS_S3_ENDPOINT: Final = EnvVar(
    ("VOXPULSE_INSIGHTS_S3_ENDPOINT",), None,
    "Base URL of the S3-compatible server (path-style requests: `<endpoint>/<bucket>/<key>`).",
)
INSIGHTS_S3_REGION: Final = EnvVar(
    ("VOXPULSE_INSIGHTS_S3_REGION",), "us-east-1", "The bucket's region (signed into every request).",
)
INSIGHTS_S3_ACCESS_KEY_ID: Final = EnvVar(
    ("VOXPULSE_INSIGHTS_S3_ACCESS_KEY_ID",), None, "Access key id for the bucket (no default).",
)
INSIGHTS_S3_SECRET_ACCESS_KEY: Final = EnvVar(
    ("VOXPULSE_INSIGHTS_S3_SECRET_ACCESS_KEY",), None, "Secret access key for the bucket (no default).",
    secret=True,
)
UI_LISTEN: Final = EnvVar(("VOXPULSE_UI_LISTEN",), DEFAULT_UI_LISTEN, "host:port the web console listens on.")
UI_USERS: Final = EnvVar(
    ("VOXPULSE_UI_USERS",), None,
    "The console's users, `NAME:HASH[:pii+audio]` separated by commas (`voxpulse ui hash-password`); the console "
    "refuses to start without one.", secret=True,
)
UI_TIMEZONE: Final = EnvVar(("VOXPULSE_UI_TIMEZONE",), "UTC", "Time zone of \"today\" and the daily numbers.")
UI_PUBLIC_URL: Final = EnvVar(
    ("VOXPULSE_UI_PUBLIC_URL",), None, "Public URL behind a reverse proxy (https: Secure cookies).",
)
UI_SESSION_HOURS: Final = EnvVar(("VOXPULSE_UI_SESSION_HOURS",), "8", "Hours a session lasts idle.")
UI_ORIGIN: Final = EnvVar(
    ("VOXPULSE_UI_ORIGIN",), None,
    "The console's own origins (space or comma separated): state changes must come from one, a login "
    "redirects only to them; unset: derived from the listen address.",
)
UI_TRUSTED_PROXIES: Final = EnvVar(
    ("VOXPULSE_UI_TRUSTED_PROXIES",), None,
    "Reverse proxies (addresses or networks) whose `X-Forwarded-For` names the client; unset: the header "
    "is ignored.",
)
UI_LOGIN_FREE_FAILURES: Final = EnvVar(
    ("VOXPULSE_UI_LOGIN_FREE_FAILURES",), "3",
    "Wrong passwords per user name and client address before each attempt waits.",
)
UI_LOGIN_DELAY_S: Final = EnvVar(
    ("VOXPULSE_UI_LOGIN_DELAY_S",), "1.0", "The first wait after those, in seconds (doubling after each).",
)
UI_LOGIN_ADDRESS_FAILURES: Final = EnvVar(
    ("VOXPULSE_UI_LOGIN_ADDRESS_FAILURES",), "30",
    "Wrong passwords per client address (any user name) in 10 minutes before it waits.",
)
UI_LOGIN_USER_FAILURES: Final = EnvVar(
    ("VOXPULSE_UI_LOGIN_USER_FAILURES",), "100",
    "Wrong passwords per user name from all addresses in 15 minutes before every address that failed for it "
    "waits.",
)
UI_TLS_CERT: Final = EnvVar(
    ("VOXPULSE_UI_TLS_CERT",), None, "The console's own TLS: certificate chain (PEM file; with the key).",
)
UI_TLS_KEY: Final = EnvVar(("VOXPULSE_UI_TLS_KEY",), None, "The console's own TLS: private key (PEM file).")
UI_TRACE_CACHE: Final = EnvVar(
    ("VOXPULSE_UI_TRACE_CACHE",), "32", "Complete traces of finished calls kept in memory (0: fetch each time).",
)
UI_LOGS_URL: Final = EnvVar(
    ("VOXPULSE_UI_LOGS_URL",), None, "URL template of a call's logs, `{call_id}` and `{trace_id}` filled in.",
)
UI_TRACE_URL: Final = EnvVar(
    ("VOXPULSE_UI_TRACE_URL",), None,
    "URL template of a trace, `{trace_id}` filled in; unset: the console's own `/api/traces/<id>`.",
)

# The native stack's PostgreSQL and Redis (voxpulse_console.stack._services; scripts/services.sh wraps them).
PGUSER: Final = EnvVar(("PGUSER",), "voxpulse", "The call history's PostgreSQL role the native stack creates.")
PGPASSWORD: Final = EnvVar(
    ("PGPASSWORD",), None,
    "That role's password; unset: one is generated once into the stack's state folder (mode 600).", secret=True,
)
PGDATABASE: Final = EnvVar(("PGDATABASE",), "voxpulse", "The database the native stack creates.")
PGPORT: Final = EnvVar(("PGPORT",), "5432", "The native stack's PostgreSQL port (127.0.0.1).")
REDIS_PORT: Final = EnvVar(("REDIS_PORT",), "6379", "The native stack's Redis port (127.0.0.1).")
REDIS_PASSWORD: Final = EnvVar(
    ("REDIS_PASSWORD",), None, "Redis's requirepass (written into its mode-600 config, not its command line).",
    secret=True,
)
PG_FAST: Final = EnvVar(
    ("VOXPULSE_PG_FAST",), "0", "`1`: PostgreSQL without fsync (a throw-away database, CI); default durable.",
)
CACHE_DIR: Final = EnvVar(
    ("VOXPULSE_CACHE_DIR",), None, "Where the stack's built binaries are cached; default ~/.cache/voxpulse.",
)
ALERTMANAGER_CONFIG: Final = EnvVar(
    ("VOXPULSE_ALERTMANAGER_CONFIG",), None,
    "A rendered Alertmanager config to run instead of rendering prometheus/alertmanager.yml from the environment.",
)

ENV_VARS: Final[tuple[EnvVar, ...]] = (
    PROMETHEUS_URL,
    GRAFANA_URL,
    TRACE_STORE,
    TRACE_STORE_URL,
    CONFIG_DIR,
    ALERTS_RECEIVER_LISTEN,
    ALERTS_RECEIVER_TOKEN,
    INSIGHTS_LISTEN,
    INSIGHTS_KEYS,
    INSIGHTS_DIR,
    INSIGHTS_AUDIO,
    INSIGHTS_MAX_BODY_MB,
    INSIGHTS_RETENTION_DAYS,
    INSIGHTS_S3_BUCKET,
    INSIGHTS_S3_ENDPOINT,
    INSIGHTS_S3_REGION,
    INSIGHTS_S3_ACCESS_KEY_ID,
    INSIGHTS_S3_SECRET_ACCESS_KEY,
    UI_LISTEN,
    UI_USERS,
    UI_TIMEZONE,
    UI_PUBLIC_URL,
    UI_SESSION_HOURS,
    UI_ORIGIN,
    UI_TRUSTED_PROXIES,
    UI_LOGIN_FREE_FAILURES,
    UI_LOGIN_DELAY_S,
    UI_LOGIN_ADDRESS_FAILURES,
    UI_LOGIN_USER_FAILURES,
    UI_TLS_CERT,
    UI_TLS_KEY,
    UI_TRACE_CACHE,
    UI_LOGS_URL,
    UI_TRACE_URL,
    PGUSER,
    PGPASSWORD,
    PGDATABASE,
    PGPORT,
    REDIS_PORT,
    REDIS_PASSWORD,
    PG_FAST,
    CACHE_DIR,
    ALERTMANAGER_CONFIG,
)
