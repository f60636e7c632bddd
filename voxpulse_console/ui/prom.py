"""The console's reads of Prometheus's HTTP API: instant and range queries, exemplars.

Every expression the console shows is built here (names from :mod:`telemetry.semconv`), and the
overview hands each expression back with its value and evaluation time, so a test can send the
same query to Prometheus and compare.
"""

from __future__ import annotations

import math
from typing import Any, Final

import aiohttp

from telemetry.semconv import METRICS, SPANMETRICS_DURATION, SPANMETRICS_KEPT_DURATION, Stage

__all__ = ["STAGES", "PromError", "Prometheus", "exprs"]

_TTFW: Final = next(m.prometheus for m in METRICS if m.name == "voice.turn.time_to_first_word")
_TTFC: Final = next(m.prometheus for m in METRICS if m.name == "voice.stage.time_to_first_chunk")
#: stages the latency views list, in pipeline order
STAGES: Final = (Stage.STT.value, Stage.LLM.value, Stage.TOOL.value, Stage.TTS.value, Stage.TURN.value)
_STAGE_RE: Final = "|".join(STAGES)


class PromError(RuntimeError):
    """Prometheus did not answer, or answered an error."""


class exprs:
    """The PromQL the console runs.

    Windows use :meth:`windowed` instead of ``rate()``: the agents' SDK histograms (time to first
    word, time to first chunk) come from processes that may live shorter than a scrape window (a
    simulation, a worker that restarts), whose series have a single sample, on which ``rate()`` and
    ``increase()`` return nothing. ``windowed`` counts such a new series from zero.
    """

    TTFW_BUCKET: Final = f"{_TTFW}_bucket"
    STAGE_BUCKET: Final = f"{SPANMETRICS_DURATION}_bucket"
    # with tail sampling (docs/scaling.md) the span exemplars are on the kept spans' histogram
    STAGE_KEPT_BUCKET: Final = f"{SPANMETRICS_KEPT_DURATION}_bucket"
    TTFC_BUCKET: Final = f"{_TTFC}_bucket"

    @staticmethod
    def windowed(selector: str, window: str) -> str:
        """How much a counter grew over ``window`` (a series born inside it counts from zero)."""
        return f"clamp_min({selector} - ({selector} offset {window} or {selector} * 0), 0)"

    @staticmethod
    def ttfw_quantile(q: float, window: str) -> str:
        """Time to first word, seconds."""
        return f"histogram_quantile({q}, sum by (le) ({exprs.windowed(exprs.TTFW_BUCKET, window)}))"

    @staticmethod
    def stage_quantile(q: float, window: str, stages: str = _STAGE_RE) -> str:
        """Span duration per ``voice_stage``, milliseconds."""
        sel = f'{exprs.STAGE_BUCKET}{{voice_stage=~"{stages}"}}'
        return f"histogram_quantile({q}, sum by (le, voice_stage) ({exprs.windowed(sel, window)}))"

    @staticmethod
    def first_chunk_quantile(q: float, window: str) -> str:
        """LLM time to first token / TTS time to first byte / STT first transcript, seconds."""
        return (f"histogram_quantile({q}, sum by (le, voice_stage) "
                f"({exprs.windowed(exprs.TTFC_BUCKET, window)}))")

    @staticmethod
    def stage_count(window: str) -> str:
        sel = f'{SPANMETRICS_DURATION}_count{{voice_stage=~"{_STAGE_RE}"}}'
        return f"sum by (voice_stage) ({exprs.windowed(sel, window)})"


def _num(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


class Prometheus:
    def __init__(self, url: str, session: aiohttp.ClientSession, *, timeout_s: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.session = session
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def _get(self, path: str, params: dict[str, str]) -> Any:
        try:
            async with self.session.get(f"{self.url}{path}", params=params, timeout=self.timeout) as r:
                doc = await r.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise PromError(f"Prometheus at {self.url} did not answer ({type(exc).__name__})") from exc
        if not isinstance(doc, dict) or doc.get("status") != "success":
            err = doc.get("error") if isinstance(doc, dict) else None
            raise PromError(f"Prometheus error: {err or 'unexpected answer'}")
        return doc.get("data")

    async def ready(self) -> bool:
        try:
            async with self.session.get(f"{self.url}/-/ready", timeout=aiohttp.ClientTimeout(total=2)) as r:
                return r.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def query(self, expr: str, at: float) -> list[tuple[dict[str, str], float | None]]:
        """Instant vector at ``at`` (epoch seconds): [(labels, value)]."""
        data = await self._get("/api/v1/query", {"query": expr, "time": f"{at:.3f}"})
        out = []
        for r in (data or {}).get("result", []):
            out.append((dict(r.get("metric", {})), _num(r.get("value", [0, None])[1])))
        return out

    async def query_range(self, expr: str, start: float, end: float, step: float
                          ) -> list[tuple[dict[str, str], list[tuple[float, float | None]]]]:
        data = await self._get("/api/v1/query_range", {
            "query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"})
        out = []
        for r in (data or {}).get("result", []):
            pts = [(float(t), _num(v)) for t, v in r.get("values", [])]
            out.append((dict(r.get("metric", {})), pts))
        return out

    async def exemplars(self, expr: str, start: float, end: float) -> list[dict[str, Any]]:
        """[{labels (series), trace_id, span_id, value, t}] for a series selector."""
        data = await self._get("/api/v1/query_exemplars", {
            "query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}"})
        out = []
        for series in data or []:
            labels = dict(series.get("seriesLabels", {}))
            for ex in series.get("exemplars", []):
                el = ex.get("labels", {})
                tid = str(el.get("trace_id") or el.get("traceID") or "")
                v = _num(ex.get("value"))
                if not tid or v is None:
                    continue
                out.append({"series": labels, "trace_id": tid.lower(), "span_id": el.get("span_id"),
                            "value": v, "t": float(ex.get("timestamp", 0))})
        return out
