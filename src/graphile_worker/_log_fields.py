"""The fields every log record about a job carries, and the logger handlers get.

Log lines name the job in their text for people; the same facts go on the record as
attributes (``logging``'s ``extra``) for machines: a JSON formatter (``graphile-worker run
--log-format json``) or a log pipeline can then filter by ``job_id``, group by
``task_identifier`` or chart ``duration_ms`` without parsing messages.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable, MutableMapping

    from .spec import Job

__all__ = ["JobLogger", "job_fields", "jobs_fields"]


def job_fields(job: Job, worker_id: str, duration: float | None = None) -> dict[str, object]:
    """``extra`` for a record about one job; ``duration`` in seconds, when it applies.

    ``attempt`` is the attempt this record is about: a claimed job's ``attempts`` already
    counts the one running.
    """
    fields: dict[str, object] = {
        "job_id": job.id,
        "task_identifier": job.task_identifier,
        "queue_name": job.queue_name,
        "attempt": job.attempts,
        "max_attempts": job.max_attempts,
        "worker_id": worker_id,
    }
    if duration is not None:
        fields["duration_ms"] = round(duration * 1000, 3)
    return fields


def jobs_fields(job_ids: Iterable[int], worker_id: str) -> dict[str, object]:
    """``extra`` for a record about several jobs at once (a batch of outcomes)."""
    return {"job_ids": list(job_ids), "worker_id": worker_id}


if TYPE_CHECKING:
    _LoggerAdapter = logging.LoggerAdapter[logging.Logger]
else:  # LoggerAdapter is subscriptable at run time only from Python 3.11
    _LoggerAdapter = logging.LoggerAdapter


class JobLogger(_LoggerAdapter):
    """``ctx.logger``: prefixes messages with ``[job <id> <task>]`` and puts the job's
    fields (its ``extra``, from :func:`job_fields`) on every record, merged with the
    caller's own ``extra``."""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        fields = self.extra or {}
        kwargs["extra"] = {**fields, **(kwargs.get("extra") or {})}
        return f"[job {fields['job_id']} {fields['task_identifier']}] {msg}", kwargs
