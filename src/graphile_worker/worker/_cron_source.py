"""Turning ``WorkerOptions.crontab`` (text, a file, or items) into validated cron items.

Three spellings, one result, decided when the options are built so that a bad crontab
fails before the worker connects:

* a ``str`` is crontab *text* (Node's ``crontab`` option);
* an ``os.PathLike`` (``pathlib.Path``) is a crontab *file* (Node's ``crontabFile``), read
  once, when the options are built;
* any other iterable holds :class:`~graphile_worker.crontab.CronItem` values (from
  ``parse_crontab()``) or builders from ``cron(...)``, built here (Node's
  ``parsedCronItems``).

A plain string is never guessed to be a file name: ``"crontab"`` is parsed as (bad)
crontab text, and the error then suggests ``pathlib.Path`` when such a file exists.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from ..errors import ConfigurationError, CrontabError

if TYPE_CHECKING:
    from ..crontab import CronBuilder, CronItem

__all__ = ["CrontabSource", "resolve_crontab"]

CrontabSource: TypeAlias = "str | os.PathLike[str] | Iterable[CronItem | CronBuilder] | None"
"""What ``WorkerOptions.crontab`` accepts: crontab text, a crontab file, or cron items and
builders."""


def resolve_crontab(source: object) -> tuple[CronItem, ...]:
    """The cron items ``source`` stands for, checked; ``()`` for ``None`` or an empty crontab.

    Raises:
        CrontabError: a line or item is invalid, two items share an identifier, or the
            file cannot be read.
        ConfigurationError: ``source`` is none of the accepted kinds.
    """
    if source is None:
        return ()
    from ..crontab import load_crontab, parse_crontab
    from ..crontab._collect import collect_cron_items

    if isinstance(source, str):
        try:
            return tuple(parse_crontab(source))
        except CrontabError as error:
            hint = _file_hint(source)
            if hint is None:
                raise
            raise CrontabError(
                f"{error.message} ({hint})", line=error.line, column=error.column, text=error.text
            ) from error
    if isinstance(source, os.PathLike):
        return tuple(load_crontab(source))
    if isinstance(source, (bytes, dict)) or not isinstance(source, Iterable):
        raise ConfigurationError(
            f"crontab must be crontab text (str), a crontab file (pathlib.Path) or a list of "
            f"CronItem and cron() builders, not {source!r:.80}"
        )
    return tuple(collect_cron_items(source))


def _file_hint(text: str) -> str | None:
    """Say so when crontab text that failed to parse is really the name of a file."""
    if "\n" in text or len(text) > 4096:
        return None
    try:
        is_file = Path(text.strip()).is_file()
    except (OSError, ValueError):
        return None
    if not is_file:
        return None
    return (
        f"a str is crontab text; {text.strip()!r} is a file, so pass "
        f"pathlib.Path({text.strip()!r}) to read it"
    )
