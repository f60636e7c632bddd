"""The one registry of ``voxpulse``'s commands: the console's own and those other packages contribute.

A command module has ``register_cli(subparsers)``, which adds its commands to the ``voxpulse`` parser
(each sets ``func``: ``args.func(args) -> int``, the exit status). The console's own are listed in
:data:`BUILTIN`; any installed distribution adds more through the ``voxpulse.commands`` entry-point
group (the example agent contributes ``simulate`` and the calls of ``voxpulse demo`` that way, so the
console never imports it)::

    [project.entry-points."voxpulse.commands"]
    simulate = "agent.commands"     # a module with register_cli (setuptools refuses extras here)

A module that fails to import fails ``voxpulse`` loudly, naming the module and the cause
(:class:`CommandImportError`). The one exception is a precisely missing optional dependency: when the
module missing is one a known distribution provides and that distribution is not installed, the
command is still listed and says which extra installs it (``pip install 'voxpulse-otel[agent]'``).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import importlib.util
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Final, Protocol

__all__ = [
    "BUILTIN",
    "DISTRIBUTION",
    "GROUP",
    "OPTIONAL_MODULES",
    "CommandImportError",
    "CommandSource",
    "load",
    "missing_distribution",
]

GROUP: Final = "voxpulse.commands"
DISTRIBUTION: Final = "voxpulse-otel"

# The console's own command modules: name -> (module, the extra it needs).
BUILTIN: Final[Mapping[str, tuple[str, str]]] = {
    "calls/db": ("telemetry.history.commands", "history"),
    "stack": ("voxpulse_console.stack", "console"),
    "alerts-receiver": ("voxpulse_console.alert_receiver", "console"),
    "insights-receiver/insights": ("voxpulse_console.insights", "console"),
    "ui": ("voxpulse_console.ui", "console"),
}

# The modules the optional extras provide (import name -> distribution). Only a ModuleNotFoundError
# for one of these, when its distribution is really absent, reads as "install the extra"; every
# other import failure is a broken import and is reported as such.
OPTIONAL_MODULES: Final[Mapping[str, str]] = {
    "livekit.agents": "livekit-agents",
    "livekit.plugins.silero": "livekit-plugins-silero",
    "asyncpg": "asyncpg",
    "redis": "redis",
    "opentelemetry.instrumentation.asyncpg": "opentelemetry-instrumentation-asyncpg",
    "opentelemetry.instrumentation.redis": "opentelemetry-instrumentation-redis",
    "numpy": "numpy",
    "httpx": "httpx",
    "aiohttp": "aiohttp",
    "rich": "rich",
    "yaml": "pyyaml",
}


class CommandImportError(RuntimeError):
    """A command module of the registry could not be imported (its name and the cause in the message)."""


class CommandSource(Protocol):
    """A command module: adds its commands to ``voxpulse``'s subparsers."""

    def register_cli(self, subparsers: Any) -> None: ...


@dataclass(frozen=True, slots=True)
class _Entry:
    name: str
    module: str
    extra: str


def missing_distribution(exc: ImportError) -> str | None:
    """The optional distribution whose absence ``exc`` reports, or None when ``exc`` is anything else
    (a module of ours that is missing or broken, a typo, an installed package's own failure)."""
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return None
    for module, distribution in OPTIONAL_MODULES.items():
        if exc.name == module or module.startswith(exc.name + "."):  # the module or a missing parent
            try:
                found = importlib.util.find_spec(module) is not None
            except ModuleNotFoundError:  # its parent package is missing too
                found = False
            return None if found else distribution
    return None


def _unavailable(subparsers: Any, entry: _Entry, distribution: str) -> None:
    hint = f"pip install '{DISTRIBUTION}[{entry.extra}]'"
    why = f"{entry.module} needs {distribution}, which is not installed: {hint}"
    names = entry.name.split("/")
    for name in names:
        # every argument (options included: no prefix character) is taken, so any use says what to install
        p = subparsers.add_parser(name, help=f"(not installed: {hint})", description=why, prefix_chars="\0",
                                  add_help=False)
        p.add_argument("rest", nargs="*", help=argparse.SUPPRESS)

        def run(_args: argparse.Namespace, why: str = why) -> int:
            raise SystemExit(f"voxpulse: {why}")

        p.set_defaults(func=run)


def _entries(entry_points: Iterable[importlib.metadata.EntryPoint] | None) -> list[_Entry]:
    out = [_Entry(name, module, extra) for name, (module, extra) in BUILTIN.items()]
    eps = importlib.metadata.entry_points(group=GROUP) if entry_points is None else entry_points
    for ep in sorted(eps, key=lambda e: e.name):
        if ep.attr:
            raise CommandImportError(f"entry point {ep.name} = {ep.value!r} of {GROUP}: name a module, not an "
                                     "attribute (its register_cli is called)")
        out.append(_Entry(ep.name, ep.module, ",".join(ep.extras) or "console"))
    return out


def load(subparsers: Any, entry_points: Iterable[importlib.metadata.EntryPoint] | None = None
         ) -> dict[str, ModuleType]:
    """Import every command module (the console's, then the entry points' of :data:`GROUP`, or
    ``entry_points`` when given), call its ``register_cli(subparsers)``, and return the modules
    imported, by entry name. Raises :class:`CommandImportError` for a module that does not import,
    except for a missing optional distribution (the command then says what to install)."""
    loaded: dict[str, ModuleType] = {}
    for entry in _entries(entry_points):
        try:
            module = importlib.import_module(entry.module)
        except ImportError as e:
            distribution = missing_distribution(e)
            if distribution is None:
                raise CommandImportError(f"voxpulse: the command module {entry.module} ({entry.name}) failed to "
                                         f"import: {type(e).__name__}: {e}") from e
            _unavailable(subparsers, entry, distribution)
            continue
        except Exception as e:  # a SyntaxError, a NameError at import time: a broken module
            raise CommandImportError(f"voxpulse: the command module {entry.module} ({entry.name}) failed to "
                                     f"import: {type(e).__name__}: {e}") from e
        register = getattr(module, "register_cli", None)
        if not callable(register):
            raise CommandImportError(f"voxpulse: the command module {entry.module} ({entry.name}) has no "
                                     "register_cli(subparsers)")
        register(subparsers)
        loaded[entry.name] = module
    return loaded
