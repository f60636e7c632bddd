"""One reader per fact: the environment is read through the EnvVar tables, never at import time.

* No module of ``telemetry``, ``voxpulse_console`` or ``agent`` touches ``os.environ`` / ``os.getenv``
  in code that runs when it is imported (module and class bodies, decorators, default values).
* Imported under a poisoned environment (every variable of every table set to a marker), no module
  keeps the marker in a module-level value: a value read at import would be frozen there.
* Outside ``telemetry._env`` (and the child-process plumbing listed here), the code reads no
  variable by name: each goes through a table, so docs/configuration.md lists it.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent import settings as agent_settings
from telemetry import _env
from voxpulse_console import settings as console_settings

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("telemetry", "voxpulse_console", "agent")
TABLES = (*_env.ENV_VARS, *console_settings.ENV_VARS, *agent_settings.ENV_VARS)
# Files that still read the environment themselves, and why. telemetry/_env.py is the reader;
# the others hand the whole environment to child processes (plumbing), or belong to the stack's
# rewrite (voxpulse_console/stack.py: its own state/cache folders, moving with the stack package).
OWN_READERS = {
    "telemetry/_env.py": "the reader",
    "agent/realcalls.py": "the environment of the worker and caller processes it starts",
    "voxpulse_console/stack/_layout.py": "the state folders: read by the keeper, a bare Python without the "
                                         "venv (so not through the tables)",
    "voxpulse_console/stack/_supervisor.py": "the environment of the processes it starts",
    "voxpulse_console/stack/_cli.py": "the environment a command run in the media namespace gets",
    "voxpulse_console/stack/_catalogue.py": "the environment the Alertmanager config is rendered from",
    "voxpulse_console/stack/_services.py": "the environment of the PostgreSQL and Redis it starts",
    "voxpulse_console/cli.py": "COLUMNS, the terminal's width for rich (plumbing)",
    "agent/commands.py": "COLUMNS, the terminal's width for rich (plumbing)",
    "voxpulse_console/alert_receiver.py": "renders Alertmanager's config from the environment's integrations",
}


def _sources() -> dict[str, Path]:
    return {str(p.relative_to(ROOT)): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _import_time_nodes(tree: ast.Module) -> list[ast.AST]:
    """The nodes that run when the module is imported: everything but function bodies (a
    function's decorators and default values do run)."""
    out: list[ast.AST] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for n in [*node.decorator_list, *node.args.defaults, *node.args.kw_defaults]:
                if n is not None:
                    visit(n)
            return
        if isinstance(node, ast.Lambda):
            for n in node.args.defaults:
                visit(n)
            return
        out.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return out


def _reads_environ(node: ast.AST) -> bool:
    if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv"):
        return isinstance(node.value, ast.Name) and node.value.id == "os"
    return isinstance(node, ast.Name) and node.id in ("environ", "getenv")


def test_the_import_time_check_sees_a_read() -> None:
    """The check itself: a module-level read, a default value and a decorator argument are seen;
    a read inside a function body is not import time."""
    caught = ast.parse(
        "import os\nX = os.environ.get('A')\ndef f(y=os.getenv('B')): pass\n"
        "@deco(os.environ['C'])\ndef g(): pass\nclass K:\n    z = os.environ.get('D')\n"
    )
    assert sum(_reads_environ(n) for n in _import_time_nodes(caught)) == 4
    fine = ast.parse("import os\ndef f():\n    return os.environ.get('A')\nh = lambda: os.getenv('B')\n")
    assert not any(_reads_environ(n) for n in _import_time_nodes(fine))


@pytest.mark.parametrize("path", sorted(_sources()))
def test_nothing_reads_the_environment_at_import_time(path: str) -> None:
    tree = ast.parse(_sources()[path].read_text(encoding="utf-8"))
    lines = sorted({getattr(n, "lineno", 0) for n in _import_time_nodes(tree) if _reads_environ(n)})
    assert not lines, f"{path} reads the environment at import time, lines {lines}"


def test_only_the_tables_read_the_environment() -> None:
    readers = {name for name, p in _sources().items()
               if any(_reads_environ(n) for n in ast.walk(ast.parse(p.read_text(encoding="utf-8"))))}
    assert readers <= set(OWN_READERS), f"read through a table instead: {sorted(readers - set(OWN_READERS))}"


_PROBE = """
import importlib, json, pkgutil, sys
marker = sys.argv[1]
found = []
def holds(value, depth=0):
    if isinstance(value, str):
        return marker in value
    if depth < 3 and isinstance(value, (tuple, list, set, frozenset)):
        return any(holds(v, depth + 1) for v in value)
    if depth < 3 and isinstance(value, dict):
        return any(holds(k, depth + 1) or holds(v, depth + 1) for k, v in value.items())
    return False
for pkg in sys.argv[2:]:
    root = importlib.import_module(pkg)
    names = [pkg] + [m.name for m in pkgutil.walk_packages(root.__path__, pkg + ".")]
    for name in names:
        if name.rsplit(".", 1)[-1] == "__main__":
            continue
        module = importlib.import_module(name)
        found += [f"{name}.{k}" for k, v in vars(module).items() if not k.startswith("__") and holds(v)]
print(json.dumps(found))
"""


def test_no_module_keeps_a_value_read_at_import() -> None:
    marker = "poisoned-at-import"
    env = {k: v for k, v in os.environ.items() if k not in {n for var in TABLES for n in var.names}}
    env.update({n: f"{marker}-{n}" for var in TABLES for n in var.names})
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([sys.executable, "-c", _PROBE, marker, *PACKAGES], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_the_probe_finds_a_value_read_at_import(tmp_path: Path) -> None:
    """The poisoned-import check itself, on a module that reads a variable at import."""
    pkg = tmp_path / "readsatimport"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("import os\nURL = os.environ.get('VOXPULSE_PROMETHEUS_URL')\n")
    env = {**os.environ, "VOXPULSE_PROMETHEUS_URL": "poisoned-at-import-x", "PYTHONPATH": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", _PROBE, "poisoned-at-import", "readsatimport"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == ["readsatimport.URL"]


def test_every_table_entry_is_documented_once() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    names = [n for var in TABLES for n in var.names]
    assert len(names) == len(set(names)), "a variable in two tables"
    for name in names:
        assert f"`{name}`" in doc, name
