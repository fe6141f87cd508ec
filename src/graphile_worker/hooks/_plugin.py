"""Plugins: named bundles of observers and interceptors, checked when they are built."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import TypeVar

from ..errors import ConfigurationError
from ..recovery import RecoverJob
from ._events import Observer
from ._interceptors import AfterJobRun, BeforeJobRun, BeforeJobSchedule

__all__ = ["Plugin", "callable_name"]

_T = TypeVar("_T")


class Plugin:
    """A named bundle of observers and interceptors, registered together.

    Build one directly::

        Plugin("audit", observers=[AuditObserver()], before_job_run=[check_quota])

    or subclass it, naming the plugin with a class attribute and passing bound methods to
    ``super().__init__()``. A subclass that also inherits :class:`Observer` observes
    events itself (before the observers it lists)::

        class Quota(Plugin, Observer):
            name = "quota"

            def __init__(self, limit: int) -> None:
                super().__init__(before_job_run=[self.check])
                self.limit = limit

            def check(self, job: Job, ctx: WorkerContext) -> RunDecision: ...

            def on_job_complete(self, event: JobComplete) -> None: ...

    The name appears in log lines and in the ``last_error`` of jobs the plugin fails.
    """

    __module__ = "graphile_worker.hooks"

    name: str
    observers: tuple[Observer, ...]
    before_job_schedule: tuple[BeforeJobSchedule, ...]
    before_job_run: tuple[BeforeJobRun, ...]
    after_job_run: tuple[AfterJobRun, ...]
    recover_job: tuple[RecoverJob, ...]

    def __init__(
        self,
        name: str | None = None,
        *,
        observers: Iterable[Observer] = (),
        before_job_schedule: Iterable[BeforeJobSchedule] = (),
        before_job_run: Iterable[BeforeJobRun] = (),
        after_job_run: Iterable[AfterJobRun] = (),
        recover_job: Iterable[RecoverJob] = (),
    ) -> None:
        if name is None:
            name = getattr(type(self), "name", None)
        if not isinstance(name, str) or not name:
            raise ConfigurationError(
                f"a Plugin needs a non-empty name (Plugin('my_plugin', ...) or a class "
                f"attribute name = 'my_plugin' on {callable_name(type(self))}), not {name!r}"
            )
        self.name = name
        self.observers = tuple(_check_observer(name, observer) for observer in observers)
        self.before_job_schedule = _check_interceptors(
            name, "before_job_schedule", before_job_schedule
        )
        self.before_job_run = _check_interceptors(name, "before_job_run", before_job_run)
        self.after_job_run = _check_interceptors(name, "after_job_run", after_job_run)
        self.recover_job = _check_interceptors(name, "recover_job", recover_job)

    def __repr__(self) -> str:
        return f"<{callable_name(type(self))} {self.name!r}>"


def _check_observer(plugin: str, observer: object) -> Observer:
    if isinstance(observer, Observer):
        return observer
    if isinstance(observer, type) and issubclass(observer, Observer):
        raise ConfigurationError(
            f"plugin {plugin!r} lists the class {callable_name(observer)} as an observer; "
            f"pass an instance, {callable_name(observer)}()"
        )
    raise ConfigurationError(
        f"plugin {plugin!r}: observers must be Observer instances (subclass "
        f"graphile_worker.hooks.Observer), not {observer!r:.80}"
    )


def _check_interceptors(plugin: str, stage: str, items: Iterable[_T]) -> tuple[_T, ...]:
    checked = tuple(items)
    for item in checked:
        if not callable(item):
            raise ConfigurationError(
                f"plugin {plugin!r}: every {stage} interceptor must be callable, not {item!r:.80}"
            )
    return checked


def callable_name(function: object) -> str:
    """A readable name for a hook in logs and errors: ``Class.method`` or ``function``."""
    if isinstance(function, functools.partial):
        return callable_name(function.func)
    name = getattr(function, "__qualname__", None)
    if not isinstance(name, str):
        name = type(function).__qualname__  # a callable object: name its class
    # Hooks defined inside a function would otherwise read "setup.<locals>.check".
    return name.rpartition("<locals>.")[2]
