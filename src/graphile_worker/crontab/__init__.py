"""Recurring jobs: Graphile's crontab format, and a typed builder for the same items.

A crontab line reads ``MIN HOUR DAY MONTH WEEKDAY task ?options {payload}``, in UTC::

    # every Monday at 04:30, backfilling up to two days, at most 10 attempts
    30 4 * * 1 send_weekly_email ?fill=2d&max=10 {onboarding: false}
    # every four hours on the hour
    0 */4 * * * rollup

The grammar and its meaning are Node graphile-worker's, so one crontab file means the same
to Node and Python workers sharing a database. :func:`parse_crontab` and
:func:`load_crontab` read it; :func:`cron` builds the same :class:`CronItem` in code::

    cron(send_digest).daily_at(4, 30).fill(days=1).queue("mail").build()

A worker takes items and builders alike. Errors are :class:`~graphile_worker.CrontabError`,
naming the line, column and offending text; a crontab with any error yields no items at all.
"""

from __future__ import annotations

from ..errors import CrontabError as CrontabError
from ._builder import CronBuilder as CronBuilder
from ._builder import TaskReference as TaskReference
from ._builder import Weekday as Weekday
from ._builder import cron as cron
from ._item import CronItem as CronItem
from ._read import load_crontab as load_crontab
from ._read import parse_crontab as parse_crontab

__all__ = [
    "CronBuilder",
    "CronItem",
    "CrontabError",
    "TaskReference",
    "Weekday",
    "cron",
    "load_crontab",
    "parse_crontab",
]
