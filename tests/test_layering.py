"""Imports inside the package point down the layers, never up (README, "How the code is organised").

Every module under ``src/graphile_worker`` is parsed, not imported, so imports inside
functions and under ``if TYPE_CHECKING:`` count as much as the ones at the top: a
type-only import that points up is still a cycle for whoever reads the code, and the
first step towards a runtime one. Each module belongs to the unit named by its first
component (``graphile_worker.sql.jobs`` to ``sql``), and each unit to one layer of
:data:`LAYERS`. A module may import from its own unit and from lower layers; units that
share a layer do not import each other.
"""

from __future__ import annotations

import ast
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = "graphile_worker"
SOURCE = Path(__file__).resolve().parents[1] / "src" / PACKAGE

LAYERS: tuple[tuple[str, ...], ...] = (
    ("_error_text", "_json", "_humanize"),  # no imports from the package at all
    ("errors",),
    ("_validate",),  # the checks job options share
    ("spec",),
    ("inspection", "_log_fields"),  # queue snapshots, which sql decodes into; log fields
    ("_payload",),  # a job on its way in: payload JSON, identifier, spec
    ("_job_defaults",),  # what a task or payload class fills in for its jobs
    ("sql",),  # statements, operations and the runners that drive them
    ("drivers",),
    ("migrations",),
    ("schema",),
    ("recovery",),  # the worker registry and the sweep, which utils and the worker run
    ("utils",),  # below context, whose ctx.utils is a WorkerUtils
    ("context",),
    ("task",),
    ("crontab", "hooks"),
    ("sqlalchemy", "alembic_support", "embedded", "otel"),  # integrations with other tools
    ("prometheus",),  # metrics from hooks, queue depth from utils (prometheus extra)
    ("worker",),
    ("testing",),  # fixtures and runners for users' tests, over the worker and embedded
    ("_demo",),
    ("admin",),  # the optional web admin (Starlette); `graphile-worker admin` serves it
    ("cli",),
    ("__init__",),  # the package's own __init__: the public facade, imported by nobody
)
"""Bottom to top. Each entry is a layer; the names are the units in it."""

EXCEPTIONS: dict[tuple[str, str], str] = {}
"""(importing module, imported module) -> why this upward edge is allowed. None so far."""

_RANK = {unit: rank for rank, layer in enumerate(LAYERS) for unit in layer}


@dataclass(frozen=True)
class Edge:
    """One import of a package module by another."""

    importer: str
    imported: str
    line: int
    kind: str  # "runtime", "type checking" or "in a function"

    def __str__(self) -> str:
        low, high = unit_of(self.importer), unit_of(self.imported)
        return (
            f"{self.importer} -> {self.imported} (line {self.line}, {self.kind}): "
            f"{low!r} (layer {_RANK.get(low)}) imports {high!r} (layer {_RANK.get(high)})"
        )


def unit_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def package_modules(root: Path) -> dict[str, Path]:
    """Every module of the package under ``root``: dotted name -> file.

    Only directories with an ``__init__.py`` are packages; others (the Alembic scripts
    shipped as data) are not modules of ours. Symbolic links are not followed.
    """
    modules: dict[str, Path] = {}
    for directory, subdirectories, files in os.walk(root):
        here = Path(directory)
        subdirectories[:] = sorted(
            name for name in subdirectories if (here / name / "__init__.py").is_file()
        )
        if not (here / "__init__.py").is_file():
            continue
        package = ".".join((PACKAGE, *here.relative_to(root).parts))
        for name in files:
            if not name.endswith(".py"):
                continue
            stem = name[: -len(".py")]
            modules[package if stem == "__init__" else f"{package}.{stem}"] = here / name
    return modules


def _type_checking_block(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _Imports(ast.NodeVisitor):
    """The package modules one module imports, with where and how."""

    def __init__(self, module: str, is_package: bool, modules: dict[str, Path]) -> None:
        self.module = module
        self.package = module if is_package else module.rpartition(".")[0]
        self.modules = modules
        self.edges: list[Edge] = []
        self._kinds = ["runtime"]

    def visit_If(self, node: ast.If) -> None:
        if not _type_checking_block(node):
            self.generic_visit(node)
            return
        self._kinds.append("type checking")
        for statement in node.body:
            self.visit(statement)
        self._kinds.pop()
        for statement in node.orelse:
            self.visit(statement)

    def _visit_function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self._kinds.append("in a function")
        self.generic_visit(node)
        self._kinds.pop()

    visit_FunctionDef = _visit_function
    visit_AsyncFunctionDef = _visit_function

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.package.split(".")
            base = base[: len(base) - (node.level - 1)]
            source = ".".join([*base, *([node.module] if node.module else [])])
        else:
            source = node.module or ""
        for alias in node.names:
            # "from . import schema" imports a module; "from .spec import Job" a name.
            submodule = f"{source}.{alias.name}"
            self._add(submodule if submodule in self.modules else source, node.lineno)

    def _add(self, imported: str, line: int) -> None:
        edge = Edge(self.module, imported, line, self._kinds[-1])
        if (imported == PACKAGE or imported.startswith(f"{PACKAGE}.")) and edge not in self.edges:
            self.edges.append(edge)


def import_edges(root: Path) -> list[Edge]:
    """Every import of one package module by another, in the package under ``root``."""
    modules = package_modules(root)
    edges: list[Edge] = []
    for module, path in sorted(modules.items()):
        visitor = _Imports(module, path.name == "__init__.py", modules)
        visitor.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        edges.extend(visitor.edges)
    return edges


def upward_edges(root: Path) -> list[Edge]:
    """The imports that point up the layers, or sideways to a peer, and are not excepted."""
    wrong = []
    for edge in import_edges(root):
        low, high = unit_of(edge.importer), unit_of(edge.imported)
        if low == high or (edge.importer, edge.imported) in EXCEPTIONS:
            continue
        if _RANK[high] >= _RANK[low]:
            wrong.append(edge)
    return wrong


def test_every_unit_has_a_layer() -> None:
    units = {unit_of(module) for module in package_modules(SOURCE)}
    assert units - set(_RANK) == set(), "add the new unit to LAYERS"
    assert set(_RANK) - units == set(), "LAYERS names a unit that no longer exists"


def test_the_parser_sees_imports() -> None:
    """A guard on the parser: without edges, the test below would pass for nothing."""
    edges = import_edges(SOURCE)
    kinds = {edge.kind for edge in edges}
    assert kinds == {"runtime", "type checking", "in a function"}
    assert any(edge.imported == f"{PACKAGE}.errors" for edge in edges)


def test_imports_point_down() -> None:
    wrong = upward_edges(SOURCE)
    if wrong:
        pytest.fail(
            "imports that point up the layers (fix them, or add a documented entry to "
            "EXCEPTIONS):\n" + "\n".join(f"  {edge}" for edge in wrong)
        )


def test_exceptions_are_still_needed() -> None:
    edges = {(edge.importer, edge.imported) for edge in import_edges(SOURCE)}
    assert set(EXCEPTIONS) <= edges, "remove exceptions for imports that are gone"
