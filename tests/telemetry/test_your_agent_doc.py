"""docs/your-agent.md stays true: its agent is valid Python, it adds VoxPulse in the four lines it
marks, and each VoxPulse name it uses exists with the arguments it passes."""

from __future__ import annotations

import ast
import inspect
import re

import telemetry
from telemetry.livekit import instrument_session
from tests.support import ROOT

DOC = ROOT / "docs" / "your-agent.md"


def _agent() -> str:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert len(blocks) == 1
    return str(blocks[0])


def test_the_agent_parses_and_marks_its_voxpulse_lines() -> None:
    source = _agent()
    ast.parse(source)
    marked = [line for line in source.splitlines() if "# VoxPulse" in line]
    assert len(marked) == 5  # two imports, mask_logs, configure, instrument_session
    assert sum("telemetry" in line or "instrument_session" in line for line in source.splitlines()) == 5


def test_the_voxpulse_calls_match_the_library() -> None:
    tree = ast.parse(_agent())
    calls = {ast.unparse(n.func): n for n in ast.walk(tree) if isinstance(n, ast.Call)}
    assert "telemetry.mask_logs" in calls and callable(telemetry.mask_logs)
    configure = calls["telemetry.configure"]
    inspect.signature(telemetry.configure).bind(**{k.arg: None for k in configure.keywords if k.arg})
    inspect.signature(instrument_session).bind(None, *calls["instrument_session"].args[1:])
