"""What a batch handler's return value means for its job.

A batch job's payload is a JSON array. Its handler returns ``None`` (every item succeeded)
or one entry per item, ``None`` for success or an exception for failure. When some items
failed, Node graphile-worker fails the job with ``"Batch failures:"`` and one line per error
as ``last_error``, and replaces its payload with just the failed items, so the retry does only
what is left; we do the same. When every item failed, the payload stays as it is and the job
simply fails.

One deliberate difference: Node logs a warning and counts a result list of the wrong length
as full success; here it is an error, because it is always a bug in the handler and
succeeding silently would drop the items it forgot about.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence

from .._payload import payload_to_json
from ..errors import BatchFailedError, JobError
from ..spec import JSON
from ._decode import BatchItems

__all__ = ["BatchResult", "batch_outcome"]


@dataclasses.dataclass(frozen=True, slots=True)
class BatchResult:
    """Some, not all, items of a batch job failed.

    The worker fails the job with :attr:`message` as its ``last_error`` and
    :attr:`failed_items` as its new payload, so that only those items are retried.

    Attributes:
        failed_items: The JSON of each failed item, exactly as the job held it.
        errors: The error of each failed item, in the same order.
    """

    # Users import it from the package; reprs and docs should say so.
    __module__ = "graphile_worker.task"

    failed_items: tuple[JSON, ...]
    errors: tuple[BaseException, ...]

    @property
    def message(self) -> str:
        """The job's ``last_error``, worded as Node words it."""
        return str(BatchFailedError(self.errors))

    def as_error(self) -> BatchFailedError:
        """An exception carrying the item errors (message :attr:`message`), for hooks and logs."""
        return BatchFailedError(self.errors)


def batch_outcome(identifier: str, payload: object, result: object) -> BatchResult | None:
    """Interpret a batch handler's non-``None`` return value.

    Args:
        identifier: The task, for error messages.
        payload: The payload the handler received (ideally from ``Task.decode``, which
            remembers the raw JSON items).
        result: What the handler returned.

    Returns:
        ``None`` when every entry is ``None``; a :class:`BatchResult` when some failed.

    Raises:
        BatchFailedError: every item failed.
        JobError: the result is not a sequence with one ``None``-or-exception per item.
    """
    items = _raw_items(payload)
    if isinstance(result, (str, bytes)) or not isinstance(result, Sequence):
        raise JobError(
            f"batch task {identifier!r} returned {type(result).__name__}; return None (every "
            "item succeeded) or a list with one entry per item: None for success, an "
            "exception for failure"
        )
    if len(result) != len(items):
        raise JobError(
            f"batch task {identifier!r} returned {len(result)} results for a batch of "
            f"{len(items)} items; return None, or exactly one entry (None or an exception) per "
            "item, in payload order"
        )
    failed_items: list[JSON] = []
    errors: list[BaseException] = []
    for index, (item, entry) in enumerate(zip(items, result, strict=True)):
        if entry is None:
            continue
        if not isinstance(entry, BaseException):
            raise JobError(
                f"batch task {identifier!r} returned {entry!r:.60} for item {index}; each "
                "entry must be None (success) or an exception (failure)"
            )
        failed_items.append(item)
        errors.append(entry)
    if not errors:
        return None
    if len(errors) == len(items):
        raise BatchFailedError(errors)
    return BatchResult(failed_items=tuple(failed_items), errors=tuple(errors))


def _raw_items(payload: object) -> tuple[JSON, ...]:
    """The batch's items as JSON: the original ones when the payload came from decode()."""
    if isinstance(payload, BatchItems):
        return payload.raw
    if isinstance(payload, (str, bytes)) or not isinstance(payload, Sequence):
        raise JobError(f"a batch task needs a list payload, got {type(payload).__name__}")
    # Called without decode(): re-encode each item. None stays null; Node's "no payload
    # means {}" rule is for whole payloads, not for items.
    return tuple(None if item is None else json.loads(payload_to_json(item)) for item in payload)
