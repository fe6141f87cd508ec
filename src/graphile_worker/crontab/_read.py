"""Reading a crontab: :func:`parse_crontab` for text, :func:`load_crontab` for a file.

Both hand the text to the parser, which reports every bad line at once; this module adds
what comes before it: checking the argument, opening the file, decoding UTF-8, and naming
the file in every error.
"""

from __future__ import annotations

import os

from ..errors import CrontabError
from ._item import CronItem
from ._parser import parse_crontab_text

__all__ = ["load_crontab", "parse_crontab"]


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
