"""One attempt at one job: decode, ask the hooks, call the handler, decide the outcome.

Nothing here touches the jobs table; :func:`attempt_job` returns an :class:`Attempt` that
says what to record, and the runner records it. Every failure a handler, a decoder or an
interceptor can cause becomes a failed attempt here, so the runner only has to deal with
cancellation. What ends up in ``last_error`` follows Node graphile-worker: the error's
message alone (``str(error)``, or the exception's class name when the message is empty);
the traceback goes to the log.

"Every failure" includes ``BaseException`` subclasses that are not the worker's own
cancellation: a handler's ``sys.exit()``, a ``KeyboardInterrupt`` it raises itself, a
custom ``BaseException``. They must be caught here, inside the job's coroutine: asyncio
re-raises ``KeyboardInterrupt`` and ``SystemExit`` out of the event loop when they escape a
task, which would stop the worker with outcomes unwritten and jobs locked. Real signals do
not arrive this way; the worker's signal handlers turn them into a stop request.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Sequence
from time import perf_counter
from typing import TYPE_CHECKING, Literal

import anyio

from .._error_text import error_text
from .._json import UndecodableJson
from ..errors import (
    BatchFailedError,
    JobAbortedError,
    JobError,
    PayloadDecodeError,
    PermanentJobError,
    UnknownTaskError,
)
from ..hooks import Failed, JobStart, SkipRun, Succeeded

if TYPE_CHECKING:
    from anyio import CapacityLimiter

    from ..context import WorkerContext
    from ..hooks import Outcome
    from ..hooks._dispatch import Hooks
    from ..spec import JSON, Job
    from ..task import Task
from .._log_fields import job_fields
from ._context import AbortSignal

__all__ = ["Attempt", "attempt_job", "log_outcome"]

ContextFactory = Callable[["Job", object], "WorkerContext"]


_logger = logging.getLogger("graphile_worker.worker")

_SUCCEEDED = Succeeded()
"""Shared by every successful attempt (it has no fields); interceptors may return their own."""


# Not frozen: one is built for every job, and a frozen dataclass's __init__ pays for an
# object.__setattr__ call per field. Nothing changes an Attempt after it is made.
@dataclasses.dataclass(slots=True)
class Attempt:
    """How one attempt ended.

    Attributes:
        kind: ``"completed"`` (delete the job), ``"failed"`` (record the error and back
            off) or ``"interrupted"`` (release it without spending the attempt).
        error: Why it failed; ``None`` otherwise.
        replacement_payload: The items of a batch job left to retry, or ``None``.
        duration: Seconds from the start of the handler to its end (0 when it never ran).
        delay: Seconds before the next attempt, from the task's back-off; ``None`` for
            Node's formula.
        permanent: The failure is final whatever attempts are left (a
            :class:`~graphile_worker.PermanentJobError`, or a payload that cannot be
            decoded).
    """

    kind: Literal["completed", "failed", "interrupted"]
    error: BaseException | None = None
    replacement_payload: list[JSON] | None = None
    duration: float = 0.0
    delay: float | None = None
    permanent: bool = False


async def attempt_job(
    job: Job,
    task: Task | None,
    *,
    make_context: ContextFactory,
    hooks: Hooks,
    abort: AbortSignal,
    worker_id: str,
    limiter: CapacityLimiter,
    retry_undecodable: bool = False,
) -> Attempt:
    """Run one attempt at ``job`` and say how it ended; only cancellation propagates.

    ``limiter`` bounds the threads of plain ``def`` handlers; the runner sizes it to its
    concurrency so that sync jobs never queue behind anyio's shared 40-thread limit.
    ``retry_undecodable`` retries a payload that does not decode, instead of failing it
    for good at once.
    """
    if task is None:
        # Claims only ever return jobs for known tasks; this guards a registry change.
        error = UnknownTaskError(f"no handler for task {job.task_identifier!r} in this worker")
        return Attempt("failed", error)
    decode_error: BaseException | None = None
    payload: object = job.payload
    if isinstance(payload, UndecodableJson):
        # The driver could not decode the row's JSON (see graphile_worker._json).
        decode_error = PayloadDecodeError(
            f"{payload.column} could not be decoded: {payload.reason}; the handler was not "
            "called (store a payload the worker can decode, or remove the job)"
        )
    else:
        try:
            payload = task.decode(job.payload)
        except BaseException as error:  # noqa: BLE001 - a PayloadDecodeError, or a decoder's bug: fail the job
            decode_error = error
    ctx = make_context(job, payload)
    started = perf_counter()  # a duration only: cheaper than the event loop's clock
    outcome: Outcome
    replacement: list[JSON] | None = None
    if decode_error is not None:
        outcome = Failed(decode_error)
    else:
        try:
            outcome, replacement = await _run(job, task, ctx, payload, hooks, worker_id, limiter)
        except Exception as error:  # noqa: BLE001 - whatever the handler raised fails the job
            if isinstance(error, JobAbortedError) and abort.is_set:
                # The handler saw ctx.abort_requested and gave up: like a cancellation.
                return Attempt("interrupted", duration=perf_counter() - started)
            outcome = Failed(error)
        except BaseException as error:
            if _is_worker_cancellation(error):
                raise
            outcome = Failed(error)  # SystemExit, KeyboardInterrupt and the like
    duration = perf_counter() - started
    if hooks and hooks.intercepts_runs:
        original = outcome
        try:
            outcome = await hooks.after_job_run(job, ctx, outcome)
        except Exception as error:  # noqa: BLE001 - a HookError naming the interceptor
            outcome = Failed(error)
        except BaseException as error:
            if _is_worker_cancellation(error):
                raise
            outcome = Failed(error)
        if outcome is not original and not (
            isinstance(outcome, Failed)
            and isinstance(original, Failed)
            and outcome.error is original.error
        ):
            replacement = None  # the interceptor's verdict replaces the partial batch result
    if isinstance(outcome, Succeeded):
        return Attempt("completed", duration=duration)
    if replacement is not None and not _storable(replacement, job, worker_id):
        replacement = None
    failure = outcome.error
    # Only the payload's own decoding failure: a PayloadDecodeError a handler raises about
    # data of its own is retried like any error.
    undecodable = failure is decode_error and isinstance(failure, PayloadDecodeError)
    if _is_permanent(failure) or (undecodable and not retry_undecodable):
        return Attempt("failed", _recordable(failure), replacement, duration, permanent=True)
    delay = None
    if task.backoff is not None and job.attempts < job.max_attempts:
        delay = _backoff(task, job, worker_id)
    return Attempt("failed", _recordable(failure), replacement, duration, delay)


def _is_permanent(error: BaseException) -> bool:
    """A :class:`PermanentJobError`, or a batch or exception group made only of them.

    A group comes from a handler's task group whose children raised; it is permanent only
    when every exception in it is, as a batch is only when every failed item is.
    """
    if isinstance(error, PermanentJobError):
        return True
    if isinstance(error, BatchFailedError):
        items: Sequence[object] = error.errors
    else:
        # An exception group, recognised by its shape: the builtin on Python 3.11 and
        # later, the backport before.
        grouped = getattr(error, "exceptions", None)
        if not isinstance(grouped, tuple):
            return False
        items = grouped
    return bool(items) and all(
        isinstance(item, BaseException) and _is_permanent(item) for item in items
    )


def _backoff(task: Task, job: Job, worker_id: str) -> float | None:
    """The task's delay before the next attempt; Node's (``None``) when its back-off fails."""
    try:
        return task.retry_delay(job.attempts)
    except ValueError as error:
        _logger.error(
            "Job %s (%s): %s; using the default back-off instead",
            job.id,
            job.task_identifier,
            error,
            exc_info=error.__cause__,
            extra=job_fields(job, worker_id),
        )
        return None


def _is_worker_cancellation(error: BaseException) -> bool:
    """Whether ``error`` is the worker cancelling this job, rather than something it raised.

    Only a cancellation exception while a scope around this task is cancelled counts (the
    shutdown grace period ran out): a handler may also raise one of its own, on asyncio
    from a task it cancelled itself, and that fails the job like any other exception.
    """
    if not isinstance(error, anyio.get_cancelled_exc_class()):
        return False
    # -inf once a cancel scope around this task was cancelled.
    return anyio.current_effective_deadline() <= anyio.current_time()


def _recordable(error: BaseException) -> BaseException:
    """``error``, or a stand-in when its message cannot be read or stored.

    The message becomes ``last_error``. A ``__str__`` that raises, or text PostgreSQL
    refuses (a lone surrogate), would make the statement recording the failure raise or
    be rejected, and with it every other outcome in the same batch.
    """
    try:
        text = error_text(error)
    except BaseException as problem:  # noqa: BLE001 - a broken __str__ must not stop the worker
        message = (
            f"{type(error).__name__} (its message could not be read: "
            f"{type(problem).__name__} in __str__)"
        )
    else:
        if text.isascii():
            return error
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            message = text.encode("utf-8", "backslashreplace").decode("utf-8")
        else:
            return error
    stand_in = JobError(message).with_traceback(error.__traceback__)
    stand_in.__cause__ = error
    return stand_in


def _storable(replacement: list[JSON], job: Job, worker_id: str) -> bool:
    """Whether a batch's failed items can be stored as its new payload.

    They are the JSON the job held, decoded; encoding them again can still fail (a number
    too large for a float, such as ``1e400``, comes back as infinity) or produce text
    PostgreSQL rejects (``\\u0000``). Then the job keeps its whole payload instead, and
    its next attempt retries every item.
    """
    try:
        text = json.dumps(replacement, allow_nan=False, ensure_ascii=False)
        text.encode("utf-8")  # no lone surrogates
    except (ValueError, TypeError, RecursionError) as error:
        problem = f"{type(error).__name__}: {error}"
    else:
        if "\\u0000" not in text:
            return True
        problem = "an item holds a NUL character, which PostgreSQL cannot store"
    _logger.warning(
        "Batch job %s (%s): its failed items cannot be stored as its new payload (%s); "
        "it keeps its whole payload, so every item is retried",
        job.id,
        job.task_identifier,
        problem,
        extra=job_fields(job, worker_id),
    )
    return False


async def _run(
    job: Job,
    task: Task,
    ctx: WorkerContext,
    payload: object,
    hooks: Hooks,
    worker_id: str,
    limiter: CapacityLimiter,
) -> tuple[Outcome, list[JSON] | None]:
    """Ask the ``before_job_run`` hooks, then call the handler; raises what the handler raises."""
    if hooks:
        if hooks.intercepts_runs:
            decision = await hooks.before_job_run(job, ctx)  # raises HookError for FailRun
            if isinstance(decision, SkipRun):
                return _SUCCEEDED, None
        if hooks.watching(JobStart):
            await hooks.notify(JobStart(worker_id, job))
    result = await task.execute(payload, ctx, limiter=limiter)
    if result is None:
        return _SUCCEEDED, None
    # Some items of a batch failed: fail the job with Node's message, keeping those items.
    return Failed(result.as_error()), list(result.failed_items)


def log_outcome(logger: logging.Logger, job: Job, attempt: Attempt, worker_id: str) -> None:
    """Node's one line per job: INFO on success, ERROR (with the traceback) on failure.

    The record also carries :func:`~graphile_worker.worker._log_fields.job_fields`.
    """
    milliseconds = attempt.duration * 1000
    if attempt.kind == "completed":
        if not logger.isEnabledFor(logging.INFO):
            return  # silenced (--quiet): skip building the call's arguments
        fields = job_fields(job, worker_id, attempt.duration)
        if job.attempts > 1:
            logger.info(
                "Completed task %s (%s, %.2fms, attempt %d of %d) with success",
                job.id,
                job.task_identifier,
                milliseconds,
                job.attempts,
                job.max_attempts,
                extra=fields,
            )
        else:
            logger.info(
                "Completed task %s (%s, %.2fms) with success",
                job.id,
                job.task_identifier,
                milliseconds,
                extra=fields,
            )
    elif attempt.kind == "failed":
        error = attempt.error
        assert error is not None
        logger.error(
            "Failed task %s (%s, %.2fms, attempt %d of %d%s) with error '%s'",
            job.id,
            job.task_identifier,
            milliseconds,
            job.attempts,
            job.max_attempts,
            ", failed for good without retrying" if attempt.permanent else "",
            error_text(error),
            exc_info=error if error.__traceback__ is not None else None,
            extra=job_fields(job, worker_id, attempt.duration),
        )
