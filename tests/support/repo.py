"""The repository's root, its scripts that are not packages (loaded by path), and a fresh Python
process on its code."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

__all__ = ["ROOT", "load_script", "run_python"]

ROOT = Path(__file__).resolve().parents[2]


def load_script(relative: str) -> ModuleType:
    """Import ``ROOT / relative`` (e.g. ``grafana/build_dashboards.py``) once per test session."""
    path = ROOT / relative
    name = "voxpulse_script_" + "_".join(Path(relative).with_suffix("").parts).replace("-", "_")
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None, path
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    """``code`` (dedented) in a fresh interpreter on the repository's code, without the caller's
    OTEL_* and VOXPULSE_* settings: what a process that imports the library sees first."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "VOXPULSE_"))}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60, check=False)
