"""The ``graphile-worker demo`` command's innards: example tasks, progress display, runner.

Private: nothing here is API. The demo is the README's first command, so it must work on a
fresh machine with nothing running; see :mod:`._runner` for what it does and checks.
"""

from __future__ import annotations

from ._runner import DemoReport, DemoSettings, open_database, run_demo

__all__ = ["DemoReport", "DemoSettings", "open_database", "run_demo"]
