"""The text a failed job records as its ``last_error``, in one place.

Node records the error's message (or its string form when the message is empty); an empty
``str()`` is common for Python exceptions, so the class name stands in for it. The worker
uses this for each failed attempt and :class:`~graphile_worker.BatchFailedError` for each
failed item, so both read the same whichever worker ran the job.
"""

from __future__ import annotations

__all__ = ["error_text"]


def error_text(error: BaseException) -> str:
    """The text recorded as a job's ``last_error``: the message, else the class name."""
    return str(error) or type(error).__name__
