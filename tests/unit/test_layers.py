"""The layers hold: the pure core does no I/O and reads no clock, and no two modules
of `agent` import each other in a circle.

The pure core is `agent/core/*`, `agent/scoring.py`, `agent/model.py` and
`agent/reference/*` (and the `agent` package itself, which every import runs).
Each rule is checked two ways where it can be:

* I/O libraries — by importing each pure module in a fresh interpreter and looking
  at `sys.modules` (catches what any dependency pulls in), and by reading the
  import statements with `ast`, following imports of `agent` modules (catches a
  lazy import inside a function, which an import alone never runs);
* clocks, the environment, the working directory and files — by `ast`: no
  reference to ``time.time``, ``time.monotonic``, ``datetime.now``, ``os.environ``,
  ``os.getcwd``, ``open`` ... whatever name they are imported under;
* cycles — the import graph of every module under `agent/`, read with `ast`,
  counting imports inside functions, not those under ``if TYPE_CHECKING:``.
"""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path


ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "agent"

#: Top-level modules that do I/O (network, processes, threads, servers, clients).
IO_MODULES = frozenset({
    "trio", "docker", "redis", "quart", "quart_trio", "quart_cors", "quart_schema",
    "hypercorn", "trio_websocket", "wsproto", "h11", "h2", "requests", "urllib3",
    "httpx", "httpcore", "prometheus_client", "socket", "ssl", "select", "selectors",
    "subprocess", "threading", "multiprocessing", "concurrent", "asyncio", "signal",
    "socketserver", "shutil", "tempfile", "sqlite3",
})
#: Dotted modules that do I/O inside otherwise harmless packages.
IO_SUBMODULES = frozenset({"http.client", "http.server", "urllib.request", "xmlrpc.client"})

#: Names that read a clock, the environment, the working directory or a file.
IMPURE_NAMES = frozenset({
    "time.time", "time.time_ns", "time.monotonic", "time.monotonic_ns",
    "time.perf_counter", "time.perf_counter_ns", "time.process_time",
    "time.process_time_ns", "time.thread_time", "time.thread_time_ns",
    "time.clock_gettime", "time.clock_gettime_ns", "time.localtime", "time.ctime",
    "datetime.datetime.now", "datetime.datetime.utcnow", "datetime.datetime.today",
    "datetime.date.today", "trio.current_time",
    "os.environ", "os.environb", "os.getenv", "os.getcwd", "os.getcwdb", "os.listdir",
    "os.scandir", "os.stat", "os.open", "os.path.expanduser", "os.path.abspath",
    "os.path.realpath", "os.path.exists", "os.path.isfile", "os.path.isdir",
    "pathlib.Path.cwd", "pathlib.Path.home", "builtins.open",
})

# -- reading the tree ----------------------------------------------------------------


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def modules() -> dict[str, Path]:
    """Every module of the `agent` package, by dotted name."""
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def pure_modules() -> list[str]:
    def pure(name: str) -> bool:
        return (name in ("agent", "agent.scoring", "agent.model")
                or name.startswith(("agent.core", "agent.reference")))

    return [name for name in modules() if pure(name)]


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _walk(node: ast.AST) -> Iterator[ast.AST]:
    """Every node, skipping the bodies of ``if TYPE_CHECKING:`` (never run)."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for other in child.orelse:
                yield other
                yield from _walk(other)
            continue
        yield child
        yield from _walk(child)


@dataclass
class Imports:
    """What one module imports (at any depth, TYPE_CHECKING aside)."""

    modules: set[str] = field(default_factory=set)  # dotted names, as imported
    aliases: dict[str, str] = field(default_factory=dict)  # local name -> dotted name


def _package_of(name: str) -> str:
    return name if modules()[name].name == "__init__.py" else name.rpartition(".")[0]


@cache
def imports_of(name: str) -> Imports:
    path = modules()[name]
    return imports_in(path.read_text(), _package_of(name))


def imports_in(source: str, package: str) -> Imports:
    """The imports of one module's `source`; `package` resolves relative imports."""
    found = Imports()
    for node in _walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.modules.add(alias.name)
                local = alias.asname or alias.name.partition(".")[0]
                found.aliases[local] = alias.name if alias.asname else local
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            found.modules.add(base)
            for alias in node.names:
                dotted = f"{base}.{alias.name}"
                if dotted in modules():
                    found.modules.add(dotted)  # `from agent.core import settings`
                found.aliases[alias.asname or alias.name] = dotted
    return found


def agent_edges(name: str) -> set[str]:
    """The `agent` modules `name` imports (a package's submodule when named).

    Its own packages are left out: Python runs a module's parent packages before
    the module, so ``from . import x`` inside a package re-enters nothing."""
    return {m for m in imports_of(name).modules
            if m in modules() and m != name and not name.startswith(m + ".")}


# -- I/O libraries -------------------------------------------------------------------


def _io(dotted: str) -> bool:
    return dotted.partition(".")[0] in IO_MODULES or any(
        dotted == m or dotted.startswith(m + ".") for m in IO_SUBMODULES)


def io_imports_by_ast(name: str) -> dict[str, str]:
    """I/O library → the `agent` module that imports it, following `agent` imports."""
    seen: set[str] = set()
    stack = [name]
    bad: dict[str, str] = {}
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        for imported in imports_of(current).modules:
            if _io(imported):
                bad.setdefault(imported, current)
        stack.extend(agent_edges(current))
    return bad


def io_modules_loaded(names: list[str]) -> dict[str, list[str]]:
    """For each module, the I/O modules in `sys.modules` after importing it alone
    in a fresh interpreter (minus those the interpreter itself starts with)."""
    script = (
        "import importlib, json, sys\n"
        "before = set(sys.modules)\n"
        "importlib.import_module(sys.argv[1])\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))\n"
    )
    out: dict[str, list[str]] = {}
    for name in names:
        result = subprocess.run([sys.executable, "-c", script, name], cwd=ROOT,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, f"importing {name} failed:\n{result.stderr}"
        out[name] = [m for m in json.loads(result.stdout) if _io(m)]
    return out


def test_the_pure_core_is_found() -> None:
    names = pure_modules()
    for expected in ("agent.core.settings", "agent.core.policy", "agent.core.ports",
                     "agent.scoring", "agent.model", "agent.reference.scoring"):
        assert expected in names
    assert not any(n.startswith(("agent.adapters", "agent.service", "agent.interfaces"))
                   for n in names)


def test_pure_modules_load_no_io_library() -> None:
    loaded = io_modules_loaded(pure_modules())
    bad = [f"{name} loads {', '.join(mods)}" for name, mods in loaded.items() if mods]
    assert not bad, "\n".join(bad)


def test_pure_modules_import_no_io_library_even_lazily() -> None:
    bad = [f"{name} imports {lib} (through {via})"
           for name in pure_modules() for lib, via in sorted(io_imports_by_ast(name).items())]
    assert not bad, "\n".join(bad)


def test_pure_modules_import_only_pure_agent_modules() -> None:
    pure = set(pure_modules())
    bad = [f"{name} imports {other}" for name in sorted(pure)
           for other in sorted(agent_edges(name) - pure)]
    assert not bad, "\n".join(bad)


def test_the_ast_checks_see_lazy_imports_aliases_and_skip_type_checking() -> None:
    source = (
        "import time as t\nfrom datetime import datetime\nfrom typing import TYPE_CHECKING\n"
        "from . import policy\nif TYPE_CHECKING:\n    import redis\n"
        "def f():\n    import trio\n    return t.monotonic(), datetime.now, open\n"
    )
    found = imports_in(source, "agent.core")
    assert "trio" in found.modules and "redis" not in found.modules
    assert "agent.core.policy" in found.modules
    assert [m for m in found.modules if _io(m)] == ["trio"]
    assert impure_references_in(source, found) == [
        "line 9: builtins.open", "line 9: datetime.datetime.now", "line 9: time.monotonic"]


# -- clocks, environment, files --------------------------------------------------------


def _dotted(node: ast.expr) -> str | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return ".".join(reversed(parts))


def impure_references(name: str) -> list[str]:
    return impure_references_in(modules()[name].read_text(), imports_of(name))


def impure_references_in(source: str, imports: Imports) -> list[str]:
    """Each reference to an `IMPURE_NAMES` name, resolved through the imports."""
    aliases = {"open": "builtins.open", **imports.aliases}
    found: set[str] = set()
    for node in _walk(ast.parse(source)):
        if not isinstance(node, (ast.Attribute, ast.Name)):
            continue
        dotted = _dotted(node)
        if dotted is None:
            continue
        head, _, rest = dotted.partition(".")
        resolved = aliases.get(head)
        if resolved is None:
            continue
        full = f"{resolved}.{rest}" if rest else resolved
        if full in IMPURE_NAMES:
            found.add(f"line {node.lineno}: {full}")
    return sorted(found)


def test_pure_modules_read_no_clock_environment_or_file() -> None:
    bad = [f"{name}, {ref}" for name in pure_modules() for ref in impure_references(name)]
    assert not bad, "\n".join(bad)


# -- import cycles ---------------------------------------------------------------------


def import_cycles() -> list[tuple[list[str], set[str]]]:
    """Each strongly connected component of the `agent` import graph (Tarjan's
    algorithm) with one circle through it, as a path back to its start."""
    graph = {name: sorted(agent_edges(name)) for name in modules()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in graph:
        if v not in index:
            connect(v)
    return [(_circle(graph, c), c) for c in components]


def _circle(graph: dict[str, list[str]], component: set[str]) -> list[str]:
    """A shortest path from the component's first module back to itself."""
    start = min(component)
    parent: dict[str, str] = {}
    queue = deque([start])
    while queue:
        v = queue.popleft()
        for w in graph[v]:
            if w == start:
                path = [v]
                while path[-1] != start:
                    path.append(parent[path[-1]])
                return [*reversed(path), start]
            if w in component and w not in parent:
                parent[w] = v
                queue.append(w)
    raise AssertionError(f"not a cycle: {sorted(component)}")


def _shown(cycles: list[tuple[list[str], set[str]]]) -> list[str]:
    return [" → ".join(circle) + ("" if len(component) == len(circle) - 1 else
                                   f" (one knot with {', '.join(sorted(component - set(circle)))})")
            for circle, component in cycles]


def test_no_import_cycle() -> None:
    cycles = import_cycles()
    assert not cycles, "import cycles:\n" + "\n".join(_shown(cycles))


def test_the_cycle_check_finds_a_circle() -> None:
    graph = {"a": ["b"], "b": ["c", "d"], "c": ["a"], "d": []}
    assert _circle(graph, {"a", "b", "c"}) == ["a", "b", "c", "a"]


def test_adapters_never_import_the_shell_or_the_faces() -> None:
    """Adapters are driven by the service through the seams; an adapter that
    reached back into `agent.service` or `agent.interfaces` would be a layer
    upside down (and a cycle waiting to happen)."""
    upward = {
        name: sorted(e for e in agent_edges(name)
                     if e.startswith(("agent.service", "agent.interfaces")))
        for name in modules() if name.startswith("agent.adapters")
    }
    assert {n: e for n, e in upward.items() if e} == {}
    assert len(upward) >= 10  # the adapters were found


def test_the_web_layer_types_the_agent_by_the_facade_only() -> None:
    """The web layer may use the hub and the metrics' content type, never the
    runtime itself: what it may ask of the agent is `agent.service.facade`."""
    web = [name for name in modules() if name.startswith("agent.interfaces.web")]
    assert web
    reaching = {name: e for name in web for e in agent_edges(name)
                if e in ("agent.service.runtime", "agent.service.wiring")}
    assert reaching == {}
