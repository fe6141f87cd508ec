"""A job on its way in: the payload as JSON text, its task identifier and spec, checked.

Every way of adding a job (the utilities, the SQLAlchemy helpers, the worker's context,
cron) goes through :func:`prepare_job`, so they all refuse the same payloads with the same
:class:`~graphile_worker.InvalidJobSpecError` before any SQL runs. Node's ``add_job``
defaults (25 attempts, an empty object for no payload) live here too.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping

from ._validate import check_task_identifier
from .errors import InvalidJobSpecError
from .spec import JobSpec

__all__ = [
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_SPEC",
    "JOB_DECORATORS",
    "JobDecorator",
    "PreparedJob",
    "identifier_of",
    "payload_to_json",
    "prepare_job",
]

DEFAULT_MAX_ATTEMPTS = 25
"""Attempts a job gets when its spec does not say (Node's ``add_job`` default)."""

DEFAULT_SPEC = JobSpec()
"""The spec of a job added without one."""

JobDecorator = Callable[[str, str, JobSpec], str]
"""``decorator(identifier, payload_json, spec)``: the payload JSON to store instead."""

JOB_DECORATORS: list[JobDecorator] = []
"""Process-wide callbacks every job passes through on its way in (tracing registers one).

A list rather than hooks on each utility because jobs are added from many places (both
utilities, the SQLAlchemy helpers, ``ctx.add_job``) and a tracer must see them all; an
empty list costs one truth test per job. Batches skip their fast path while one is set.
"""


def _to_jsonable(value: object) -> object:
    """``json.dumps`` hook: turn dataclasses, pydantic models and mappings into dicts."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: getattr(value, field.name) for field in dataclasses.fields(value)}
    model_dump = getattr(value, "model_dump", None)
    if callable(model_dump) and not isinstance(value, type):
        # pydantic v2 (duck-typed, so pydantic stays optional); mode="json" turns datetimes,
        # UUIDs and the like into the strings the model's own serialisers choose.
        return model_dump(mode="json")
    if isinstance(value, Mapping):
        return dict(value)
    raise InvalidJobSpecError(
        f"payload contains a {type(value).__module__}.{type(value).__qualname__} "
        f"({value!r:.80}), which cannot be converted to JSON; convert it to a str, number, "
        "list or dict (or use a dataclass or pydantic model) first"
    )


def payload_to_json(payload: object) -> str:
    """Serialise a job payload to JSON text for the ``json`` payload column.

    ``None`` becomes ``{}``, as in Node (``JSON.stringify(payload ?? {})``). Dataclasses
    and pydantic models (anything with ``model_dump``) become objects, also when nested.
    NaN and infinities are refused because PostgreSQL's ``json`` type rejects them.

    Raises:
        InvalidJobSpecError: the payload (or something inside it) cannot be represented.
    """
    if payload is None:
        return "{}"
    try:
        text = json.dumps(
            payload,
            default=_to_jsonable,
            allow_nan=False,
            ensure_ascii=False,
            separators=(",", ":"),
        )
    except InvalidJobSpecError:
        raise
    except ValueError as error:
        # allow_nan=False and circular references both raise ValueError.
        raise InvalidJobSpecError(f"payload cannot be sent as JSON: {error}") from error
    except TypeError as error:
        # e.g. a dict key that is a tuple.
        raise InvalidJobSpecError(f"payload cannot be sent as JSON: {error}") from error
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise InvalidJobSpecError(
            "payload contains a lone surrogate character that cannot be encoded as UTF-8"
        ) from error
    return text


def identifier_of(payload: object) -> str | None:
    """The task identifier a typed payload declares, or ``None`` for a plain payload."""
    identifier = getattr(type(payload), "IDENTIFIER", None)
    if identifier is None:
        return None
    return check_task_identifier(identifier, error=InvalidJobSpecError)


@dataclasses.dataclass(frozen=True, slots=True)
class PreparedJob:
    """A job ready to bind: checked identifier, serialised payload and its spec."""

    identifier: str
    payload_json: str
    spec: JobSpec


def prepare_job(identifier: str, payload: object, spec: JobSpec | None) -> PreparedJob:
    """Check and serialise one job; the single place all ``add_job`` variants go through."""
    if spec is not None and not isinstance(spec, JobSpec):
        raise InvalidJobSpecError(
            f"spec must be a JobSpec, not {type(spec).__name__} ({spec!r:.80})"
        )
    identifier = check_task_identifier(identifier, error=InvalidJobSpecError)
    payload_json = payload_to_json(payload)
    if spec is None:
        spec = DEFAULT_SPEC
    if JOB_DECORATORS:
        for decorate in JOB_DECORATORS:
            payload_json = decorate(identifier, payload_json, spec)
    return PreparedJob(identifier=identifier, payload_json=payload_json, spec=spec)
