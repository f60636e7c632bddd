"""Runs every benchmark and writes docs/benchmarks.md.

    python -m bench            # all of them (about 45 minutes on 2 cores)
    python -m bench spans lag  # a subset; the others keep their last results in bench/results/
    python -m bench --report-only  # only rebuild the report from bench/results/

Each benchmark is a module with a CLI (``--json PATH``) and ``to_markdown(result)``. Results are
JSON in bench/results/ (the small *.json results are committed, with their .meta.json: when and on
which machine); the report is rebuilt from whatever results exist, so every number in
docs/benchmarks.md came from this command on the machine it names, and a reader can regenerate it
(`--report-only`). A document that quotes a benchmark's figures (docs/scaling.md) holds them in a
block the same command rewrites from the results (``excerpt_in``, the module's ``excerpt``).
tests/bench/test_results.py checks the sections and the blocks of committed results.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
REPORT = ROOT / "docs" / "benchmarks.md"


@dataclass(frozen=True)
class Bench:
    key: str
    module: str
    title: str
    target: str
    args: tuple[str, ...] = ()
    python: str | None = None  # another interpreter (the peers' own environment)
    #: documents that quote this benchmark: each holds a block between excerpt_markers(key) that
    #: the report rebuilds from the module's ``excerpt(result)``
    excerpt_in: tuple[str, ...] = ()


BENCHES = (
    Bench("spans", "bench.bench_spans", "Per-span cost of the decorators",
          "decorated span ≤ 1.1× a bare SDK span of its shape (call_id stamping and redaction on), each shape"),
    Bench("peers", "bench.bench_peers", "Against the peers (Logfire, Pipecat), same process",
          "report ratios; ours should be the cheapest", python=str(ROOT / "bench" / ".venv-peers" / "bin" / "python")),
    Bench("lag", "bench.bench_loop_lag", "Event-loop lag added by telemetry",
          "added p99 loop lag ≤ 2 ms with the collector down"),
    Bench("history", "bench.bench_history", "Call history: enqueue cost and batch writer throughput",
          "enqueue ≤ 5 µs per turn; batch writer ≥ 10× per-row INSERTs"),
    Bench("agent", "bench.bench_agent", "Concurrent simulated calls per process: real LiveKit AgentSessions",
          "200 concurrent calls with zero dropped spans; telemetry under 5 % of CPU"),
    Bench("capacity", "bench.bench_capacity", "Concurrent calls per process: telemetry alone (synthetic agent)",
          "200 concurrent calls with zero dropped spans; telemetry under 5 % of CPU"),
    Bench("console", "bench.bench_console", "The web console: call view, calls list over 100 000 calls, live clients",
          "call view of a 30-turn call ≤ 150 ms p95; calls list ≤ 100 ms p95 over 100 000 calls; "
          "a new call in all of 50 live-update clients ≤ 2 s"),
    Bench("realcalls", "bench.bench_realcalls",
          "Real calls: time to first word against the caller, calls per machine, telemetry's CPU share",
          "|VoxPulse TTFW - caller TTFW| ≤ 50 ms at p95 (loopback, calls one at a time; loaded levels reported); "
          "about 5 concurrent calls on 2 cores with server, agent and callers on it; "
          "telemetry at most 3 % of the agent's CPU at 5 calls (median of on/off pairs)"),
    Bench("insights", "bench.bench_insights",
          "The insights receiver: throughput on one core, hang-up to playable audio, the call page's waveform",
          "receiver uploads/s and OTLP spans/s on one core (reported); the caller's hang-up -> audio playable on "
          "the call page p95 ≤ 10 s; a 10-minute call's waveform first paint p95 ≤ 300 ms; storage per "
          "call-minute (reported)"),
    Bench("freshness", "bench.bench_freshness", "Freshness through the real pipeline",
          "span end → Prometheus p95 ≤ 10 s, breach → firing alert ≤ its for: + 15 s, every exemplar a stored "
          "trace, the collector's CPU and series churn against the previous settings (same run); → findable "
          "by call_id in the trace store (Jaeger) p95 ≤ 5 s"),
    Bench("scaling", "bench.bench_scaling", "Scale-out: the collector tiers under load and faults, the cost of growth",
          "one collector on one core takes ≥ 50 000 voice-shaped spans/s refusing nothing, within its shipped "
          "memory limit or a shipped one that does; throughput from 1 to 3 processing collectors with nothing "
          "refused or dropped (kept spans to a sink); the trace store's own limit (Jaeger on Badger, spans/s, "
          "writes and disk per call); a killed collector's lost spans = what the receivers accepted - what the "
          "trace store holds; Prometheus series flat as calls grow x1, x10, x100 (docs/scaling.md)",
          excerpt_in=("docs/scaling.md",)),
)


def _machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{cpu}, {os.cpu_count()} cores, {mem_gib:.0f} GiB RAM, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}")


def run(bench: Bench) -> bool:
    python = bench.python or sys.executable
    if not Path(python).exists():
        print(f"[bench] {bench.key}: skipped ({python} missing)", file=sys.stderr)
        return False
    out = RESULTS / f"{bench.key}.json"
    cmd = [python, "-m", bench.module, "--json", str(out), *bench.args]
    print(f"[bench] {bench.key}: {' '.join(cmd)}", file=sys.stderr)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(cmd, cwd=ROOT, env=env)
    if done.returncode != 0:
        print(f"[bench] {bench.key}: failed ({done.returncode})", file=sys.stderr)
        return False
    meta = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": _machine()}
    (RESULTS / f"{bench.key}.meta.json").write_text(json.dumps(meta))
    return True


def _published_sections() -> dict[str, str]:
    """The sections of the committed report, by title: a benchmark without results in this
    checkout keeps its published section instead of becoming "not measured"."""
    if not REPORT.exists():
        return {}
    out: dict[str, str] = {}
    for chunk in REPORT.read_text(encoding="utf-8").split("\n## ")[1:]:
        title, _, body = chunk.partition("\n")
        if "_Not measured yet in this checkout._" not in body:
            out[title.strip()] = body.lstrip("\n")
    return out


def _published_machine() -> str | None:
    """The committed report's machine line: the sections kept from it were measured there (a
    section measured in this checkout names its own machine)."""
    if not REPORT.exists():
        return None
    for line in REPORT.read_text(encoding="utf-8").splitlines():
        if line.startswith("Machine: "):
            return line.removeprefix("Machine: ")
    return None


def report() -> str:
    parts = [
        "# Benchmarks",
        "",
        "Produced by `python -m bench` (or `make bench`) on the machine below; every number is from that command,",
        "and every comparison is a ratio measured side by side in the same run. Absolute microseconds on a shared",
        "2-core VM are noisy; read the medians and the ratios.",
        "",
        f"Machine: {_published_machine() or _machine()}",
        "",
    ]
    published = _published_sections()
    for bench in BENCHES:
        data = RESULTS / f"{bench.key}.json"
        if not data.exists() and bench.title in published:
            # measured elsewhere (another checkout, the reference machine): keep what was published
            parts += [f"## {bench.title}", "", published[bench.title].rstrip("\n"), ""]
            continue
        parts += section(bench)
    return "\n".join(parts)


def section(bench: Bench) -> list[str]:
    """The report's section of ``bench``, generated from its results in bench/results/ (committed:
    tests/bench/test_results.py checks the document against them)."""
    data = RESULTS / f"{bench.key}.json"
    parts = [f"## {bench.title}", "", f"Target: {bench.target}.", ""]
    if not data.exists():
        return [*parts, "_Not measured yet in this checkout._", ""]
    meta_path = RESULTS / f"{bench.key}.meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(data.stat().st_mtime))}
    try:
        module = importlib.import_module(bench.module)
    except ImportError:
        module = None
    result = json.loads(data.read_text())
    if module is not None and hasattr(module, "to_markdown"):
        table = module.to_markdown(result)
    else:
        table = "```json\n" + json.dumps(result, indent=2) + "\n```"
    machine = f" on {meta['machine']}" if meta.get("machine") else ""
    parts += [f"Measured {meta.get('when', '?')}{machine} with `python -m {bench.module}`.", "", table, ""]
    verdict = result.get("verdict") if isinstance(result, dict) else None
    if verdict:
        parts += [f"**Verdict:** {verdict}", ""]
    return parts


def excerpt_markers(key: str) -> tuple[str, str]:
    return (f"<!-- generated by python -m bench from bench/results/{key}.json: do not edit -->",
            f"<!-- end of bench/results/{key}.json -->")


def excerpt(bench: Bench) -> str | None:
    """The block the documents quoting ``bench`` hold, from its committed results (None: no results)."""
    data = RESULTS / f"{bench.key}.json"
    if not data.exists():
        return None
    module = importlib.import_module(bench.module)
    start, end = excerpt_markers(bench.key)
    return f"{start}\n{module.excerpt(json.loads(data.read_text()))}\n{end}"


def write_excerpts() -> None:
    """Rewrites every document's generated block from the results (a document without the markers
    is left alone: the test of the results names it)."""
    for bench in BENCHES:
        block = excerpt(bench) if bench.excerpt_in else None
        if block is None:
            continue
        start, end = excerpt_markers(bench.key)
        for doc in bench.excerpt_in:
            path = ROOT / doc
            text = path.read_text(encoding="utf-8")
            if start in text and end in text:
                head, _, rest = text.partition(start)
                _, _, tail = rest.partition(end)
                path.write_text(head + block + tail, encoding="utf-8")


def main() -> None:
    wanted = set(sys.argv[1:])
    RESULTS.mkdir(parents=True, exist_ok=True)
    if "--report-only" in wanted:  # rebuild docs/benchmarks.md from bench/results/ without measuring
        wanted = {"--report-only"}
    for bench in BENCHES:
        if not wanted or bench.key in wanted:
            run(bench)
    REPORT.write_text(report(), encoding="utf-8")
    write_excerpts()
    print(f"[bench] wrote {REPORT.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
