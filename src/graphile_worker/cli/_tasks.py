"""How the command line finds task handlers (``--tasks``), shared by ``run`` and ``cleanup``.

Each ``--tasks`` value is a dotted module name (``myapp.tasks``), ``module:attribute``
(``myapp.tasks:registry``) or a path to a ``.py`` file (``./tasks.py``);
:func:`graphile_worker.task.load_tasks` collects every task function and handler class the
module defines or imports, or what its ``tasks`` attribute (or the named one) holds.
The current directory is importable, as with ``python -m``, so ``--tasks myapp.tasks`` works
from a project's root. Without ``--tasks``, a ``tasks.py`` file or ``tasks/`` package in
the current directory is used: the Python spelling of Node's default ``./tasks`` folder.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..errors import TaskDefinitionError

if TYPE_CHECKING:
    from ..task import TaskRegistry

__all__ = ["TASKS_HELP", "load_registry", "tasks_option"]

TASKS_HELP = (
    "Module (myapp.tasks, myapp.tasks:registry) or .py file whose task functions and "
    "handler classes to use; repeatable. Default: tasks.py or the tasks/ package in the "
    "current directory."
)

tasks_option = click.option(
    "--tasks", "task_targets", multiple=True, metavar="MODULE_OR_FILE", help=TASKS_HELP
)


def _default_target() -> str | None:
    cwd = Path.cwd()
    if (cwd / "tasks.py").is_file() or (cwd / "tasks" / "__init__.py").is_file():
        return "tasks"
    return None


def _make_cwd_importable() -> None:
    # A console script's sys.path starts with the script's directory, not the user's;
    # python -m and most tools (uvicorn, celery) make the working directory importable.
    # Only module names need it: a file target puts its own directory on sys.path.
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)


def load_registry(targets: tuple[str, ...]) -> TaskRegistry:
    """One registry with the tasks of every target (or of the default ``tasks`` module).

    Raises:
        TaskDefinitionError: a module cannot be loaded, defines no task, or two modules
            define the same identifier; or nothing was named and there is no default.
    """
    from ..task import TaskRegistry, load_tasks
    from ..task._import import is_path_target

    if not targets:
        default = _default_target()
        if default is None:
            raise TaskDefinitionError(
                "no --tasks given and no tasks.py or tasks/ package in the current directory; "
                "pass --tasks myapp.tasks or --tasks path/to/tasks.py"
            )
        targets = (default,)
    if not all(is_path_target(target) for target in targets):
        _make_cwd_importable()
    registry = TaskRegistry()
    for target in targets:
        for task in load_tasks(target):
            registry.add(task)
    return registry
