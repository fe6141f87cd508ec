"""Dead-worker recovery: heartbeats, a registry of live workers, and the sweep.

A worker killed without a chance to clean up (``kill -9``, a lost machine, an out-of-memory
kill) leaves its jobs and named queues locked. Node graphile-worker frees such locks after
four hours. Our workers register in the schema's worker registry, heartbeat while they
live (:class:`RecoveryOptions`), and sweep: a worker silent for longer than its
``stale_after`` is given up, and everything it locks is handed back:

* each job is unlocked, runnable again after the worker's ``recovery_delay``, with a
  ``last_error`` beginning ``"Recovered: "``; its attempt stays spent if the worker reported
  it running, and is refunded otherwise (see :class:`StaleJob.spends_attempt
  <StaleJob>` for the exact rule, which keeps a job that kills its worker from retrying
  forever);
* jobs flagged ``long-running`` wait for ``long_running_stale_after`` instead;
* its named queues are unlocked, and its registry row is removed.

Jobs locked by workers that never registered (Node workers, or ours with recovery off) are
never touched. A worker's ``recover_job`` hooks may decide per job (:class:`RecoverNow`,
:class:`RecoverLater`, :class:`FailJob`); ``WorkerUtils.sweep()`` and the CLI's ``sweep``
use the default. The sweep takes a transaction-scoped advisory lock, so it is safe to run
from many workers at once and through PgBouncer in transaction mode.
"""

from ..sql.recovery import LONG_RUNNING_FLAG as LONG_RUNNING_FLAG
from ._options import RecoveryOptions as RecoveryOptions
from ._report import RECOVERED_PREFIX as RECOVERED_PREFIX
from ._report import FailJob as FailJob
from ._report import RecoveredJob as RecoveredJob
from ._report import RecoverJob as RecoverJob
from ._report import RecoverLater as RecoverLater
from ._report import RecoverNow as RecoverNow
from ._report import RecoveryDecision as RecoveryDecision
from ._report import StaleJob as StaleJob
from ._report import SweepReport as SweepReport
from ._report import WorkerInfo as WorkerInfo
from ._sweep import list_workers as list_workers
from ._sweep import list_workers_sync as list_workers_sync
from ._sweep import sweep as sweep
from ._sweep import sweep_sync as sweep_sync

__all__ = [
    "LONG_RUNNING_FLAG",
    "RECOVERED_PREFIX",
    "FailJob",
    "RecoverJob",
    "RecoverLater",
    "RecoverNow",
    "RecoveredJob",
    "RecoveryDecision",
    "RecoveryOptions",
    "StaleJob",
    "SweepReport",
    "WorkerInfo",
    "list_workers",
    "list_workers_sync",
    "sweep",
    "sweep_sync",
]
