"""The package's layering, read from the source: no import cycles, and the sans-IO
modules free of sockets and Trio I/O (they are tested without sockets, h11-style).

Imports are read with ``ast`` (nothing is imported to check them). Cycles count every
import, ``TYPE_CHECKING`` ones included (a cycle of types is still a tangle); the
sans-IO rule counts what runs (``TYPE_CHECKING`` imports never do).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest

PACKAGE: Final = "takhin_ws"
ROOT: Final = Path(__file__).resolve().parent.parent / "src" / PACKAGE

#: Subpackages whose every module is sans-IO (the command line excepted).
SANS_IO_PACKAGES: Final = ("wire", "core", "config")
#: Modules of other packages with no I/O of their own (each one listed must exist).
SANS_IO_EXTRA: Final = frozenset(
    {
        "_exceptions",
        "cluster.entries",
        "lowlevel",
        "protocol",
        "cluster.scripts",
        "ingest.idempotency",
        "sources.promql",
        "sources.kafka.model",
        "sources.kafka.pipe",
        "sources.kafka.recovery",
        "sources.prometheus.scan",
        "sources.prometheus.series",
        "sources.prometheus.snapshot",
        "sources.prometheus.window",
        "sources.synthetic.habits",
        "sources.synthetic.snapshot",
    }
)
#: Third-party and standard modules that mean I/O (sockets, event loops, threads).
IO_MODULES: Final = frozenset(
    {"trio", "trio_websocket", "socket", "selectors", "asyncio", "threading", "httpx", "anyio"}
)
#: Justified exceptions: module -> I/O modules it may import.
ALLOWED: Final = {
    # the reader's wait in DropOldestQueue is a Trio parking lot (like a memory channel)
    "core.queue": frozenset({"trio"}),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def sans_io() -> frozenset[str]:
    """Every module that must do no I/O: the sans-IO packages whole, and the extras."""
    whole = {
        name
        for name in modules()
        if name.split(".")[0] in SANS_IO_PACKAGES and name != "config.cli"
    }
    return frozenset(whole | SANS_IO_EXTRA)


#: The layers, lowest first: a module imports only from its own group or a lower rank.
#: The command line sits above the server it runs, so it ranks apart from config. A
#: subpackage ranks with its package (``core.access`` is ``core``); between sibling
#: subpackages, :data:`SIBLINGS` rules.
RANK: Final = {
    "_exceptions": 0,
    "config": 1,
    "wire": 1,
    "core": 2,
    "protocol": 2,
    "lowlevel": 3,
    "sources": 3,
    "ingest": 3,
    "cluster": 4,
    "net": 5,
    "asgi": 6,
    "cli": 7,
    "__main__": 8,
}


#: Sibling subpackages that may import each other (importer, imported): otherwise a
#: subpackage uses its own modules, its parent package's and lower layers only, so
#: each source, say, stands on its own.
SIBLINGS: Final = frozenset(
    {
        # a kafka source merges the broker's exposition (--prometheus-url)
        ("sources.kafka", "sources.prometheus"),
        # a group's history answer asks whether the connection may read that group
        ("core.lag", "core.access"),
        # lag is tracked from snapshots; access filters the metrics and bounds views
        ("core.lag", "core.metrics"),
        ("core.access", "core.metrics"),
    }
)


def group(name: str) -> str:
    """The layer group of module *name*: its subpackage (``cli`` for the command line)."""
    return "cli" if name == "config.cli" else name.split(".")[0]


def _type_checking_lines(tree: ast.Module) -> set[int]:
    """Line numbers inside ``if TYPE_CHECKING:`` blocks."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and (
            (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
            or (isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING")
        ):
            for child in node.body:
                for sub in ast.walk(child):
                    if hasattr(sub, "lineno"):
                        lines.add(sub.lineno)
    return lines


def imports(name: str, path: Path) -> Iterator[tuple[str, bool]]:
    """``(imported module, runs at import time)`` for every import in *path*; modules of
    the package are given relative to it (``core.hub``, ``sources.promql``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    typing_only = _type_checking_lines(tree)
    package = name.split(".")[:-1] if path.name != "__init__.py" else name.split(".")
    if name == "":
        package = []
    for node in ast.walk(tree):
        runs = getattr(node, "lineno", 0) not in typing_only
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, runs
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                module = node.module or ""
                if module == PACKAGE or module.startswith(PACKAGE + "."):
                    module = module[len(PACKAGE) + 1 :]
                    yield module, runs
                else:
                    yield module, runs
                continue
            base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
            if node.module:
                yield ".".join([*base, node.module]), runs
            else:  # from . import x: x may be a module
                for alias in node.names:
                    yield ".".join([*base, alias.name]), runs


def graph(*, runtime_only: bool = False) -> dict[str, set[str]]:
    found = modules()
    edges: dict[str, set[str]] = {name: set() for name in found}
    for name, path in found.items():
        for target, runs in imports(name, path):
            if runtime_only and not runs:
                continue
            # `from .x import y` names module x; `from . import sub` names sub if it is one
            while target and target not in found:
                target = target.rpartition(".")[0]
            if target in found and target != name and not (name == "" or target == ""):
                edges[name].add(target)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return out


def test_the_import_graph_has_no_cycles() -> None:
    found = cycles(graph())
    assert found == [], f"import cycles: {found}"


def test_the_cycle_finder_finds_a_cycle() -> None:
    """The check above can fail: a two-module and a three-module cycle are found."""
    edges = {"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"e"}, "e": {"c"}, "f": {"a"}}
    assert cycles(edges) == [["a", "b"], ["c", "d", "e"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_relative_and_type_checking_imports() -> None:
    edges = graph()
    assert "core.hub" in edges["core.session"]  # from .hub import ...
    assert "config.settings" in edges["core.session"]  # under TYPE_CHECKING
    assert "config.settings" not in graph(runtime_only=True)["core.session"]
    assert "sources" in edges["net.services"]  # from ..sources import ...


def direct_io(name: str) -> set[str]:
    """The I/O modules *name* itself imports at run time (minus its allowances)."""
    allowed = ALLOWED.get(name, frozenset())
    return {
        target
        for target, runs in imports(name, modules()[name])
        if runs and target.split(".")[0] in IO_MODULES - allowed
    }


def io_through(name: str, edges: dict[str, set[str]]) -> dict[str, set[str]]:
    """Every module reachable from *name* at run time that imports I/O, with what."""
    seen: set[str] = set()
    todo = [name]
    found: dict[str, set[str]] = {}
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        io = direct_io(current)
        if io:
            found[current] = io
        todo.extend(edges[current])
    return found


@pytest.mark.parametrize("name", sorted(sans_io()))
def test_a_sans_io_module_does_no_io(name: str) -> None:
    assert name in modules(), f"{name} is listed as sans-IO but does not exist"
    found = io_through(name, graph(runtime_only=True))
    assert found == {}, f"{name} does I/O through {found}"


def test_the_io_finder_sees_io_through_imports() -> None:
    """The check above can fail: the server does I/O through its session and itself."""
    found = io_through("net.server", graph(runtime_only=True))
    assert "trio" in found["net.server"]
    assert "net.session" in found


def upward(edges: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Imports that go up a layer, or across two groups of one rank."""
    bad = []
    for name, targets in sorted(edges.items()):
        for target in sorted(targets):
            a, b = group(name), group(target)
            if a == b:
                continue
            if RANK[b] >= RANK[a]:
                bad.append((name, target))
    return bad


def test_every_module_has_a_layer() -> None:
    missing = {group(name) for name in modules() if name} - set(RANK)
    assert missing == set(), f"no layer for {missing}: add it to RANK"


def test_nothing_imports_upward() -> None:
    assert upward(graph()) == []


def test_the_upward_finder_finds_an_upward_import() -> None:
    """The check above can fail: core importing net, and wire importing config."""
    edges = {
        "core.hub": {"net.transport"},
        "wire.codec": {"config.settings"},
        "net.x": {"core.hub"},
    }
    assert upward(edges) == [("core.hub", "net.transport"), ("wire.codec", "config.settings")]


def test_the_sans_io_packages_are_checked_whole() -> None:
    names = sans_io()
    assert {"core.hub", "wire.websocket.frames", "config.settings"} <= names
    assert "config.cli" not in names


def subpackage(name: str) -> str:
    """The innermost subpackage holding module *name* (``sources.kafka`` for
    ``sources.kafka.worker``), or ``""`` for a module of a top-level package."""
    parts = name.split(".")
    package = parts if ROOT.joinpath(*parts).is_dir() else parts[:-1]
    return ".".join(package) if len(package) >= 2 else ""


def across(edges: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Imports from one subpackage into a sibling that :data:`SIBLINGS` does not list."""
    bad = []
    for name, targets in sorted(edges.items()):
        a = subpackage(name)
        for target in sorted(targets):
            b = subpackage(target)
            if not a or not b or a == b or group(name) != group(target):
                continue  # within one subpackage, or to or from a package's own modules
            if a.startswith(b + ".") or b.startswith(a + "."):
                continue  # a subpackage and one inside it
            if (a, b) not in SIBLINGS:
                bad.append((name, target))
    return bad


def test_sibling_subpackages_import_each_other_only_as_listed() -> None:
    assert across(graph()) == []


def test_every_listed_sibling_import_exists() -> None:
    """A pair in SIBLINGS that no import needs any more is taken out."""
    used = {(subpackage(a), subpackage(b)) for a, ts in graph().items() for b in ts}
    assert used >= SIBLINGS


def test_the_sibling_finder_finds_a_sibling_import() -> None:
    """The check above can fail: one source reaching into another."""
    edges = {
        "sources.synthetic.source": {"sources.kafka.errors", "sources.promql"},
        "sources.kafka.source": {"sources.prometheus.source", "core.hub"},
        "sources": {"sources.kafka.source"},
    }
    assert across(edges) == [("sources.synthetic.source", "sources.kafka.errors")]
    assert subpackage("sources.kafka.worker") == "sources.kafka"
    assert subpackage("sources.kafka") == "sources.kafka"
    assert subpackage("core.hub") == ""
