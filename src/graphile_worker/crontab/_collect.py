"""One checked list of cron items from a crontab file and from code, for the worker.

A worker takes :class:`CronItem` values (parsed from a crontab) and :func:`cron` builders
alike, and must schedule each identifier once: the database keys the last run of an item
by its identifier. Not public API; the worker imports it from here.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..errors import CrontabError
from ._builder import CronBuilder
from ._item import CronItem

__all__ = ["collect_cron_items"]


def collect_cron_items(*groups: Iterable[CronItem | CronBuilder]) -> list[CronItem]:
    """Build every builder and check that identifiers are unique across all the groups.

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
