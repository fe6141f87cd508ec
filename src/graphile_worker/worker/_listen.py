"""Wake-ups from PostgreSQL: ``LISTEN "jobs:insert"`` and ``"worker:migrate"``.

``add_job``/``add_jobs`` send ``{"r": <random>, "count": <n>}`` on ``jobs:insert`` when they
insert jobs (``count`` is -1 when ``remove_job`` deleted one, and the payload is empty on
schemas older than migration 18). A notification says nothing about ``run_at``: a job
added for later is found by the timer the runner arms after each empty claim. The driver's
stream reconnects by itself and yields a notification on channel ``""`` after each
reconnect, since anything sent while it was away is lost; the runner then polls at once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import anyio
from anyio.abc import TaskStatus

from ..drivers.base import DatabaseDriver, Notification
from ..errors import DatabaseError
from ..migrations import LATEST_MIGRATION

__all__ = ["CHANNELS", "breaking_migration", "jobs_added", "listen_for_jobs"]

CHANNELS = ("jobs:insert", "worker:migrate")
MAX_RETRY_DELAY = 30.0
"""Longest wait, in seconds, between attempts to open the listening connection."""


def jobs_added(payload: str) -> int:
    """How many jobs a ``jobs:insert`` notification announces (1 when it does not say)."""
    try:
        message = json.loads(payload)
    except ValueError:
        return 1
    count = message.get("count", 1) if isinstance(message, dict) else 1
    return count if isinstance(count, int) and not isinstance(count, bool) else 1


def breaking_migration(payload: str) -> int | None:
    """The number of a breaking migration this library does not know, announced on
    ``worker:migrate``, or ``None`` when the announcement is harmless.

    Node stops on any breaking announcement because its workers always migrate before
    they start; ours may run with ``migrate=False``, and a breaking migration we know is
    one our queries were written for.
    """
    try:
        message = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(message, dict) or message.get("breaking") is not True:
        return None
    number = message.get("migrationNumber")
    if isinstance(number, int) and number <= LATEST_MIGRATION:
        return None
    return number if isinstance(number, int) else -1


async def listen_for_jobs(
    driver: DatabaseDriver,
    *,
    on_jobs: Callable[[int], None],
    on_breaking_migration: Callable[[int], None],
    logger: logging.Logger,
    task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Call ``on_jobs(count)`` whenever jobs may have become available; runs until cancelled.

    ``count`` is how many jobs a notification announced, or 0 when nobody said (after
    a reconnect, anything may have been missed); a local queue counts them.

    Reports itself started once ``LISTEN`` is in place, or once the first attempt failed
    (the worker then polls until a later attempt succeeds), so start-up never waits for a
    listener the database refuses.
    """
    started = False
    failures = 0
    while True:
        stream = driver.listen(*CHANNELS)
        if stream is None:
            logger.info("This driver cannot LISTEN; relying on polling alone")
            task_status.started()
            return
        try:
            async with stream as notifications:
                if not started:
                    started = True
                    task_status.started()
                failures = 0
                async for notification in notifications:
                    _dispatch(notification, on_jobs, on_breaking_migration)
        except DatabaseError as error:
            logger.warning("Could not LISTEN for new jobs (%s); polling until it works", error)
        if not started:
            started = True
            task_status.started()
        on_jobs(0)
        # The stream retries by itself once open; this loop only covers opening it.
        await anyio.sleep(min(MAX_RETRY_DELAY, 0.5 * 2**failures))
        failures += 1


def _dispatch(
    notification: Notification,
    on_jobs: Callable[[int], None],
    on_breaking_migration: Callable[[int], None],
) -> None:
    if notification.channel == "worker:migrate":
        number = breaking_migration(notification.payload)
        if number is not None:
            on_breaking_migration(number)
    elif notification.channel != "jobs:insert":
        on_jobs(0)  # a reconnect (channel "") may have hidden notifications: look now
    else:
        count = jobs_added(notification.payload)
        if count > 0:
            on_jobs(count)
