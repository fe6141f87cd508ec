"""How a worker is configured (:class:`WorkerOptions`) and what ``run_once`` reports.

Every option is checked when the options are built, so a typo fails at start-up with a
message naming the option, before any connection is opened. Defaults are Node
graphile-worker's (``concurrentJobs`` 1, ``pollInterval`` 2 s, ``maxPoolSize`` 10).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeAlias

from .._validate import check_flags
from ..drivers._opener import canonical_driver_name
from ..drivers.base import DatabaseDriver
from ..errors import ConfigurationError
from ..recovery import RecoveryOptions
from ..sql import DEFAULT_SCHEMA, quote_identifier
from ..task import TaskRegistry
from ._batcher import RETRY_MAX_DELAY, RETRY_WINDOW
from ._cron_clock import CronClock, SystemCronClock
from ._cron_source import CrontabSource, resolve_crontab
from ._local_queue_options import LocalQueueOptions, check_batch_delay, check_local_queue

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.ext.asyncio import AsyncEngine

    from ..crontab import CronItem
    from ..hooks import Observer, Plugin

__all__ = ["ForbiddenFlags", "RunOnceSummary", "WorkerOptions"]

ForbiddenFlags: TypeAlias = (
    Collection[str] | Callable[[], "Collection[str] | Awaitable[Collection[str]]"]
)
"""Flags a worker refuses: a fixed collection, or a (sync or async) function asked before
every claim, so the set can change while the worker runs (a rate limit, a maintenance
window)."""


def _positive_number(name: str, value: object, *, allow_zero: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigurationError(f"{name} must be a finite number of seconds, not {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        limit = "0 or more" if allow_zero else "more than 0"
        raise ConfigurationError(f"{name} must be {limit} seconds, not {value!r}")
    return float(value)


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{name} must be an int of at least 1, not {value!r}")
    return value


def _is_sqlalchemy(value: object) -> bool:
    # By module, so that SQLAlchemy is imported only when the application already did.
    return type(value).__module__.startswith("sqlalchemy.")


def _check_flags(value: object) -> ForbiddenFlags:
    # A function is asked before each claim; only a fixed collection can be checked now.
    if callable(value):
        return value
    return check_flags(value, name="forbidden_flags", error=ConfigurationError)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class WorkerOptions:
    """Everything a :class:`~graphile_worker.worker.Worker` needs; checked when built.

    Attributes:
        tasks: The handlers to run: a :class:`~graphile_worker.task.TaskRegistry`, or
            decorated functions, handler classes and ``Task`` objects (made into one).
            Jobs for any other task identifier are left in the queue for other workers.
        database_url: ``postgresql://...`` (SQLAlchemy URLs too); ``None`` reads
            ``DATABASE_URL``. Ignored when ``driver`` is a driver instance.
        driver: A driver name (``"auto"``, ``"asyncpg"``, ``"psycopg"``,
            ``"psycopg-threaded"``, ``"psycopg-anyio"``), opened for each run and closed
            after it, or an open :class:`~graphile_worker.drivers.DatabaseDriver` the
            application owns (it is never closed by the worker), or the application's
            SQLAlchemy ``Engine``/``AsyncEngine``, whose pool the worker then borrows from
            (made into a :class:`~graphile_worker.drivers.SQLAlchemyEngineDriver` here).
        schema: The graphile-worker schema.
        concurrency: How many jobs run at the same time (Node's ``concurrentJobs``).
        max_pool_size: Connections in the pool the worker opens (``LISTEN`` uses one more).
            With a SQLAlchemy engine as ``driver``: the most connections the worker borrows
            from the engine's pool at once (``LISTEN`` holds one more).
        poll_interval: Seconds between polls when no notification arrives. Notifications
            and a timer for delayed jobs start most jobs long before a poll would.
        forbidden_flags: Jobs carrying any of these flags are not claimed; see
            :data:`ForbiddenFlags`.
        local_queue: Claim jobs in batches and start them from memory; see
            :class:`LocalQueueOptions`. ``None`` (the default) claims as slots free up.
        complete_job_batch_delay: Record successes in batches: the first success of a
            batch waits this many seconds for others to join it, then one statement
            records them all (0: those that finish at about the same moment). ``None``
            (the default) records each success as it happens.
        fail_job_batch_delay: The same for failed attempts.
        outcome_retry_window: Seconds an outcome (success or failure, batched or not) that
            cannot be written because the database is away is retried, with back-off,
            before it is given up (then the job stays locked until it is recovered, and
            runs again). No new job is claimed while an outcome is owed. Default: ten
            minutes. A stopping worker gives what is still owed ten more seconds at most.
        outcome_retry_max_delay: The longest wait between two attempts at an outcome, so
            also how long after the database's return an owed outcome may still wait.
        extensions: Application state handed to every job as ``ctx.extensions``
            (read-only).
        use_local_time: Compare ``run_at`` with this machine's clock instead of the
            database's (Node's ``useNodeTime``), for clocks that disagree.
        shutdown_grace_period: Seconds running jobs may take to finish after a stop is
            requested; after that they are cancelled and released.
        interrupted_job_retry_delay: Seconds a released (interrupted) job waits before any
            worker may run it again.
        install_signal_handlers: Stop gracefully on SIGINT/SIGTERM (a second signal stops at
            once). Turn it off when embedding the worker in an application that handles
            signals itself (a web server). Only possible in the main thread.
        hooks: :class:`~graphile_worker.hooks.Plugin` and
            :class:`~graphile_worker.hooks.Observer` instances.
        prepared_statements: ``False`` behind PgBouncer in transaction mode.
        listen_url: A direct URL to the same database for the one ``LISTEN`` connection,
            when ``database_url`` is a pooler that cannot carry ``LISTEN`` (PgBouncer in
            transaction mode); ``None`` listens through ``database_url``. Ignored when
            ``driver`` is a driver instance.
        migrate: Install or upgrade the schema when the worker starts.
        logger: Where the worker logs (default ``graphile_worker.worker``). The line per
            finished job goes to its child ``<logger>.jobs``, so that it can be silenced
            on its own: ``logging.getLogger("graphile_worker.worker.jobs").setLevel(
            logging.WARNING)`` keeps failures and drops the success lines.
        crontab: Recurring jobs, scheduled while the worker runs (``run()`` and
            ``async with``; ``run_once()`` schedules nothing, as in Node): crontab text
            (a ``str``), a crontab file (a ``pathlib.Path``, read when the options are
            built) or :class:`~graphile_worker.crontab.CronItem` values from
            ``parse_crontab()`` or the ``cron()`` builder. Parsed here, so a bad line
            raises :class:`~graphile_worker.errors.CrontabError` before the worker starts.
            Any number of workers may share one crontab: each minute's job is added once.
        recovery: Dead-worker recovery (see :mod:`graphile_worker.recovery`): the worker
            registers, heartbeats, and hands back the jobs of workers that stopped
            heartbeating. ``None`` turns it off: the worker neither registers nor sweeps,
            and its jobs are left to Node's four-hour lock expiry if it dies.
        retry_undecodable_payloads: Retry a job whose payload does not decode into its
            handler's payload type, as any failure is retried. By default it fails for good
            at once: the same payload fails the same way every time, and 25 attempts over
            three days only delay the alert. Turn it on while producers and workers are
            deployed out of step (new payload fields reaching old workers): the job then
            waits, backing off, for a worker that can read it.
        cron_clock: Where the cron scheduler reads the time and sleeps (default: the system
            clock). Tests pass a
            :class:`~graphile_worker.worker.ManualCronClock` to move through
            minutes, outages and clock jumps without waiting. Nothing else in the worker
            uses it.
    """

    __module__ = "graphile_worker.worker"

    tasks: TaskRegistry | Iterable[object]
    database_url: str | None = None
    driver: str | DatabaseDriver | Engine | AsyncEngine = "auto"
    schema: str = DEFAULT_SCHEMA
    concurrency: int = 1
    max_pool_size: int = 10
    poll_interval: float = 2.0
    forbidden_flags: ForbiddenFlags = ()
    local_queue: LocalQueueOptions | None = None
    complete_job_batch_delay: float | None = None
    fail_job_batch_delay: float | None = None
    outcome_retry_window: float = RETRY_WINDOW
    outcome_retry_max_delay: float = RETRY_MAX_DELAY
    extensions: Mapping[str, object] = dataclasses.field(default_factory=dict)
    use_local_time: bool = False
    shutdown_grace_period: float = 5.0
    interrupted_job_retry_delay: float = 30.0
    install_signal_handlers: bool = True
    hooks: Iterable[Plugin | Observer] = ()
    prepared_statements: bool = True
    listen_url: str | None = None
    migrate: bool = True
    logger: logging.Logger | None = None
    crontab: CrontabSource = None
    cron_clock: CronClock | None = None
    recovery: RecoveryOptions | None = dataclasses.field(default_factory=RecoveryOptions)
    retry_undecodable_payloads: bool = False

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise fields once, here
        registry = self.tasks if isinstance(self.tasks, TaskRegistry) else None
        if registry is None:
            if isinstance(self.tasks, (str, bytes)) or not isinstance(self.tasks, Iterable):
                raise ConfigurationError(
                    f"tasks must be a TaskRegistry or a list of task functions, handler "
                    f"classes or Task objects, not {self.tasks!r:.80}"
                )
            registry = TaskRegistry(self.tasks)
        if len(registry) == 0:
            raise ConfigurationError(
                "a worker needs at least one task; pass tasks=[...] with @task functions or "
                "handler classes"
            )
        set_(self, "tasks", registry)
        if self.database_url is not None and not isinstance(self.database_url, str):
            raise ConfigurationError(f"database_url must be a str, not {self.database_url!r}")
        if self.listen_url is not None and not isinstance(self.listen_url, str):
            raise ConfigurationError(f"listen_url must be a str, not {self.listen_url!r}")
        if isinstance(self.driver, str):
            canonical_driver_name(self.driver)
        elif not isinstance(self.driver, DatabaseDriver) and not _is_sqlalchemy(self.driver):
            raise ConfigurationError(
                f"driver must be a driver name, an open DatabaseDriver or a SQLAlchemy "
                f"Engine/AsyncEngine, not {self.driver!r:.80}"
            )
        quote_identifier(self.schema)
        _positive_int("concurrency", self.concurrency)
        _positive_int("max_pool_size", self.max_pool_size)
        if _is_sqlalchemy(self.driver):
            from ..drivers.sqlalchemy_engine import SQLAlchemyEngineDriver

            engine: Any = self.driver
            set_(self, "driver", SQLAlchemyEngineDriver(engine, max_connections=self.max_pool_size))
        set_(
            self,
            "poll_interval",
            _positive_number("poll_interval", self.poll_interval, allow_zero=False),
        )
        set_(
            self,
            "shutdown_grace_period",
            _positive_number("shutdown_grace_period", self.shutdown_grace_period, allow_zero=True),
        )
        set_(
            self,
            "interrupted_job_retry_delay",
            _positive_number(
                "interrupted_job_retry_delay", self.interrupted_job_retry_delay, allow_zero=True
            ),
        )
        set_(self, "forbidden_flags", _check_flags(self.forbidden_flags))
        local_queue = check_local_queue(self.local_queue, poll_interval=self.poll_interval)
        set_(self, "local_queue", local_queue)
        for name in ("complete_job_batch_delay", "fail_job_batch_delay"):
            set_(self, name, check_batch_delay(name, getattr(self, name)))
        for name, allow_zero in (
            ("outcome_retry_window", True),
            ("outcome_retry_max_delay", False),
        ):
            set_(self, name, _positive_number(name, getattr(self, name), allow_zero=allow_zero))
        if not isinstance(self.extensions, Mapping):
            raise ConfigurationError(f"extensions must be a mapping, not {self.extensions!r:.80}")
        set_(self, "extensions", MappingProxyType(dict(self.extensions)))
        set_(self, "hooks", tuple(self.hooks))
        if self.logger is not None and not isinstance(self.logger, logging.Logger):
            raise ConfigurationError(f"logger must be a logging.Logger, not {self.logger!r:.80}")
        set_(self, "crontab", resolve_crontab(self.crontab))
        if self.recovery is not None and not isinstance(self.recovery, RecoveryOptions):
            raise ConfigurationError(
                f"recovery must be a RecoveryOptions or None, not {self.recovery!r:.80}"
            )
        if self.cron_clock is None:
            set_(self, "cron_clock", SystemCronClock())
        elif not isinstance(self.cron_clock, CronClock):
            raise ConfigurationError(
                f"cron_clock must have now() and async sleep_until(moment), not "
                f"{self.cron_clock!r:.80}"
            )

    @property
    def registry(self) -> TaskRegistry:
        """The tasks as a :class:`~graphile_worker.task.TaskRegistry` (``tasks`` normalised)."""
        assert isinstance(self.tasks, TaskRegistry)
        return self.tasks

    @property
    def cron_items(self) -> tuple[CronItem, ...]:
        """The crontab as validated cron items (``crontab`` normalised; empty without one)."""
        assert isinstance(self.crontab, tuple)
        return self.crontab


@dataclasses.dataclass(frozen=True, slots=True)
class RunOnceSummary:
    """What :meth:`Worker.run_once() <graphile_worker.worker.Worker.run_once>` did.

    Attributes:
        completed: Jobs that succeeded (or that a ``before_job_run`` hook skipped) and were
            removed from the queue.
        failed: Failed attempts, recorded with back-off (includes ``permanently_failed``).
        permanently_failed: Failed attempts after which the job failed for good (its last
            attempt, a ``PermanentJobError``, a payload that cannot be decoded).
        interrupted: Jobs cut short by a stop and released without spending an attempt.
    """

    __module__ = "graphile_worker.worker"

    completed: int = 0
    failed: int = 0
    permanently_failed: int = 0
    interrupted: int = 0

    @property
    def total(self) -> int:
        """Every job claimed during the run."""
        return self.completed + self.failed + self.interrupted
