"""``--log-format json``: one JSON object per log record, for log pipelines.

Standard library only. Each line holds the time (UTC, ISO 8601), the level, the logger's
name and the message, then every field the record carries beyond the ones ``logging``
sets itself: the worker's job records carry ``job_id``, ``task_identifier``,
``queue_name``, ``attempt``, ``max_attempts``, ``worker_id`` and ``duration_ms`` (see
:mod:`graphile_worker.worker._log_fields`), and a task's own ``extra=`` fields come through
the same way. A failure's traceback is one string field, ``exception``, so that a record
stays one line.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone

__all__ = ["LOG_FORMATS", "JsonFormatter"]

LOG_FORMATS = ("text", "json")

# What every LogRecord has, so that only the fields a caller added are copied (Python's own
# list: the attributes of a record made with no extra). "message" and "asctime" are set by
# formatters; "taskName" appears from Python 3.12.
_STANDARD = frozenset(vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON; values JSON cannot hold are written as text."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in document:
                document[key] = value
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            document["exception"] = record.exc_text
        if record.stack_info:
            document["stack"] = self.formatStack(record.stack_info)
        return json.dumps(document, default=str, ensure_ascii=False)
