"""Turning claimed rows into :class:`~graphile_worker.Job` objects, faster than ``from_row``."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from ..spec import Job

__all__ = ["job_reader"]

_NO_FLAGS: frozenset[str] = frozenset()


def job_reader(columns: Sequence[str]) -> Callable[[Sequence[Any]], Job]:
    """A decoder for rows that hold exactly :class:`Job`'s fields, in ``columns`` order.

    The worker decodes every row it claims, and the dataclass ``__init__`` of a frozen
    class (keyword arguments, then one ``object.__setattr__`` call per field) was the
    largest part of that. The claim statement returns every field already in its Python
    type except ``flags``, so the reader fills the slots directly: the result is the same
    :class:`Job`, equal to what :meth:`Job.from_row` builds from the same row.

    Raises:
        ValueError: ``columns`` is not a permutation of the field names.
    """
    fields = [field.name for field in dataclasses.fields(Job)]
    if sorted(columns) != sorted(fields):
        raise ValueError(f"columns {list(columns)!r} must name each field of Job once: {fields!r}")
    # A slotted class keeps each field in a member descriptor; its __set__ is what
    # object.__setattr__ ends up calling, minus the attribute lookup.
    setters = tuple(getattr(Job, name).__set__ for name in columns)
    set_flags = getattr(Job, "flags").__set__  # noqa: B009 - the descriptor, not a value
    flags_at = list(columns).index("flags")
    new = object.__new__

    def read(values: Sequence[Any]) -> Job:
        job: Job = new(Job)
        for set_field, value in zip(setters, values, strict=True):
            set_field(job, value)
        flags = values[flags_at]
        set_flags(job, frozenset(flags) if flags else _NO_FLAGS)
        return job

    return read
