"""The benchmark figures the documents quote come from committed raw results (issue 23, item 7).

bench/results/*.json are committed; docs/benchmarks.md's sections are generated from them by
``python -m bench --report-only``. These tests fail when a document's figures and the results part
ways (a hand-edited number, a result re-measured without regenerating the document) or when a
summary no longer follows from the raw rows it summarises.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results"
REPORT = ROOT / "docs" / "benchmarks.md"
MAX_BYTES = 256 * 1024

# bench/ is the repository's, not an installed package (pytest imports with importlib: no rootdir on sys.path)
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
runner = importlib.import_module("bench.__main__")
freshness = importlib.import_module("bench.bench_freshness")


def _freshness() -> dict[str, Any]:
    path = RESULTS / "freshness.json"
    assert path.is_file(), f"{path} is committed: the freshness figures in docs/benchmarks.md come from it"
    result: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return result


def test_committed_results_are_small() -> None:
    files = sorted(RESULTS.glob("*.json"))
    assert files, "bench/results/ holds the committed results"
    for path in files:
        assert path.stat().st_size <= MAX_BYTES, f"{path.name}: raw results, not a dump"


COMMITTED = sorted(p.stem for p in RESULTS.glob("*.json") if not p.name.endswith(".meta.json"))


def test_the_quoted_results_are_committed() -> None:
    assert {"freshness", "realcalls", "insights", "spans", "scaling"} <= set(COMMITTED), COMMITTED


@pytest.mark.parametrize("key", COMMITTED)
def test_report_section_is_generated_from_the_results(key: str) -> None:
    bench = next(b for b in runner.BENCHES if b.key == key)
    assert (RESULTS / f"{key}.meta.json").is_file(), "when and on which machine it was measured"
    section = "\n".join(runner.section(bench)).strip()
    assert section in REPORT.read_text(encoding="utf-8"), (
        f"docs/benchmarks.md's '{bench.title}' differs from bench/results/{key}.json: "
        "run `python -m bench --report-only`")


@pytest.mark.parametrize("bench", [b for b in runner.BENCHES if b.excerpt_in and b.key in COMMITTED],
                         ids=lambda b: b.key)
def test_documents_quote_the_results(bench: Any) -> None:
    """A document's quoted figures are the block generated from the committed results."""
    block = runner.excerpt(bench)
    assert block is not None
    for doc in bench.excerpt_in:
        text = (ROOT / doc).read_text(encoding="utf-8")
        assert block in text, (f"{doc}'s figures from bench/results/{bench.key}.json are missing or differ: "
                               "run `python -m bench --report-only`")


def test_freshness_summary_follows_from_its_rows() -> None:
    result = _freshness()
    assert [c["config"].split(" ")[0] for c in result["configs"]] == ["previous", "shipped"], (
        "old and new settings compared in one run")
    for config in result["configs"]:
        prom = [r["prometheus_s"] for r in config["rows"] if not r.get("store_only")]
        assert config["prometheus_s"] == freshness._stats(prom)
        assert config["store_s"] == freshness._stats([r["store_s"] for r in config["rows"]])
        assert config["alert_s"] == freshness._stats([a["breach_to_firing_s"] for a in config["alerts"]])
        machine = config["machine"]
        assert machine["busy"] == (machine["other_processes_cores"] > result["targets"]["busy_other_cores"])
        assert len(machine["loadavg_1_5_15"]) == 3
    assert result["verdict"] == freshness.verdict(result)


def test_freshness_busy_machine_is_marked_in_the_document() -> None:
    result = _freshness()
    text = freshness.to_markdown(result)
    for config in result["configs"]:
        row = next(line for line in text.splitlines() if line.startswith(f"| {config['config']} |"))
        assert row.endswith(" **busy** |") == config["machine"]["busy"]
    if any(c["machine"]["busy"] for c in result["configs"]):
        assert "BUSY machine" in result["verdict"]


def test_realcalls_summaries_follow_from_their_rows() -> None:
    """The real-call accuracy, anatomy and greeting tables are recomputed from the per-turn and
    per-call rows they summarise."""
    realcalls = importlib.import_module("bench.bench_realcalls")
    result = json.loads((RESULTS / "realcalls.json").read_text(encoding="utf-8"))
    measured = [r for r in result["rows"] if r["telemetry"]]
    assert measured and all(r.get("pairs") for r in measured)
    assert realcalls.accuracy_by_level(measured) == result["accuracy"]
    assert realcalls.greeting_summary(measured) == result["greetings"]
    for level, g in result["greetings"].items():  # a greeting per call at most, over the level's runs
        assert 0 < g["calls"] <= sum(r["calls"] for r in measured if str(r["level"]) == level), level


def test_insights_summaries_follow_from_their_rows() -> None:
    """The insights receiver's percentiles, storage per call-minute, busy marks and verdict are
    recomputed from the per-call and per-load rows they summarise."""
    insights = importlib.import_module("bench.bench_insights")
    result = json.loads((RESULTS / "insights.json").read_text(encoding="utf-8"))
    calls, wave = result["playable"], result["waveform"]
    assert calls["hung_up_to_playable_s"] == insights.stats([r["hung_up_to_playable_s"] for r in calls["rows"]])
    assert calls["hung_up_to_playable_s"]["n"] >= 10, "at least 10 real calls"
    assert wave["first_paint_ms"] == insights.stats([r["painted_ms"] for r in wave["rows"]])
    assert wave["decoded_ms"] == insights.stats([r["decoded_ms"] for r in wave["rows"]])
    assert wave["recording_s"] >= 600 and wave["first_paint_ms"]["n"] >= 20
    assert {r["drawn_from"] for r in wave["rows"]} == {"peaks"}, "the measured call draws the receiver's peaks"
    assert {r["drawn_from"] for r in wave["old_rows"]} == {"audio"}, "the call kept without them decodes"
    assert wave["old_first_paint_ms"] == insights.stats([r["painted_ms"] for r in wave["old_rows"]])
    assert wave["page_first_contentful_paint_ms"] == insights.stats(
        [r["first_contentful_paint_ms"] for r in wave["rows"] if r["first_contentful_paint_ms"] is not None])
    assert result["storage"] == insights.storage(calls)
    for name, machine in insights._machines(result):
        assert machine["busy"] == (machine["other_processes_cores"] > result["targets"]["busy_other_cores"]), name
    t = result["throughput"]
    assert t["uploads"]["ok"] == t["uploads"]["requests"] and t["traces"]["ok"] == t["traces"]["requests"]
    assert t["calls_stored"] == t["uploads"]["requests"], "each upload a call of its own (the warm-up is the first)"
    assert result["verdict"] == insights.verdict(result)
    if any(m["busy"] for _, m in insights._machines(result)):
        assert "BUSY machine" in result["verdict"]


def test_scaling_verdict_follows_from_its_rows() -> None:
    """The scale-out verdict (per-core goal, tier, trace store, fault, growth, busy marks) is
    recomputed from the raw steps it judges; every part is there, and says when it was measured."""
    scaling = importlib.import_module("bench.bench_scaling")
    result = json.loads((RESULTS / "scaling.json").read_text(encoding="utf-8"))
    assert set(scaling.PARTS) <= set(result) and set(scaling.PARTS) <= set(result["measured_at"])
    assert result["verdict"] == scaling._verdict(result)
    for run in result["saturation"]:  # the shipped limits are what otel-collector/ ships now
        if run["shipped_memory"]:
            assert run["memory_limit_mib"] == scaling.shipped_memory_mib(run["collector"]), run["collector"]
    if any(x.get("other_cores", 0) > 0.25 for run in result["saturation"] for x in run["steps"]):
        assert "BUSY machine" in result["verdict"]
