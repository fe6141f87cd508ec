"""Turning claimed rows into :class:`~graphile_worker.Job` objects, faster than ``from_row``."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

from .._json import UndecodableJson
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

    A row whose ``flags`` the driver could not decode (an
    :class:`~graphile_worker._json.UndecodableJson`) still reads, without flags and with
    the reason in place of its payload, so that the worker fails that job alone.

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

    payload_at = list(columns).index("payload")
    set_payload = getattr(Job, "payload").__set__  # noqa: B009 - the descriptor, not a value

    def read(values: Sequence[Any]) -> Job:
        job: Job = new(Job)
        for set_field, value in zip(setters, values, strict=True):
            set_field(job, value)
        flags = values[flags_at]
        if not flags:
            set_flags(job, _NO_FLAGS)
        elif isinstance(flags, UndecodableJson):
            _undecodable_flags(job, flags, values[payload_at], set_flags, set_payload)
        else:
            set_flags(job, frozenset(flags))
        return job

    return read


def _undecodable_flags(
    job: Job,
    flags: UndecodableJson,
    payload: object,
    set_flags: Callable[[Job, object], None],
    set_payload: Callable[[Job, object], None],
) -> None:
    """A job whose flags the driver could not decode: no flags, and a payload saying why.

    Flags are only ever a flat object when Node or we write them; deeper ones come from
    hand-written SQL. The worker fails such a job (as it fails one with an undecodable
    payload) rather than run it without the flags it was given.
    """
    set_flags(job, _NO_FLAGS)
    if not isinstance(payload, UndecodableJson):
        set_payload(job, UndecodableJson(flags.reason, column="flags"))
