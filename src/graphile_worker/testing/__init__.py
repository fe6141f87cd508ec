"""Helpers for testing your tasks, and the pytest plugin that provides them as fixtures.

The plugin is registered with pytest through the ``pytest11`` entry point, under the name
``graphile_worker.testing``, so installing graphile-worker makes the fixtures available
to every test suite. Registering is all it does: nothing starts, connects or reads the
environment until a test asks for a fixture. ``-p no:graphile_worker.testing`` turns it
off; ``pytest_plugins = ["graphile_worker.testing"]`` in a top-level ``conftest.py`` (or
``-p graphile_worker.testing``) turns it on where entry points are not loaded
(``PYTEST_DISABLE_PLUGIN_AUTOLOAD``), and is harmless where they are.

==================================  ======================================================
fixture                             what it gives
==================================  ======================================================
``graphile_worker_database_url``    a migrated database of the test's own (function)
``graphile_worker_utils``           :class:`~graphile_worker.WorkerUtils` on it (async)
``graphile_worker_sync_utils``      :class:`~graphile_worker.SyncWorkerUtils` on it
``graphile_worker_run_jobs``        a :class:`JobRunner`: run what is due (async)
``graphile_worker_sync_run_jobs``   a :class:`SyncJobRunner`: the same from ``def`` tests
``graphile_worker_driver``          the open driver the async fixtures share (async)
``graphile_worker_driver_name``     ``"auto"``; override to pick a driver
``graphile_worker_schema``          ``"graphile_worker"``; override for a custom schema
``graphile_worker_cluster``         the session's server (session)
==================================  ======================================================

Async fixtures run on the test's anyio backend (anyio's pytest plugin, which comes with
anyio). To call a handler without any database, build its context with
:func:`context_for_testing`.
"""

from __future__ import annotations

from ..context import StandaloneContext as StandaloneContext
from ..context import context_for_testing as context_for_testing
from ._outcomes import JobOutcome as JobOutcome
from ._outcomes import OutcomeStatus as OutcomeStatus
from ._plugin import graphile_worker_cluster as graphile_worker_cluster
from ._plugin import graphile_worker_database_url as graphile_worker_database_url
from ._plugin import graphile_worker_driver as graphile_worker_driver
from ._plugin import graphile_worker_driver_name as graphile_worker_driver_name
from ._plugin import graphile_worker_run_jobs as graphile_worker_run_jobs
from ._plugin import graphile_worker_schema as graphile_worker_schema
from ._plugin import graphile_worker_sync_run_jobs as graphile_worker_sync_run_jobs
from ._plugin import graphile_worker_sync_utils as graphile_worker_sync_utils
from ._plugin import graphile_worker_template_database as graphile_worker_template_database
from ._plugin import graphile_worker_utils as graphile_worker_utils
from ._plugin import pytest_addoption as pytest_addoption
from ._runner import JobRunner as JobRunner
from ._runner import SyncJobRunner as SyncJobRunner

# The fixtures and the hook are imported for pytest, which finds them as this module's
# attributes; they are not API to import, so __all__ leaves them out.
__all__ = [
    "JobOutcome",
    "JobRunner",
    "OutcomeStatus",
    "StandaloneContext",
    "SyncJobRunner",
    "context_for_testing",
]
