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

A worker takes items and builders alike; :func:`collect_cron_items` is how it turns them
into one checked list. Errors are :class:`~graphile_worker.CrontabError`, naming the line,
column and offending text; a crontab with any error yields no items at all.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from ._crontab_builder import CronBuilder, TaskReference, Weekday, cron
from ._crontab_item import CronItem
from ._crontab_parser import parse_crontab_text
from .errors import CrontabError

__all__ = [
    "CronBuilder",
    "CronItem",
    "CrontabError",
    "TaskReference",
    "Weekday",
    "collect_cron_items",
    "cron",
    "load_crontab",
    "parse_crontab",
]


def parse_crontab(text: str) -> list[CronItem]:
    """The items of a crontab, in line order; comments and blank lines are skipped.

    Raises:
        CrontabError: any line is invalid, or two items share an identifier. Every
            problem is listed (see ``CrontabError.errors``) and nothing is returned.
    """
    if not isinstance(text, str):
        raise CrontabError(f"crontab text must be a str, not {type(text).__name__}")
    return parse_crontab_text(text, None)


def load_crontab(path: str | os.PathLike[str], *, missing_ok: bool = False) -> list[CronItem]:
    """The items of the crontab file at ``path`` (UTF-8), as :func:`parse_crontab` reads them.

    Args:
        path: The file.
        missing_ok: Return ``[]`` when the file does not exist, which is how Node treats
            its default ``crontab`` file (cron is then off).

    Raises:
        CrontabError: the file cannot be read, is not UTF-8, or has invalid lines; the
            message names the file.
    """
    name = os.fspath(path)
    try:
        with open(name, "rb") as file:
            data = file.read()
    except FileNotFoundError:
        if missing_ok:
            return []
        raise CrontabError("the crontab file does not exist", path=name) from None
    except OSError as error:
        raise CrontabError(f"cannot read the crontab file: {error.strerror}", path=name) from error
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise CrontabError(
            f"the file is not UTF-8 text (byte {data[error.start]:#04x})", line=line, path=name
        ) from None
    return parse_crontab_text(text, name)


def collect_cron_items(*groups: Iterable[CronItem | CronBuilder]) -> list[CronItem]:
    """Build every builder and check that identifiers are unique across all the groups.

    Meant for the worker, which takes items from a crontab file and from code and must
    schedule each identifier once.

    Raises:
        CrontabError: something is neither an item nor a builder, a builder has no
            schedule, or an identifier appears twice (every duplicate is listed).
    """
    items: list[CronItem] = []
    errors: list[CrontabError] = []
    seen: dict[str, CronItem] = {}
    for group in groups:
        for entry in group:
            if isinstance(entry, CronBuilder):
                try:
                    item = entry.build()
                except CrontabError as error:
                    errors.append(error)
                    continue
            elif isinstance(entry, CronItem):
                item = entry
            else:
                errors.append(
                    CrontabError(f"expected a CronItem or a cron(...) builder, not {entry!r:.80}")
                )
                continue
            earlier = seen.setdefault(item.identifier, item)
            if earlier is not item:
                errors.append(
                    CrontabError(
                        f"duplicate cron identifier {item.identifier!r}: {_origin(earlier)} "
                        f"and {_origin(item)}; give each a unique id (?id=... in a crontab, "
                        ".id(...) in code)"
                    )
                )
                continue
            items.append(item)
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise CrontabError(errors[0].message, errors=errors)
    return items


def _origin(item: CronItem) -> str:
    if item.line is not None:
        return f"crontab line {item.line} ({item.source!r})"
    return f"the item {item.source!r}"
