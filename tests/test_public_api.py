"""The public surface: what each public module declares is what it holds, and nothing heavy loads.

A public module is one whose dotted path has no component starting with ``_``; everything
else may change without notice. Each public module must say what it offers in ``__all__``
(the list pyright's ``--verifytypes`` and mypy's ``no_implicit_reexport`` read), and a
class it re-exports must name, in ``__module__``, a public module that offers it too, so
that reprs, docs and type checkers show users an import path that works. anyio's
``tests/test_all_attributes.py`` and trio's ``_tests/test_exports.py`` check the same.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess
import sys
from types import ModuleType

import pytest

import graphile_worker

_PACKAGE = graphile_worker.__name__


def _is_public(module_name: str) -> bool:
    return not any(part.startswith("_") for part in module_name.split("."))


def _public_module_names() -> list[str]:
    walk = pkgutil.walk_packages(graphile_worker.__path__, prefix=f"{_PACKAGE}.")
    return sorted([_PACKAGE, *(info.name for info in walk if _is_public(info.name))])


PUBLIC_MODULES = _public_module_names()


@pytest.fixture(params=PUBLIC_MODULES)
def module(request: pytest.FixtureRequest) -> ModuleType:
    return importlib.import_module(request.param)


def _declared(module: ModuleType) -> list[str]:
    declared = getattr(module, "__all__", None)
    assert isinstance(declared, (list, tuple)), f"{module.__name__} has no __all__"
    return list(declared)


def test_the_walk_finds_the_public_modules() -> None:
    """A guard on the walk itself: a broken walk would make every other test pass."""
    assert {f"{_PACKAGE}.errors", f"{_PACKAGE}.hooks", f"{_PACKAGE}.drivers.base"} <= set(
        PUBLIC_MODULES
    )
    assert not [name for name in PUBLIC_MODULES if not _is_public(name)]


def test_module_declares_all_once(module: ModuleType) -> None:
    declared = _declared(module)
    assert all(isinstance(name, str) for name in declared)
    duplicates = sorted({name for name in declared if declared.count(name) > 1})
    assert duplicates == [], f"{module.__name__}.__all__ repeats {duplicates}"


def test_every_declared_name_exists(module: ModuleType) -> None:
    missing = [name for name in _declared(module) if not hasattr(module, name)]
    assert missing == [], f"{module.__name__}.__all__ names what it lacks: {missing}"


def test_every_public_definition_is_declared(module: ModuleType) -> None:
    """A public function or class whose home is this module is in its ``__all__``."""
    declared = set(_declared(module))
    undeclared = sorted(
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and (inspect.isclass(value) or inspect.isfunction(value))
        and value.__module__ == module.__name__
        and name not in declared
    )
    assert undeclared == [], f"{module.__name__} leaves out of __all__: {undeclared}"


def test_exported_classes_name_a_public_home(module: ModuleType) -> None:
    """An exported class's ``__module__`` is a public module that exports it under its name."""
    wrong = []
    for name in _declared(module):
        value = getattr(module, name)
        if not inspect.isclass(value) or not value.__module__.startswith(f"{_PACKAGE}."):
            continue
        home_name = value.__module__
        home = sys.modules.get(home_name)
        if (
            not _is_public(home_name)
            or home is None
            or value.__name__ not in getattr(home, "__all__", ())
            or getattr(home, value.__name__, None) is not value
        ):
            wrong.append(f"{name} (__module__ {home_name!r})")
    assert wrong == [], f"{module.__name__} exports classes whose home is not public: {wrong}"


def test_root_exports_every_public_class_it_holds() -> None:
    held = {
        name
        for name in dir(graphile_worker)
        if not name.startswith("_") and inspect.isclass(getattr(graphile_worker, name))
    }
    assert held - set(graphile_worker.__all__) == set()


def test_import_loads_no_driver_or_integration() -> None:
    code = (
        "import sys, graphile_worker\n"
        "heavy = {'asyncpg', 'psycopg', 'psycopg_pool', 'alembic', 'trio', 'greenlet'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout.strip()
    assert loaded == "[]"
