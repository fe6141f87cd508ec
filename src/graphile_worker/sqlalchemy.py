"""Queue jobs inside a SQLAlchemy transaction: ``add_job(session, ...)`` and ``add_jobs``.

The job is written through the session's (or connection's) own connection, in its current
transaction, so it becomes visible to workers exactly when the caller commits, and vanishes
if the caller rolls back. Nothing here commits, and no other connection is opened.

One name serves both worlds; the first argument decides:

* a ``Session`` or ``Connection`` (or a sync psycopg connection): the call runs now and
  returns the :class:`~graphile_worker.spec.Job`;
* an ``AsyncSession`` or ``AsyncConnection``: the call returns an awaitable; ``await`` it.

The overloads tell type checkers which one you get, so a missing ``await`` is reported
(mypy: ``unused-coroutine``). We chose this over ``add_job``/``add_job_async`` pairs, which
the project's style rules out and which would double the surface for no gain in safety::

    with Session(engine) as session, session.begin():
        session.add(order)
        add_job(session, SendReceipt(order_id=order.id))

    async with AsyncSession(async_engine) as session, session.begin():
        await add_job(session, "send_receipt", {"order_id": order.id})
"""

from __future__ import annotations

from collections.abc import Coroutine, Iterable
from typing import TYPE_CHECKING, Any, overload

from .sql import DEFAULT_SCHEMA
from .utils import (
    _NO_PAYLOAD,
    AsyncBind,
    JobInput,
    SyncBind,
    SyncWorkerUtils,
    WorkerUtils,
    _utils_over,
)

if TYPE_CHECKING:
    from ._job_defaults import TaskReference
    from .spec import Job, JobSpec, TypedPayload

__all__ = ["add_job", "add_jobs", "using"]


@overload
def using(bind: SyncBind, *, schema: str = DEFAULT_SCHEMA) -> SyncWorkerUtils: ...


@overload
def using(bind: AsyncBind, *, schema: str = DEFAULT_SCHEMA) -> WorkerUtils: ...


def using(
    bind: SyncBind | AsyncBind, *, schema: str = DEFAULT_SCHEMA
) -> SyncWorkerUtils | WorkerUtils:
    """Worker utilities over ``bind``, inside its transaction (see ``WorkerUtils.using``)."""
    return _utils_over(bind, schema)


@overload
def add_job(
    bind: SyncBind,
    payload: TypedPayload,
    /,
    *,
    spec: JobSpec | None = None,
    schema: str = DEFAULT_SCHEMA,
) -> Job: ...


@overload
def add_job(
    bind: SyncBind,
    identifier: str | TaskReference,
    payload: object = None,
    /,
    *,
    spec: JobSpec | None = None,
    schema: str = DEFAULT_SCHEMA,
) -> Job: ...


@overload
def add_job(
    bind: AsyncBind,
    payload: TypedPayload,
    /,
    *,
    spec: JobSpec | None = None,
    schema: str = DEFAULT_SCHEMA,
) -> Coroutine[Any, Any, Job]: ...


@overload
def add_job(
    bind: AsyncBind,
    identifier: str | TaskReference,
    payload: object = None,
    /,
    *,
    spec: JobSpec | None = None,
    schema: str = DEFAULT_SCHEMA,
) -> Coroutine[Any, Any, Job]: ...


def add_job(
    bind: SyncBind | AsyncBind,
    target: TypedPayload | str | TaskReference,
    payload: object = _NO_PAYLOAD,
    /,
    *,
    spec: JobSpec | None = None,
    schema: str = DEFAULT_SCHEMA,
) -> Job | Coroutine[Any, Any, Job]:
    """Queue one job in ``bind``'s transaction; awaitable when ``bind`` is async.

    Arguments after ``bind`` are those of :meth:`graphile_worker.WorkerUtils.add_job`:
    a typed payload, or a task identifier and its payload, then ``spec=``.
    """
    utils = _utils_over(bind, schema)
    return utils.add_job(target, payload, spec=spec)  # type: ignore[arg-type]


@overload
def add_jobs(
    bind: SyncBind,
    jobs: Iterable[JobInput],
    *,
    job_key_preserve_run_at: bool = False,
    schema: str = DEFAULT_SCHEMA,
) -> list[Job]: ...


@overload
def add_jobs(
    bind: AsyncBind,
    jobs: Iterable[JobInput],
    *,
    job_key_preserve_run_at: bool = False,
    schema: str = DEFAULT_SCHEMA,
) -> Coroutine[Any, Any, list[Job]]: ...


def add_jobs(
    bind: SyncBind | AsyncBind,
    jobs: Iterable[JobInput],
    *,
    job_key_preserve_run_at: bool = False,
    schema: str = DEFAULT_SCHEMA,
) -> list[Job] | Coroutine[Any, Any, list[Job]]:
    """Queue many jobs in one statement in ``bind``'s transaction; awaitable when async."""
    utils = _utils_over(bind, schema)
    return utils.add_jobs(jobs, job_key_preserve_run_at=job_key_preserve_run_at)
