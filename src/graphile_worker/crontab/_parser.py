"""Crontab text to ``CronItem`` objects, with every bad line reported at once.

Which lines are accepted is decided by the same patterns Node graphile-worker uses
(``cronConstants.js``), translated with JavaScript's idea of white space (``\\s`` and
``trim()`` include U+00A0, U+FEFF and the other Unicode spaces) and of ``.`` (which stops
at U+2028 and U+2029). Only when a pattern fails does a second, slower pass look at the
line to say *what* is wrong and where, so the messages can be specific without the
accepted language drifting from Node's.

Options are read like Node's ``querystring.parse``: ``&``-separated ``key=value`` pairs,
``+`` and percent escapes decoded, at most 1000 pairs. Some values Node accepts only to
fail later, when it adds the job (``max=0``, an out-of-range priority, an empty
``jobKey``); they are errors here, so that the mistake shows when the crontab is loaded.
``jobKeyMode`` without ``jobKey``, which Node ignores, is ignored here too, with a warning:
a crontab Node runs must run here.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from typing import Final
from urllib.parse import unquote_plus

from ..errors import CrontabError
from ..spec import JSON
from ._checks import (
    IDENTIFIER_PATTERN,
    TASK_IDENTIFIER_PATTERN,
    check_job_key,
    check_job_key_mode,
    check_max_attempts,
    check_payload,
    check_priority,
    check_queue_name,
    check_task_identifier,
)
from ._fields import FIELDS, FieldError, parse_field, parse_time_phrase
from ._item import CronItem
from ._json5 import Json5Error, read_json5_object

__all__ = ["parse_crontab_text"]

JS_SPACE: Final = (
    "\t\n\v\f\r \u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
)
"""ECMAScript white space and line terminators: what ``\\s`` and ``trim()`` mean in Node."""
_S: Final = f"[{JS_SPACE}]"
_NOT_S: Final = f"[^{JS_SPACE}]"
_DOT: Final = "[^\n\r\u2028\u2029]"
_FIELD: Final = "([0-9*/,-]+)"
_LINE: Final = re.compile(f"{_FIELD}{_S}+" * 5 + f"({_DOT}*)")
_COMMAND: Final = re.compile(
    rf"([_a-zA-Z][_a-zA-Z0-9:/_-]*)(?:{_S}+\?({_NOT_S}+))?(?:{_S}+(\{{{_DOT}*\}}))?"
)
_logger: Final = logging.getLogger("graphile_worker.crontab")
_TOKEN: Final = re.compile(f"{_NOT_S}+")
_LINE_SPLIT: Final = re.compile(r"\r?\n")
_FIELD_CHARS: Final = frozenset("0123456789*/,-")
_MAX_OPTION_PAIRS: Final = 1000  # querystring.parse's maxKeys
_OPTION_NAMES: Final = {
    "id": "id",
    "fill": "fill",
    "max": "max",
    "queue": "queue",
    "priority": "priority",
    "jobKey": "jobKey",
    "jobKeyMode": "jobKeyMode",
}
_SUPPORTED_OPTIONS: Final = "id, fill, max, queue, priority, jobKey, jobKeyMode"
_NODE_SPELLINGS: Final = {"job_key": "jobKey", "job_key_mode": "jobKeyMode"}
"""Spellings Node refuses (stopping cron on every Node worker reading the file): named in
the error so the fix is obvious."""
_NAMES: Final = frozenset(
    {
        *("sun", "mon", "tue", "wed", "thu", "fri", "sat"),
        *("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"),
        *("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
    }
)
_MACROS: Final = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


def js_trim_offset(line: str) -> tuple[str, int]:
    """``line.trim()`` as JavaScript does it, and how many characters went from the left."""
    stripped = line.lstrip(JS_SPACE)
    return stripped.rstrip(JS_SPACE), len(line) - len(stripped)


def parse_crontab_text(text: str, path: str | None) -> list[CronItem]:
    """Every item of a crontab, or one :class:`CrontabError` listing every problem."""
    items: list[CronItem] = []
    errors: list[CrontabError] = []
    first_use: dict[str, int] = {}
    for number, raw in enumerate(_LINE_SPLIT.split(text), start=1):
        line, indent = js_trim_offset(raw)
        if not line or line.startswith("#"):
            continue
        parser = _LineParser(line, number, indent, path)
        item = parser.parse()
        errors.extend(parser.errors)
        if item is None:
            continue
        earlier = first_use.setdefault(item.identifier, number)
        if earlier != number:
            parser.error(
                f"duplicate cron identifier {item.identifier!r} (line {earlier} uses it "
                "too); add ?id=... to give each item a unique identifier",
                parser.identifier_start,
                item.identifier,
            )
            errors.extend(parser.errors)
            continue
        items.append(item)
    if errors:
        raise _combined(errors, path)
    return items


def _combined(errors: list[CrontabError], path: str | None) -> CrontabError:
    if len(errors) == 1:
        return errors[0]
    first = errors[0]
    return CrontabError(
        first.message,
        line=first.line,
        column=first.column,
        text=first.text,
        path=path,
        errors=errors,
    )


@dataclasses.dataclass
class _Options:
    identifier: str | None = None
    values: dict[str, object] = dataclasses.field(default_factory=dict)
    identifier_start: int | None = None


class _LineParser:
    """One non-comment line; collects errors instead of stopping at the first."""

    def __init__(self, line: str, number: int, indent: int, path: str | None) -> None:
        self.line = line
        self.number = number
        self.indent = indent
        self.path = path
        self.errors: list[CrontabError] = []
        self.identifier_start = 0

    def error(self, message: str, start: int, text: str) -> None:
        """Record a problem at ``start``, an index into the trimmed line."""
        self.errors.append(
            CrontabError(
                message,
                line=self.number,
                column=self.indent + start + 1,
                text=text,
                path=self.path,
            )
        )

    def parse(self) -> CronItem | None:
        match = _LINE.fullmatch(self.line)
        if match is None:
            self.diagnose_line()
            return None
        sets: list[frozenset[int]] = []
        for index, spec in enumerate(FIELDS, start=1):
            field = match.group(index)
            try:
                sets.append(parse_field(spec, field))
            except FieldError as error:
                text = field if error.text is None else error.text
                self.error(str(error), match.start(index) + error.offset, text)
        command_start = match.start(6)
        command = _COMMAND.fullmatch(match.group(6))
        if command is None:
            self.diagnose_command(match.group(6), command_start)
            return None
        task = command.group(1)
        self.identifier_start = command_start
        try:
            check_task_identifier(task)
        except CrontabError as error:
            self.error(error.message, command_start, task)
        options = _Options()
        if command.group(2) is not None:
            options = self.parse_options(command.group(2), command_start + command.start(2))
        payload = None
        if command.group(3) is not None:
            payload = self.parse_payload(command.group(3), command_start + command.start(3))
        if self.errors:
            return None
        if options.identifier_start is not None:
            self.identifier_start = options.identifier_start
        if "job_key_mode" in options.values and "job_key" not in options.values:
            # Node reads the mode only together with a key and otherwise ignores it; a
            # crontab Node runs must run here too, so this is a warning, not an error.
            mode = options.values.pop("job_key_mode")
            _logger.warning(
                "crontab line %d: jobKeyMode=%s is ignored without a jobKey (as Node "
                "graphile-worker ignores it); add jobKey=... or remove it",
                self.number,
                getattr(mode, "value", mode),
            )
        minutes, hours, days_of_month, months, days_of_week = sets
        try:
            return CronItem(
                task_identifier=task,
                identifier=options.identifier or task,
                minutes=minutes,
                hours=hours,
                days_of_month=days_of_month,
                months=months,
                days_of_week=days_of_week,
                payload=payload,
                source=self.line,
                line=self.number,
                **options.values,  # type: ignore[arg-type]  # checked in parse_options
            )
        except CrontabError as error:
            # Each option was checked alone; only a combination could fail here.
            start = command_start + (command.start(2) - 1 if command.group(2) else 0)
            self.error(error.message, start, command.group(2) or task)
            return None

    # ------------------------------------------------------------------------- options

    def parse_options(self, text: str, start: int) -> _Options:
        options = _Options()
        seen: dict[str, str] = {}
        offset = start
        for piece in text.split("&")[:_MAX_OPTION_PAIRS]:
            piece_start = offset
            offset += len(piece) + 1
            if not piece:
                continue
            raw_key, _, raw_value = piece.partition("=")
            key = unquote_plus(raw_key, errors="replace")
            value = unquote_plus(raw_value, errors="replace")
            name = _OPTION_NAMES.get(key)
            if name is None:
                hint = _NODE_SPELLINGS.get(key)
                self.error(
                    f"unknown option {key!r}; write {hint!r}: Node graphile-worker refuses "
                    f"{key!r}, which would stop cron on every Node worker reading this file"
                    if hint is not None
                    else f"unknown option {key!r}; the options are {_SUPPORTED_OPTIONS}",
                    piece_start,
                    piece,
                )
                continue
            if name in seen:
                self.error(
                    f"option {name!r} is given twice (as {seen[name]!r} and {key!r})",
                    piece_start,
                    piece,
                )
                continue
            seen[name] = key
            try:
                self.read_option(options, name, value)
            except (CrontabError, ValueError) as error:
                message = error.message if isinstance(error, CrontabError) else str(error)
                self.error(f"invalid {key} option: {message}", piece_start, piece)
                continue
            if name == "id":
                options.identifier_start = piece_start
        return options

    @staticmethod
    def read_option(options: _Options, name: str, value: str) -> None:
        values = options.values
        if name == "id":
            if not IDENTIFIER_PATTERN.fullmatch(value):
                raise CrontabError(
                    f"{value!r} is not an identifier; it starts with a letter or '_' and "
                    "has only letters, digits, '_' and '-'"
                )
            options.identifier = value
        elif name == "fill":
            values["backfill_period"] = parse_time_phrase(value)
        elif name == "max":
            if not re.fullmatch("[0-9]+", value):
                raise CrontabError(f"{value!r} is not a whole number")
            values["max_attempts"] = check_max_attempts(_clamped_int(value))
        elif name == "queue":
            values["queue_name"] = check_queue_name(value)
        elif name == "priority":
            if not re.fullmatch("-?[0-9]+", value):
                raise CrontabError(f"{value!r} is not a whole number")
            values["priority"] = check_priority(_clamped_int(value))
        elif name == "jobKey":
            values["job_key"] = check_job_key(value)
        else:
            values["job_key_mode"] = check_job_key_mode(value)

    # ------------------------------------------------------------------------- payload

    def parse_payload(self, text: str, start: int) -> dict[str, JSON] | None:
        try:
            payload = read_json5_object(text)
            check_payload(payload)
        except Json5Error as error:
            self.error(
                f"invalid JSON5 payload: {error}",
                start + error.offset,
                text[error.offset : error.offset + 1],
            )
            return None
        except CrontabError as error:
            self.error(f"invalid payload: {error.message}", start, text)
            return None
        return payload

    # --------------------------------------------------------------------- diagnostics

    def diagnose_line(self) -> None:
        """Say why a line is not ``MIN HOUR DOM MON DOW task ...``."""
        line = self.line
        for index, char in enumerate(line):
            if char in "\r\u2028\u2029":
                self.error(f"unexpected line break character {char!r}", index, char)
                return
        tokens = list(_TOKEN.finditer(line))
        for index, token in enumerate(tokens[:5]):
            text = token.group()
            if set(text) <= _FIELD_CHARS:
                continue
            spec = FIELDS[index]
            if text.lower() in _MACROS and index == 0:
                message = (
                    f"{text!r} is not part of the crontab format; write "
                    f"{_MACROS[text.lower()]!r} instead"
                )
            elif text.lower() in _NAMES:
                message = (
                    f"names like {text!r} are not part of the crontab format; use numbers "
                    f"({spec.described_range})"
                )
            elif TASK_IDENTIFIER_PATTERN.fullmatch(text) and not _misplaced_field(tokens, index):
                message = (
                    f"found {index} time field{'s' if index != 1 else ''} before "
                    f"{text!r}; a line needs five (minute, hour, day of month, month, day "
                    "of week), then the task identifier"
                )
            else:
                message = (
                    f"unsupported {spec.name} syntax {text!r}; use a number, a range 'a-b', "
                    "'*' or '*/n'"
                )
            self.error(message, token.start(), text)
            return
        if len(tokens) <= 5:
            self.error("missing task identifier after the five time fields", len(line), "")
            return
        self.error(  # pragma: no cover - every failing line is caught above
            "could not read this line as 'minute hour day-of-month month day-of-week task "
            "?options {payload}'",
            0,
            line,
        )

    def diagnose_command(self, command: str, start: int) -> None:
        """Say why ``task ?options {payload}`` does not read."""
        first = _TOKEN.match(command)
        assert first is not None  # the line pattern leaves no leading space
        token = first.group()
        task = TASK_IDENTIFIER_PATTERN.match(command)
        if task is None:
            if set(token) <= _FIELD_CHARS:
                message = (
                    f"unexpected sixth time field {token!r}; a line has five (minute, hour, "
                    "day of month, month, day of week) before the task identifier"
                )
            else:
                message = (
                    f"invalid task identifier {token!r}; it starts with a letter or '_' "
                    "and has only letters, digits and _ - : /"
                )
            self.error(message, start, token)
            return
        position = task.end()
        if position < len(command) and command[position] not in JS_SPACE:
            char = command[position]
            if char == "?":
                message = "put a space between the task identifier and its ?options"
            elif char == "{":
                message = "put a space between the task identifier and its {payload}"
            else:
                message = f"invalid character {char!r} in task identifier {token!r}"
            self.error(message, start + position, char)
            return
        rest = _TOKEN.search(command, position)
        if rest is not None and rest.group().startswith("?"):
            if rest.group() == "?":
                self.error("empty options after '?'", start + rest.start(), "?")
                return
            rest = _TOKEN.search(command, rest.end())
        if rest is None:  # pragma: no cover - the command pattern would have matched
            self.error("could not read the task, options and payload", start, command)
            return
        tail = command[rest.start() :]
        if tail.startswith("?"):
            message = "give the options once, after a single '?', joined with '&'"
        elif not tail.startswith("{"):
            message = (
                f"unexpected {rest.group()!r} after the task identifier; options start with "
                "'?' and the payload with '{'"
            )
        else:
            message = "the payload must be a JSON5 object that ends the line with '}'"
        self.error(message, start + rest.start(), tail)


def _misplaced_field(tokens: list[re.Match[str]], index: int) -> bool:
    """Whether a word at ``index`` sits where a time field belongs (then it is a bad field).

    ``x * * * * task`` has a bad minute; ``* * * * task`` has too few fields.
    """
    if len(tokens) < 6 or not TASK_IDENTIFIER_PATTERN.match(tokens[5].group()):
        return False
    return all(set(token.group()) <= _FIELD_CHARS for token in tokens[index + 1 : 5])


def _clamped_int(digits: str) -> int:
    """``int(digits)``, clamped far outside any valid range for absurdly long numbers."""
    negative = digits.startswith("-")
    significant = digits.lstrip("-").lstrip("0")
    value = int(significant or "0") if len(significant) <= 18 else 10**18
    return -value if negative else value
