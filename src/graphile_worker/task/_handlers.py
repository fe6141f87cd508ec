"""Reading a handler's shape: is it async, does it take ``ctx``, what is its payload type.

The worker calls every handler the same way, ``handler(payload, ctx)``, but users write
``def resize(payload)`` or ``async def cleanup()`` too. We decide once, at definition time,
how many positional arguments to pass, counting positional parameters rather than looking
at names, so ``def handle(data, context)`` works as well as ``(payload, ctx)``.

Only the payload parameter's annotation is evaluated. ``ctx: WorkerContext`` is commonly
imported under ``TYPE_CHECKING`` only, and evaluating it would fail for no benefit.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import sys
from collections.abc import Callable
from typing import Any

from ..errors import TaskDefinitionError

__all__ = ["HandlerShape", "describe_handler", "inspect_function", "inspect_run_method"]


@dataclasses.dataclass(frozen=True, slots=True)
class HandlerShape:
    """How to call a handler.

    Attributes:
        is_async: Calling it returns an awaitable to run on the event loop.
        arity: How many of ``(payload, ctx)`` to pass positionally: 0, 1 or 2. For a
            handler class's ``run`` it counts the arguments after ``self``: 0 or 1 (ctx).
        payload_annotation: The first parameter's resolved annotation, or
            ``inspect.Parameter.empty``.
    """

    is_async: bool
    arity: int
    payload_annotation: object


def describe_handler(handler: object) -> str:
    """``function myapp.tasks.send_email`` or ``class myapp.tasks.SendEmail``, for messages."""
    target = handler.func if isinstance(handler, functools.partial) else handler
    module = getattr(target, "__module__", None)
    name = getattr(target, "__qualname__", None) or getattr(target, "__name__", None)
    if name is None:
        return repr(handler)
    kind = "class" if isinstance(handler, type) else "function"
    return f"{kind} {module}.{name}" if module else f"{kind} {name}"


def _is_async_callable(handler: Callable[..., object]) -> bool:
    # iscoroutinefunction sees through functools.partial; callable objects are checked
    # through their __call__.
    if inspect.iscoroutinefunction(handler):
        return True
    return not inspect.isroutine(handler) and inspect.iscoroutinefunction(type(handler).__call__)


def _signature(handler: Callable[..., object], what: str) -> inspect.Signature:
    try:
        return inspect.signature(handler)
    except NameError:
        # Python 3.14 evaluates annotations lazily and signature() evaluates them: a ctx
        # annotation imported only under TYPE_CHECKING must not make the handler unusable.
        if sys.version_info >= (3, 14):
            import annotationlib

            return inspect.signature(handler, annotation_format=annotationlib.Format.FORWARDREF)
        raise  # pragma: no cover - older Pythons do not evaluate annotations here
    except (TypeError, ValueError) as error:
        raise TaskDefinitionError(f"cannot read the signature of {what}: {error}") from error


def _globals_of(handler: object) -> dict[str, Any]:
    """The namespace a handler's string annotations must be evaluated in."""
    target = handler
    while isinstance(target, functools.partial):
        target = target.func
    target = inspect.unwrap(target) if callable(target) else target
    target = getattr(target, "__func__", target)  # bound methods
    if not inspect.isfunction(target) and callable(target):
        target = type(target).__call__  # callable objects
    namespace = getattr(target, "__globals__", None)
    return namespace if isinstance(namespace, dict) else {}


def _resolve(annotation: object, handler: object, what: str) -> object:
    if not isinstance(annotation, str):
        return annotation
    try:
        # What inspect.get_annotations(eval_str=True) does, for this one annotation only.
        return eval(annotation, _globals_of(handler))
    except Exception as error:
        raise TaskDefinitionError(
            f"cannot resolve the payload annotation {annotation!r} of {what} "
            f"({type(error).__name__}: {error}); import that type at module level (not only "
            "under TYPE_CHECKING), or annotate the payload as Any"
        ) from error


def _positional(signature: inspect.Signature, what: str, limit: int) -> tuple[int, object]:
    """How many positional arguments to pass (at most ``limit``) and the first's annotation."""
    parameters = list(signature.parameters.values())
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    takes_varargs = any(p.kind is p.VAR_POSITIONAL for p in parameters)
    required = [p.name for p in positional if p.default is p.empty]
    required_keyword = [
        p.name for p in parameters if p.kind is p.KEYWORD_ONLY and p.default is p.empty
    ]
    if len(required) > limit or required_keyword:
        extra = required[limit:] + required_keyword
        raise TaskDefinitionError(
            f"{what} requires {', '.join(repr(name) for name in extra)}, which the worker "
            f"cannot pass; a handler takes at most {limit} positional argument"
            f"{'s' if limit > 1 else ''} ({'payload, ctx' if limit == 2 else 'ctx'})"
        )
    arity = limit if takes_varargs else min(len(positional), limit)
    annotation = positional[0].annotation if positional else inspect.Parameter.empty
    return arity, annotation


def inspect_function(handler: Callable[..., object], what: str) -> HandlerShape:
    """Read a task function: ``(payload, ctx)``, ``(payload)`` or ``()``, async or not.

    Raises:
        TaskDefinitionError: it is not callable, is a generator, or needs more arguments
            than the worker passes, or its payload annotation cannot be resolved.
    """
    if not callable(handler):
        raise TaskDefinitionError(f"{what} is not callable")
    unwrapped = handler.func if isinstance(handler, functools.partial) else handler
    if inspect.isgeneratorfunction(unwrapped) or inspect.isasyncgenfunction(unwrapped):
        raise TaskDefinitionError(
            f"{what} is a generator function; a task handler must return (or raise), not yield"
        )
    arity, annotation = _positional(_signature(handler, what), what, limit=2)
    return HandlerShape(
        is_async=_is_async_callable(handler),
        arity=arity,
        payload_annotation=_resolve(annotation, handler, what) if arity else annotation,
    )


def inspect_run_method(cls: type, what: str) -> HandlerShape:
    """Read a handler class's ``run``: an instance method taking ``(self)`` or ``(self, ctx)``.

    Raises:
        TaskDefinitionError: there is no ``run``, it is a static or class method, or it
            needs more than ``ctx``.
    """
    run = inspect.getattr_static(cls, "run", None)
    if run is None:
        raise TaskDefinitionError(
            f"{what} has IDENTIFIER but no run() method; a payload class without run() is "
            "registered through the function that handles it (@task)"
        )
    if isinstance(run, (staticmethod, classmethod)) or not callable(run):
        raise TaskDefinitionError(
            f"{what}.run must be a plain instance method, def run(self, ctx) or "
            "async def run(self, ctx)"
        )
    method: Callable[..., object] = cls.run  # type: ignore[attr-defined]
    if inspect.isgeneratorfunction(method) or inspect.isasyncgenfunction(method):
        raise TaskDefinitionError(f"{what}.run is a generator; it must return, not yield")
    signature = _signature(method, f"{what}.run")
    parameters = list(signature.parameters.values())
    if not parameters or parameters[0].kind not in (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    ):
        raise TaskDefinitionError(f"{what}.run must take self as its first parameter")
    arity, _ = _positional(signature.replace(parameters=parameters[1:]), f"{what}.run", limit=1)
    return HandlerShape(
        is_async=inspect.iscoroutinefunction(method),
        arity=arity,
        payload_annotation=cls,
    )
