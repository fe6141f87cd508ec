"""Job defaults a task or a payload class declares, merged with the spec of each job.

A task can say how its jobs are usually added (``@task(max_attempts=3, queue="emails")``)
and a typed payload class can say the same with a ``JOB_SPEC`` class attribute. The
defaults apply only where the adding code names the task or the payload class
(``add_job(send_email, payload)``, ``add_job(SendEmail(...))``), because that is the
only place they can be seen: a job added by identifier alone (``add_job("send_email",
...)``, a crontab line, a Node process) gets the spec it is given and nothing more.

This module sits below :mod:`graphile_worker.utils` and the task package, so that every
``add_job`` path can apply defaults without importing the task package: it recognises a
task by the :data:`TASK_ATTRIBUTE` mark that both decorated functions and ``Task`` objects
carry.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Final, Protocol, TypeAlias

from .errors import InvalidJobSpecError
from .spec import JobKeyMode, JobSpec

__all__ = [
    "JOB_SPEC_ATTRIBUTE",
    "NO_DEFAULTS",
    "TASK_ATTRIBUTE",
    "JobDefaults",
    "TaskReference",
    "TaskTarget",
    "class_job_spec",
    "merge_specs",
    "task_target",
]

TASK_ATTRIBUTE: Final = "__graphile_worker_task__"
"""The attribute :func:`~graphile_worker.task` sets on a function: its ``Task``. A ``Task``
answers to it as well (with itself), so both are recognised the same way."""

JOB_SPEC_ATTRIBUTE: Final = "JOB_SPEC"
"""The class attribute of a typed payload that holds its jobs' default :class:`JobSpec`."""

_SPEC_FIELDS: Final = tuple(field.name for field in dataclasses.fields(JobSpec))

JobKeyFunction = Callable[[Any], "str | None"]
"""``job_key(payload)``: the job key for a payload, or ``None`` for a job without one."""


class _MarkedTask(Protocol):
    """A ``Task``: it carries the mark, answering with itself."""

    @property
    def __graphile_worker_task__(self) -> object: ...


TaskReference: TypeAlias = Callable[..., object] | _MarkedTask
"""What ``add_job`` accepts to name a task with its defaults: the function :func:`task`
decorated, or a ``Task`` object. (A plain function passes the type check too; at run time it
must carry the mark, or ``add_job`` refuses it.)"""


def merge_specs(defaults: JobSpec | None, spec: JobSpec | None) -> JobSpec | None:
    """``spec`` with each field it leaves unset (``None``) taken from ``defaults``.

    Raises:
        InvalidJobSpecError: ``spec`` is not a :class:`JobSpec` (a dict, say).
    """
    if spec is not None and not isinstance(spec, JobSpec):
        raise InvalidJobSpecError(
            f"spec must be a JobSpec, not {type(spec).__name__} ({spec!r:.80})"
        )
    if defaults is None:
        return spec
    if spec is None:
        return defaults
    overrides = {name: value for name in _SPEC_FIELDS if (value := getattr(spec, name)) is not None}
    if not overrides:
        return defaults
    return dataclasses.replace(defaults, **overrides)


@dataclasses.dataclass(frozen=True, slots=True)
class JobDefaults:
    """What a task fills in for the jobs added through it.

    Attributes:
        spec: Defaults for every field of :class:`JobSpec`; a job's own spec overrides
            them field by field.
        job_key: Computes the job key from the payload when neither the job's spec nor
            :attr:`spec` sets one.
        job_key_mode: The mode of a job that ends up with a key but no mode of its own
            (kept apart from :attr:`spec`, which cannot hold a mode without a key).
    """

    spec: JobSpec | None = None
    job_key: JobKeyFunction | None = None
    job_key_mode: JobKeyMode | None = None

    def apply(
        self, payload: object, spec: JobSpec | None, *, in_batch: bool = False
    ) -> JobSpec | None:
        """The spec a job added through the task gets; ``spec`` is the caller's own.

        ``in_batch``: the job is one of an ``add_jobs`` batch, whose one job-key mode is
        the batch's to choose (``job_key_preserve_run_at``), so :attr:`job_key_mode` is
        left out rather than make the batch fail.
        """
        merged = merge_specs(self.spec, spec)
        if self.job_key is not None and (merged is None or merged.job_key is None):
            key = self._key_of(payload)
            if key is not None:
                merged = dataclasses.replace(merged or JobSpec(), job_key=key)
        if (
            not in_batch
            and self.job_key_mode is not None
            and merged is not None
            and merged.job_key is not None
            and merged.job_key_mode is None
        ):
            merged = dataclasses.replace(merged, job_key_mode=self.job_key_mode)
        return merged

    def _key_of(self, payload: object) -> str | None:
        assert self.job_key is not None
        try:
            key = self.job_key(payload)
        except Exception as error:
            raise InvalidJobSpecError(
                f"the task's job_key function raised {type(error).__name__}: {error}"
            ) from error
        if key is not None and not isinstance(key, str):
            raise InvalidJobSpecError(
                f"the task's job_key function returned {key!r:.80}; it must return a str "
                "(or None for a job without a key)"
            )
        return key


NO_DEFAULTS: Final = JobDefaults()
"""The defaults of a task that declares none."""


class TaskTarget:
    """The identifier and defaults of a task named by its function or ``Task`` object."""

    __slots__ = ("defaults", "identifier")

    def __init__(self, identifier: str, defaults: JobDefaults) -> None:
        self.identifier = identifier
        self.defaults = defaults


def task_target(target: object) -> TaskTarget | None:
    """The task ``target`` names (a decorated function or a ``Task``), or ``None``."""
    marked = getattr(target, TASK_ATTRIBUTE, None)
    if marked is None or isinstance(target, type):
        return None
    identifier = getattr(marked, "identifier", None)
    defaults = getattr(marked, "job_defaults", None)
    if not isinstance(identifier, str) or not isinstance(defaults, JobDefaults):
        return None
    return TaskTarget(identifier, defaults)


def class_job_spec(cls: type) -> JobSpec | None:
    """The ``JOB_SPEC`` a typed payload class declares, checked; ``None`` when it has none.

    Raises:
        InvalidJobSpecError: ``JOB_SPEC`` is there but is not a :class:`JobSpec`.
    """
    spec = getattr(cls, JOB_SPEC_ATTRIBUTE, None)
    if spec is None or isinstance(spec, JobSpec):
        return spec
    raise InvalidJobSpecError(
        f"{cls.__qualname__}.{JOB_SPEC_ATTRIBUTE} must be a JobSpec (the defaults of its jobs), "
        f"not {spec!r:.80}"
    )
