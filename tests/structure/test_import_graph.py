"""The import graph of the ``srops`` package: no cycles, and every arrow points down a floor.

Every ``import`` in every module counts, including those inside functions (an import moved into a function
to break a cycle still closes it at run time); only imports under ``if TYPE_CHECKING:`` are left out.

Floors, bottom to top (a module may import its own floor and those below, never one above):

0. ``srops._checks``, ``srops._ext``, ``srops._build_info``, ``srops.image``: no srops import beyond floor 0
1. ``srops._backend``: backend selection
2. ``srops.ops.<op>``: one folder per op (frontend, reference, compiled and Triton glue); peers never import
   each other
3. ``srops.functional``, ``srops.nn``: the public op API and the modules
4. ``srops`` itself, ``srops.info``, ``srops.profiling``, ``srops.testing``, ``srops.compare_backends``, ``srops.demo``
5. ``srops.models.registry``; 6. ``srops.models`` (the package) and ``srops.models.archs``: the networks
7. the training and inference engine (every other module of ``srops.models``)
8. the command-line modules (``python -m srops.models.<name>``), which nothing in srops imports

Run ``python -m pytest tests/structure -q`` to check; ``python tests/structure/test_import_graph.py`` prints
the graph.
"""
from __future__ import annotations

import ast
import functools
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "srops"

FLOORS: dict[str, int] = {
    "srops._checks": 0, "srops._ext": 0, "srops._build_info": 0, "srops.image": 0,
    "srops._backend": 1,
    "srops.ops": 2,
    "srops.functional": 3, "srops.nn": 3,
    "srops": 4, "srops.info": 4, "srops.profiling": 4, "srops.testing": 4,
    "srops.compare_backends": 4, "srops.demo": 4,
    "srops.models.registry": 5,
    "srops.models": 6, "srops.models.archs": 6,
}
ENGINE = 7
#: The command-line modules of srops.models (entry points; no module of the package imports them).
CLI = ("train", "test", "upscale", "demo", "reproduce", "export", "convert_checkpoint")
CLI_FLOOR = 8


def modules(package: Path = PACKAGE) -> dict[str, Path]:
    """Dotted module name → file, for every ``.py`` under ``package`` (a package is its ``__init__``)."""
    out = {}
    for f in sorted(package.rglob("*.py")):
        parts = list(f.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = f
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The srops modules ``name`` imports anywhere in its file (``TYPE_CHECKING`` blocks excepted).

    ``from a.b import c`` counts as an import of ``a.b.c`` when that is a module, else of ``a.b``; a name
    that is no known module counts as its longest known prefix.
    """
    is_package = path.name == "__init__.py"
    found: set[str] = set()

    class Visitor(ast.NodeVisitor):
        def visit_If(self, node: ast.If) -> None:
            if _is_type_checking(node.test):
                for child in node.orelse:
                    self.visit(child)
            else:
                self.generic_visit(node)

        def visit_Import(self, node: ast.Import) -> None:
            found.update(alias.name for alias in node.names)

        def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
            base = node.module or ""
            if node.level:
                here = name.split(".") if is_package else name.split(".")[:-1]
                here = here[:len(here) - (node.level - 1)]
                base = ".".join(here + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in known else base)

    Visitor().visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
    resolved = set()
    for target in found:
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != name:
            resolved.add(target)
    return resolved


@functools.lru_cache(maxsize=1)
def graph() -> dict[str, set[str]]:
    """The import graph of srops (read once per run; the tests only read it)."""
    known = modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def floor(name: str) -> int:
    """The floor of module ``name`` (see the module docstring)."""
    if name.startswith("srops.models."):
        head = name.split(".")[2]
        if head in CLI:
            return CLI_FLOOR
        if name not in FLOORS and not name.startswith(("srops.models.archs", "srops.models.registry")):
            return ENGINE
    best = max((p for p in FLOORS if name == p or name.startswith(p + ".")), key=len, default=None)
    if best is None:
        raise KeyError(f"module {name!r} is on no floor: add it to FLOORS in {__file__}")
    return FLOORS[best]


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of ``g`` with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in sorted(g):
        if root in index:
            continue
        work = [(root, iter(sorted(g[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(g.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    comp.append(member)
                    if member == node:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_cycle_finder_finds_a_planted_cycle() -> None:
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(g) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_imports_inside_functions_count(tmp_path: Path) -> None:
    pkg = tmp_path / "srops"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "a.py").write_text("def f():\n    from srops.sub import b\n")
    (pkg / "sub" / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import a\n"
                                      "from .a import f\n")
    known = modules(pkg)
    assert imports_of("srops.sub.a", known["srops.sub.a"], known) == {"srops.sub.b"}
    assert imports_of("srops.sub.b", known["srops.sub.b"], known) == {"srops.sub.a"}


def test_no_import_cycles() -> None:
    found = cycles(graph())
    assert not found, "import cycles (imports inside functions count): " + "; ".join(" <-> ".join(c) for c in found)


def test_arrows_point_down() -> None:
    g = graph()
    upward = [f"{a} (floor {floor(a)}) imports {b} (floor {floor(b)})"
              for a in sorted(g) for b in sorted(g[a]) if floor(b) > floor(a)]
    assert not upward, "imports pointing up a floor:\n" + "\n".join(upward)


def test_op_folders_are_peers() -> None:
    g = graph()

    def op_of(m: str) -> str | None:
        parts = m.split(".")
        return parts[2] if len(parts) > 2 and parts[:2] == ["srops", "ops"] else None

    across = [f"{a} imports {b}" for a in sorted(g) for b in sorted(g[a])
              if op_of(a) and op_of(b) and op_of(a) != op_of(b)]
    assert not across, "op folders importing each other:\n" + "\n".join(across)


@pytest.mark.parametrize("cli", CLI)
def test_command_line_modules_exist(cli: str) -> None:
    """The CLI list names real modules (a renamed one would otherwise drop out of the check silently)."""
    assert (PACKAGE / "models" / f"{cli}.py").is_file()


if __name__ == "__main__":
    g = graph()
    for name in sorted(g, key=lambda m: (floor(m), m)):
        print(f"[{floor(name)}] {name} -> {', '.join(sorted(g[name])) or '-'}")
    sys.exit(1 if cycles(g) else 0)
