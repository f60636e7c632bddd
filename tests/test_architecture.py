"""docs/architecture.md cannot drift from the code: its diagram is checked against the tree.

* every Python package of the tree (and the grafana/ scripts) is a node of the diagram, and only those;
* the diagram's ``imports`` edges are exactly the imports between those packages, read from the code;
* those imports follow the layering rules (the library imports none of the applications, the agent
  never imports the console, nothing imports the tests or the benchmarks);
* the example agent reaches the console only through the ``voxpulse.commands`` entry points of
  pyproject.toml, each drawn as an edge (the console never imports it);
* one word, one meaning: one ``cli.py`` (the ``voxpulse`` program), no ``console`` module outside the
  console, no ``store`` module but the trace store's, no ``history`` module outside the call history;
  one migration tree and one runner;
* every process of the native stack (voxpulse_console.stack.COMPONENTS and its OPTIONAL ones) and the
  two services of scripts/services.sh (voxpulse stack services) are nodes, labelled with exactly the
  ports they listen on.
"""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest

from tests.support import ROOT
from voxpulse_console import stack
from voxpulse_console.stack import _services

DOC = ROOT / "docs" / "architecture.md"
SCRIPT_DIRS = ("grafana",)  # scripts, not packages: one node each
EXCLUDED = ("tests", ".venv", ".voxpulse", "node_modules")

# Which node may import which (besides itself and its own subpackages).
ALLOWED: dict[str, set[str]] = {
    "telemetry": set(),
    "agent": {"telemetry"},
    "voxpulse_console": {"telemetry"},  # the agent's commands come by entry point, not import
    "bench": {"telemetry", "agent", "voxpulse_console"},
    "grafana": {"telemetry"},  # the tyre shop's metric names: agent/metrics.toml, read as data
}


def _mermaid() -> str:
    blocks = re.findall(r"```mermaid\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert len(blocks) == 1, "docs/architecture.md has one mermaid diagram"
    return str(blocks[0])


def _node_id(name: str) -> str:
    return name.replace(".", "_").replace("-", "_")


def _nodes(diagram: str) -> dict[str, str]:
    """node id -> label (``id["label"]`` declarations)."""
    return {m.group(1): m.group(2) for m in re.finditer(r'^\s*([A-Za-z_][\w]*)\["([^"]*)"\]', diagram, re.M)}


def packages() -> list[str]:
    """Dotted names of the tree's packages (folders with __init__.py), outside the tests."""
    out = []
    for init in ROOT.rglob("__init__.py"):
        rel = init.parent.relative_to(ROOT)
        if rel.parts and rel.parts[0] not in EXCLUDED and not any(p.startswith(".") for p in rel.parts):
            out.append(".".join(rel.parts))
    return sorted(out)


def _owner(module: str, nodes: list[str]) -> str | None:
    """The node a dotted module belongs to: the longest node name that prefixes it."""
    best = None
    for n in nodes:
        if (module == n or module.startswith(n + ".")) and (best is None or len(n) > len(best)):
            best = n
    return best


def _imports(path: Path, module: str) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved), at any depth."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_pkg else 0)]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            out.add(name)
            out.update(f"{name}.{a.name}" for a in node.names)
    return out


def import_graph() -> set[tuple[str, str]]:
    """(importer, imported) between the diagram's code nodes, read from every module of the tree."""
    nodes = [*packages(), *SCRIPT_DIRS]
    edges: set[tuple[str, str]] = set()
    files = [(p, ".".join(p.relative_to(ROOT).with_suffix("").parts)) for pkg in packages()
             for p in (ROOT / pkg.replace(".", "/")).glob("*.py")]
    files += [(p, f"{d}.{p.stem}") for d in SCRIPT_DIRS for p in (ROOT / d).glob("*.py")]
    for path, module in files:
        src = _owner(module, nodes)
        assert src is not None, module
        for imported in _imports(path, module.removesuffix(".__init__")):
            dst = _owner(imported, nodes)
            if dst is not None and dst != src:
                edges.add((src, dst))
    return edges


def _top(node: str) -> str:
    return node.split(".")[0]


def test_the_layering_holds() -> None:
    wrong = sorted((a, b) for a, b in import_graph()
                   if _top(a) != _top(b) and _top(b) not in ALLOWED[_top(a)])
    assert not wrong, f"imports against the layering of docs/architecture.md: {wrong}"
    assert not [e for e in import_graph() if _top(e[0]) == "telemetry" and _top(e[1]) != "telemetry"]


def test_every_package_is_in_the_diagram() -> None:
    nodes = _nodes(_mermaid())
    expected = {_node_id(p) for p in [*packages(), *SCRIPT_DIRS]}
    code_nodes = {n for n, label in nodes.items() if label.startswith(("package ", "scripts "))}
    assert code_nodes == expected, "docs/architecture.md: packages missing or gone " \
        f"(missing {sorted(expected - code_nodes)}, stale {sorted(code_nodes - expected)})"
    for p in [*packages(), *SCRIPT_DIRS]:
        assert p.replace(".", "/") in nodes[_node_id(p)], f"label of {p} names its folder"


def test_the_import_edges_are_the_code_imports() -> None:
    drawn = {(a, b) for a, b in re.findall(r"^\s*(\w+)\s*-\.\s*imports\s*\.->\s*(\w+)", _mermaid(), re.M)}
    actual = {(_node_id(a), _node_id(b)) for a, b in import_graph()}
    assert drawn == actual, f"docs/architecture.md: add {sorted(actual - drawn)}, remove {sorted(drawn - actual)}"


def test_the_agent_reaches_the_console_only_by_entry_point() -> None:
    """Each ``voxpulse.commands`` entry point is drawn as an edge from its package to the console, and
    the console imports none of them (test_the_layering_holds)."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    eps = data["project"].get("entry-points", {}).get("voxpulse.commands", {})
    nodes = [*packages(), *SCRIPT_DIRS]
    wanted = set()
    for value in eps.values():
        owner = _owner(value.split("[")[0].split(":")[0].strip(), nodes)
        assert owner is not None, value
        wanted.add((_node_id(owner), "voxpulse_console"))
    drawn = set(re.findall(r'^\s*(\w+)\s*-\.\s*"voxpulse\.commands entry point[^"]*"\s*\.->\s*(\w+)', _mermaid(), re.M))
    assert drawn == wanted, f"docs/architecture.md: entry-point edges {sorted(wanted)}, drawn {sorted(drawn)}"
    assert ("voxpulse_console", "agent") not in import_graph()


def _modules() -> list[Path]:
    return [p for pkg in packages() for p in (ROOT / pkg.replace(".", "/")).glob("*.py")]


def test_one_word_one_meaning() -> None:
    """docs/architecture.md, "Names": the module names that used to mean several things."""
    rel = sorted(str(p.relative_to(ROOT)) for p in _modules())
    assert [p for p in rel if p.endswith("/cli.py")] == ["voxpulse_console/cli.py"]
    assert [p for p in rel if Path(p).stem == "console"] == []  # the console is voxpulse_console/
    assert [p for p in rel if Path(p).stem in ("store", "fake_store")] == []  # the trace store: tracestore/
    assert [p for p in rel if Path(p).stem == "history"] == []  # the call history: telemetry/history/


def test_one_migration_tree_and_one_runner() -> None:
    """The database's schema is one folder of migrations, run by one module: nothing else creates or
    reads a migrations table."""
    trees = sorted({str(p.parent.relative_to(ROOT)) for p in ROOT.rglob("migrations/*.sql")
                    if not any(part in EXCLUDED or part.startswith(".") for part in p.relative_to(ROOT).parts)})
    assert trees == ["telemetry/history/migrations"]
    runner = re.compile(r"schema_migrations|CREATE TABLE IF NOT EXISTS \{table\}")
    runners = sorted(str(p.relative_to(ROOT)) for p in _modules() if runner.search(p.read_text(encoding="utf-8")))
    assert runners == ["telemetry/history/schema.py"]


def _ports(label: str) -> set[int]:
    return {int(p) for p in re.findall(r":(\d{2,5})\b", label)}


PROCESSES = {**stack.COMPONENTS, **stack.OPTIONAL}


@pytest.mark.parametrize("name", sorted(PROCESSES))
def test_every_stack_process_is_drawn_with_its_ports(name: str) -> None:
    nodes = _nodes(_mermaid())
    node = _node_id(name)
    assert node in nodes, f"docs/architecture.md: no node {node} for the stack's {name}"
    assert _ports(nodes[node]) == set(PROCESSES[name].ports), nodes[node]


def test_the_services_are_drawn_with_their_ports() -> None:
    nodes = _nodes(_mermaid())
    services = _services.components({})  # their default ports (PGPORT, REDIS_PORT unset)
    assert _ports(nodes["postgresql"]) == set(services["postgres"].ports)
    assert _ports(nodes["redis"]) == set(services["redis"].ports)


# No file of the library, the stack or the console over this many lines: a longer one does several
# jobs, to be split into modules of one job each (issue #20). A file that is long and still one job
# is named here, with the reason.
MAX_LINES = 600
LONG_FILES: dict[str, str] = {
    "telemetry/semconv.py": "the names table: one job, and docs/semantic-conventions.md is generated from it",
    "telemetry/_setup.py": "configure(): the one call that builds and installs the providers and its handle",
}
SIZED = ("telemetry", "voxpulse_console", "agent")


def _line_counts() -> dict[str, int]:
    return {str(p.relative_to(ROOT)): len(p.read_text(encoding="utf-8").splitlines())
            for top in SIZED for p in sorted((ROOT / top).rglob("*.py"))
            if not any(part.startswith(".") or part == "__pycache__" for part in p.relative_to(ROOT).parts)}


def test_no_module_does_several_jobs() -> None:
    """Every .py file under telemetry/, voxpulse_console/ and agent/ is at most MAX_LINES lines long,
    but the ones LONG_FILES names with a reason; an entry there that is gone or short again is stale."""
    counts = _line_counts()
    long = {path: n for path, n in counts.items() if n > MAX_LINES and path not in LONG_FILES}
    assert not long, f"over {MAX_LINES} lines: split by job (or add to LONG_FILES with the reason): {long}"
    stale = sorted(path for path in LONG_FILES if counts.get(path, 0) <= MAX_LINES)
    assert not stale, f"LONG_FILES names files no longer over {MAX_LINES} lines: {stale}"
    assert all(reason.strip() for reason in LONG_FILES.values())
