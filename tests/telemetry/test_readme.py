"""The README's quick start works as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_start_runs_and_prints_the_call_tree() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quick start", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    assert len(code.group(1).strip().splitlines()) <= 15
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "VOXPULSE_"))}
    result = subprocess.run(
        [sys.executable, "-c", code.group(1)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    root = next(line for line in lines if line.startswith("call "))
    assert "call_id=call-1" in root and "outcome=resolved_by_bot" in root
    assert any(line.startswith("└─ execute_tool find_tyres") for line in lines)
    assert "0501234567" not in result.stderr
