"""Decoding the JSON the database returns: fast when orjson is installed, same result always.

Every claimed job's payload goes through :func:`loads`, so at tens of thousands of jobs a
second the decoder is a visible share of a worker's CPU; orjson (the ``speedups`` extra)
decodes a typical payload three to six times faster than :func:`json.loads`. Its results
are not always the same, though, and a payload must not change meaning with an optional
install. The differences, and how each is avoided:

* integers outside 64 bits become floats (``json`` keeps them exact): text with a run of
  19 or more digits goes to :func:`json.loads` without trying orjson;
* text orjson refuses while ``json`` accepts it (``1e400``, a lone surrogate escape such as
  ``"\\ud800"``): the orjson error sends the text to :func:`json.loads`, which returns what
  it always did, or raises its own error.

Everything else (objects, arrays, strings, floats, which both round correctly, duplicate
keys, where the last wins) decodes to equal values of the same types.

**Nesting.** PostgreSQL and Node accept JSON nested thousands of levels deep; Python's
decoders do not, and where they stop depends on the decoder, the interpreter version and
how deep the caller's stack already is. So the limit is ours, :data:`MAX_DEPTH` (1,024
levels, orjson's own limit), and it holds whichever decoder runs: deeper text is refused
with :class:`NestingTooDeepError`, and text within it always decodes: when
:func:`json.loads` runs out of stack first, a decoder without recursion takes over.

**Never raising.** Drivers decode json/jsonb columns while they read a result. An exception
there loses the whole result, and a claim whose rows are lost leaves every job it locked
locked, with an attempt spent. So the drivers register :func:`decode_column`, which returns
an :class:`UndecodableJson` instead of raising; the worker fails that job alone.
"""

from __future__ import annotations

import json
import math
import re
import sys
from array import array
from collections.abc import Callable
from itertools import accumulate
from json.decoder import (  # type: ignore[attr-defined] # typeshed omits it
    scanstring,
)
from typing import Any, Final, final

__all__ = [
    "FAST_JSON",
    "MAX_DEPTH",
    "NestingTooDeepError",
    "UndecodableJson",
    "decode_column",
    "loads",
    "nesting_depth",
]

MAX_DEPTH: Final = 1024
"""The deepest nesting of arrays and objects decoded (``[[1]]`` is 2 levels deep).

orjson's fixed limit: raising it would send every deeper payload to the slow path, and a
lower one would refuse payloads that decoded before."""

_LONG_DIGITS = re.compile(r"\d{19}")
_LONG_DIGITS_BYTES = re.compile(rb"\d{19}")


# FAST_JSON: whether orjson is installed, and so whether loads() uses it.
try:
    import orjson
except ImportError:  # pragma: no cover - the test environment installs the extra
    FAST_JSON = False
else:
    FAST_JSON = True


class NestingTooDeepError(ValueError):
    """JSON text nests arrays and objects deeper than :data:`MAX_DEPTH` levels."""

    def __init__(self, depth: int | None = None) -> None:
        self.depth = depth
        found = f"nested {depth} levels deep" if depth is not None else "nested too deep"
        super().__init__(f"{found}; graphile-worker decodes JSON nested at most {MAX_DEPTH} levels")


@final
class UndecodableJson:
    """What :func:`decode_column` returns for a json/jsonb value it cannot decode.

    It takes the value's place in the row, so one bad value never costs the others their
    result. The worker fails a job whose payload is one of these without calling its
    handler; a job read through ``WorkerUtils`` carries it as its payload.

    Attributes:
        reason: Why the value could not be decoded, for ``last_error`` and logs.
        column: The column it came from (``"payload"`` unless a reader says otherwise).
    """

    __module__ = "graphile_worker"
    __slots__ = ("column", "reason")

    reason: str
    column: str

    def __init__(self, reason: str, column: str = "payload") -> None:
        self.reason = reason
        self.column = column

    def __repr__(self) -> str:
        return f"UndecodableJson({self.reason!r}, column={self.column!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, UndecodableJson):
            return NotImplemented
        return (self.reason, self.column) == (other.reason, other.column)

    def __hash__(self) -> int:
        return hash((self.reason, self.column))


def _fast_loads(text: str | bytes) -> Any:
    # A plain module-level function: psycopg warns about closures as loaders (it caches a
    # loader class per function object).
    long_digits = (
        _LONG_DIGITS.search(text) if isinstance(text, str) else _LONG_DIGITS_BYTES.search(text)
    )
    if long_digits is None:
        try:
            # orjson enforces MAX_DEPTH itself (tests/test_json.py holds it to that).
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    return _careful_loads(text)


def _careful_loads(data: str | bytes) -> Any:
    """:func:`json.loads`, refusing nesting beyond :data:`MAX_DEPTH` and never recursing out."""
    # Decoded as json.loads decodes bytes, so the result is the same either way.
    text = (
        data if isinstance(data, str) else data.decode(json.detect_encoding(data), "surrogatepass")
    )
    if _may_nest_deeper(text, MAX_DEPTH) and _json_may_go_deeper():
        depth = nesting_depth(text)
        if depth > MAX_DEPTH:
            raise NestingTooDeepError(depth)
    try:
        return json.loads(text)
    except RecursionError:
        pass
    # Deeper than the stack left here lets json.loads go, maybe within MAX_DEPTH.
    try:
        return _loads_iteratively(text)
    except NestingTooDeepError:
        raise NestingTooDeepError(nesting_depth(text)) from None


def _json_may_go_deeper() -> bool:
    """Whether :func:`json.loads` might decode text nested deeper than :data:`MAX_DEPTH`.

    CPython before 3.12 counts json's nesting against the recursion limit (1,000 unless an
    application raised it), so it fails first, and the slow scan for depth is skipped.
    """
    if sys.implementation.name == "cpython" and sys.version_info < (3, 12):
        return sys.getrecursionlimit() > MAX_DEPTH
    return True


loads: Callable[[str | bytes], Any] = _fast_loads if FAST_JSON else _careful_loads
"""Decode JSON text (``str`` or UTF-8 ``bytes``); the same values as :func:`json.loads`.

Raises:
    NestingTooDeepError: the text nests deeper than :data:`MAX_DEPTH` levels.
    ValueError: the text is not JSON (:class:`json.JSONDecodeError`), holds an integer
        too long for Python to convert, or is not valid text (:class:`UnicodeDecodeError`).
"""


def decode_column(data: str | bytes) -> Any:
    """The loader drivers register for json/jsonb columns: :func:`loads`, but never raising.

    Returns:
        The decoded value, or an :class:`UndecodableJson` saying why there is none.
    """
    try:
        return loads(data)
    except Exception as error:  # noqa: BLE001 - one bad value must not lose the whole result
        return UndecodableJson(_reason(error))


def _reason(error: Exception) -> str:
    if isinstance(error, NestingTooDeepError):
        return str(error)
    if isinstance(error, json.JSONDecodeError):
        return f"not valid JSON ({error})"
    if isinstance(error, UnicodeDecodeError):
        return f"not valid text ({error})"
    if isinstance(error, ValueError):
        return str(error) or type(error).__name__  # e.g. an integer with too many digits
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


# ------------------------------------------------------------------------------ nesting

# A JSON string (escapes included), or a run of characters that are neither brackets nor
# quotes. Removing both leaves the brackets outside strings.
_NOT_STRUCTURE = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[^\[\]{}"]+', re.DOTALL)
# Opening brackets step one level in, closing ones one level out (0xff is -1 as signed).
_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")


def _may_nest_deeper(text: str, limit: int) -> bool:
    """A quick test that is never wrong when it says no (the usual answer)."""
    # Each level takes an opening and a closing bracket.
    if len(text) <= 2 * limit:
        return False
    return text.count("[") + text.count("{") > limit


def nesting_depth(text: str) -> int:
    """How deep arrays and objects nest in JSON text, without decoding it or recursing.

    Brackets inside strings do not count. Linear in the text's length, and all of it runs
    in C (a regular expression, a translation, :func:`itertools.accumulate`).
    """
    skeleton = _NOT_STRUCTURE.sub("", text).encode("ascii", "ignore")
    steps = array("b", skeleton.translate(_STEPS, b'"'))
    return max(accumulate(steps), default=0)


# ----------------------------------------------------------------- decoding without recursion

_WHITESPACE = re.compile(r"[ \t\n\r]*")
# ASCII digits only, as json's C scanner reads numbers.
_NUMBER = re.compile(r"(-?(?:0|[1-9][0-9]*))(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_CONSTANTS: Final = (
    ("null", None),
    ("true", True),
    ("false", False),
    ("NaN", math.nan),
    ("Infinity", math.inf),
    ("-Infinity", -math.inf),
)


def _loads_iteratively(text: str) -> Any:
    """:func:`json.loads` with an explicit stack: any depth up to :data:`MAX_DEPTH`.

    Only used when :func:`json.loads` ran out of stack, so speed does not matter; values,
    types and accepted text are json's (``NaN`` and ``Infinity`` included).
    """
    containers: list[Any] = []  # the open lists and dicts, innermost last
    keys: list[str] = []  # for each open container, the key its next value goes under
    position = _skip(text, 0)
    while True:
        value: Any
        char = text[position : position + 1]
        if char in ("[", "{"):
            if len(containers) >= MAX_DEPTH:
                raise NestingTooDeepError()
            position = _skip(text, position + 1)
            if text.startswith("]" if char == "[" else "}", position):
                value = [] if char == "[" else {}
                position += 1
            else:
                key = ""
                if char == "{":
                    key, position = _key(text, position)
                containers.append([] if char == "[" else {})
                keys.append(key)
                continue  # read the first item
        elif char == '"':
            value, position = scanstring(text, position + 1, True)
        else:
            value, position = _scalar(text, position)
        # A value is complete: store it, closing every container that ends right after it.
        while True:
            position = _skip(text, position)
            if not containers:
                if position != len(text):
                    raise json.JSONDecodeError("Extra data", text, position)
                return value
            container = containers[-1]
            if isinstance(container, list):
                container.append(value)
                closing = "]"
            else:
                container[keys[-1]] = value
                closing = "}"
            char = text[position : position + 1]
            if char == ",":
                position = _skip(text, position + 1)
                if closing == "}":
                    keys[-1], position = _key(text, position)
                break  # read the next item
            if char != closing:
                raise json.JSONDecodeError("Expecting ',' delimiter", text, position)
            position += 1
            value = containers.pop()
            keys.pop()


def _key(text: str, position: int) -> tuple[str, int]:
    """An object's key and the position of its value (past the colon and whitespace)."""
    if not text.startswith('"', position):
        raise json.JSONDecodeError(
            "Expecting property name enclosed in double quotes", text, position
        )
    key, position = scanstring(text, position + 1, True)
    position = _skip(text, position)
    if not text.startswith(":", position):
        raise json.JSONDecodeError("Expecting ':' delimiter", text, position)
    return key, _skip(text, position + 1)


def _skip(text: str, position: int) -> int:
    """The position of the first character at or after ``position`` that is not whitespace."""
    whitespace = _WHITESPACE.match(text, position)
    assert whitespace is not None  # the pattern matches anywhere, if only the empty string
    return whitespace.end()


def _scalar(text: str, position: int) -> tuple[Any, int]:
    """A number or a constant starting at ``position``, and the position after it."""
    number = _NUMBER.match(text, position)
    if number is not None:
        integer, fraction, exponent = number.groups()
        if fraction or exponent:
            return float(integer + (fraction or "") + (exponent or "")), number.end()
        return int(integer), number.end()
    for word, value in _CONSTANTS:
        if text.startswith(word, position):
            return value, position + len(word)
    raise json.JSONDecodeError("Expecting value", text, position)
