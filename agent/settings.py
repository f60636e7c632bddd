"""The example agent (`agent`, `python -m agent`).

Every environment variable the tyre-shop agent reads that the library does not, in one table built
with the library's :class:`telemetry._env.EnvVar` (``docs/configuration.md`` lists it after the
library's and the console's). Telemetry settings (``OTEL_SERVICE_NAME``, the exporter, the
endpoint...) are the library's: ``telemetry.configure()`` reads them. Nothing here is read at import
time.
"""

from __future__ import annotations

from typing import Final

from telemetry._env import EnvVar, choice, text

__all__ = [
    "AGENT_NAME",
    "AGENT_VERSION",
    "DEFAULT_AGENT_NAME",
    "ENV_VARS",
    "IDLE_PROCESSES",
    "LANGUAGE",
    "LIVEKIT_API_KEY",
    "LIVEKIT_API_SECRET",
    "LIVEKIT_URL",
    "LLM_MODEL",
    "MAX_CALLS",
    "OPERATOR_SIP_URI",
    "PROVIDERS",
    "STORE_API_URL",
    "STT_MODEL",
    "TTS_MODEL",
    "TTS_VOICE",
    "WORKER_PORT",
    "choice",
    "text",
    "whole_number",
]

#: The name the worker registers under (explicit dispatch) and the callers dispatch to.
DEFAULT_AGENT_NAME: Final = "tyre-agent"

AGENT_NAME: Final = EnvVar(
    ("VOXPULSE_AGENT_NAME",), DEFAULT_AGENT_NAME,
    "The LiveKit agent name the worker registers under (explicit dispatch) and `agent.caller` dispatches to.",
)
AGENT_VERSION: Final = EnvVar(
    ("VOXPULSE_AGENT_VERSION",), None, "`service.version` of the agent; unset: the library's version.",
)
MAX_CALLS: Final = EnvVar(
    ("VOXPULSE_MAX_CALLS",), "5", "Calls one worker takes at once (its load is active calls / this).",
)
IDLE_PROCESSES: Final = EnvVar(
    ("VOXPULSE_IDLE_PROCESSES",), "3", "Job processes the worker keeps warm (the burst of calls it accepts at once).",
)
WORKER_PORT: Final = EnvVar(("VOXPULSE_WORKER_PORT",), "8081", "The worker's HTTP port (0: any free port).")
PROVIDERS: Final = EnvVar(
    ("VOXPULSE_PROVIDERS",), "plugins",
    "STT/LLM/TTS: the provider plugins, LiveKit Inference, or the local pipeline (scripted STT, fake LLM, "
    "espeak-ng TTS; no keys).", ("plugins", "inference", "local"),
)
STT_MODEL: Final = EnvVar(("VOXPULSE_STT_MODEL",), "nova-3", "Deepgram STT model.")
LLM_MODEL: Final = EnvVar(("VOXPULSE_LLM_MODEL",), "gpt-4o-mini", "OpenAI LLM model.")
FALLBACK_LLM_MODEL: Final = EnvVar(
    ("VOXPULSE_FALLBACK_LLM_MODEL",), None,
    "The faster OpenAI model the agent answers with for the rest of a call once a turn ran over its latency "
    "budget (`VOXPULSE_TURN_BUDGET`); unset: no fallback (the local pipeline has its own).",
)
TTS_MODEL: Final = EnvVar(("VOXPULSE_TTS_MODEL",), "gpt-4o-mini-tts", "OpenAI TTS model.")
TTS_VOICE: Final = EnvVar(("VOXPULSE_TTS_VOICE",), "alloy", "OpenAI TTS voice.")
LANGUAGE: Final = EnvVar(("VOXPULSE_LANGUAGE",), "multi", "STT language.")
OPERATOR_SIP_URI: Final = EnvVar(
    ("OPERATOR_SIP_URI",), None, "Where `transfer_to_operator` sends the caller (e.g. `tel:+380441234567`).",
)
STORE_API_URL: Final = EnvVar(("STORE_API_URL",), None, "The tyre shop's store API; unset: `agent.shop_api`'s default.")
LIVEKIT_URL: Final = EnvVar(("LIVEKIT_URL",), None, "The LiveKit server (`voxpulse stack env` prints it).")
LIVEKIT_API_KEY: Final = EnvVar(("LIVEKIT_API_KEY",), None, "The LiveKit server's API key.", secret=True)
LIVEKIT_API_SECRET: Final = EnvVar(("LIVEKIT_API_SECRET",), None, "The LiveKit server's API secret.", secret=True)

ENV_VARS: Final[tuple[EnvVar, ...]] = (
    AGENT_NAME,
    AGENT_VERSION,
    MAX_CALLS,
    IDLE_PROCESSES,
    WORKER_PORT,
    PROVIDERS,
    STT_MODEL,
    LLM_MODEL,
    FALLBACK_LLM_MODEL,
    TTS_MODEL,
    TTS_VOICE,
    LANGUAGE,
    OPERATOR_SIP_URI,
    STORE_API_URL,
    LIVEKIT_URL,
    LIVEKIT_API_KEY,
    LIVEKIT_API_SECRET,
)


def whole_number(var: EnvVar, *, minimum: int = 0) -> int:
    """The variable as a whole number (at least ``minimum``); a malformed value is a ValueError
    that names it."""
    raw = str(text(var))
    if not raw.isdigit() or int(raw) < minimum:
        raise ValueError(f"{var.name}={raw!r}: expected a whole number, at least {minimum}")
    return int(raw)
