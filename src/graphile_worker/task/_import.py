"""Importing the module a ``--tasks`` target names: a dotted module name or a file path.

A file is imported under its real module name, never a made-up one: ``app/tasks.py`` next to
``app/__init__.py`` becomes ``app.tasks`` with the directory above ``app`` on ``sys.path``
(what pytest's default import mode does). The application and the worker then share one
module object, so a payload class imported by both is one class, and relative imports inside
the file work. A plain ``./tasks.py`` becomes module ``tasks`` with its directory on
``sys.path``, as ``python tasks.py`` would put it there, so it can import its neighbours.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from types import ModuleType

from ..errors import TaskDefinitionError

__all__ = ["import_target", "is_path_target"]


def is_path_target(target: str) -> bool:
    """Whether ``target`` names a file or directory rather than a dotted module name."""
    separators = [os.sep] + ([os.altsep] if os.altsep else [])
    return target.endswith(".py") or any(separator in target for separator in separators)


def import_target(target: str) -> tuple[ModuleType, str | None]:
    """Import what ``target`` names; return the module and the ``:attribute`` part, if any.

    ``target`` is ``package.module``, ``package.module:attribute`` or a path to a ``.py``
    file or a package directory.

    Raises:
        TaskDefinitionError: the target is malformed, missing, or fails to import; the
            original exception is the ``__cause__``.
    """
    if not target.strip():
        raise TaskDefinitionError("the tasks target is empty; name a module or a .py file")
    if is_path_target(target):
        return _import_path(target), None
    module_name, _, attribute = target.partition(":")
    if not all(part.isidentifier() for part in module_name.split(".")) or (
        attribute and not attribute.isidentifier()
    ):
        raise TaskDefinitionError(
            f"{target!r} is neither a module name (myapp.tasks, myapp.tasks:registry) nor a "
            "path to a .py file"
        )
    return _import_module(module_name, target), attribute or None


def _import_module(name: str, target: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        missing = error.name
        if missing is not None and (name == missing or name.startswith(f"{missing}.")):
            raise TaskDefinitionError(
                f"cannot load tasks from {target!r}: there is no module named {missing!r}; "
                "check the spelling, and that its directory is on sys.path (run from the "
                "project's root, or pass a path to the .py file)"
            ) from error
        raise _import_failed(name, target, error) from error
    except Exception as error:
        raise _import_failed(name, target, error) from error


def _import_failed(name: str, target: str, error: Exception) -> TaskDefinitionError:
    return TaskDefinitionError(
        f"cannot load tasks from {target!r}: importing module {name!r} raised "
        f"{type(error).__name__}: {error}"
    )


def _import_path(target: str) -> ModuleType:
    path = Path(target).resolve()
    if path.is_dir():
        file = path / "__init__.py"
        if not file.is_file():
            raise TaskDefinitionError(
                f"cannot load tasks from {target!r}: the directory has no __init__.py, so it "
                "is not a package; point at a .py file instead"
            )
        parts, base = [path.name], path.parent
    elif path.is_file():
        if path.suffix != ".py":
            raise TaskDefinitionError(f"cannot load tasks from {target!r}: not a .py file")
        file = path
        if path.stem == "__init__":
            parts, base = [path.parent.name], path.parent.parent
        else:
            parts, base = [path.stem], path.parent
    else:
        raise TaskDefinitionError(f"cannot load tasks from {target!r}: no such file")
    # Climb out of enclosing packages so the module gets its real dotted name.
    while (base / "__init__.py").is_file() and base.parent != base:
        parts.insert(0, base.name)
        base = base.parent
    name = ".".join(parts)
    if not all(part.isidentifier() for part in parts):
        raise TaskDefinitionError(
            f"cannot load tasks from {target!r}: it would be module {name!r}, which is not a "
            "valid module name; rename the file (letters, digits and underscores)"
        )
    if str(base) not in sys.path:
        sys.path.insert(0, str(base))
    module = _import_module(name, target)
    loaded_from = getattr(module, "__file__", None)
    if loaded_from is None or Path(loaded_from).resolve() != file:
        raise TaskDefinitionError(
            f"cannot load tasks from {target!r}: the module name {name!r} already belongs to "
            f"{loaded_from or 'a built-in module'}; rename the file"
        )
    return module
