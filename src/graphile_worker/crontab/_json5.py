"""A JSON5 reader for crontab payloads, accepting exactly what Node's ``json5`` package does.

Node graphile-worker reads the ``{payload}`` of a crontab line with ``JSON5.parse``, so a
crontab that Node accepts must give the same payload here. JSON5 adds to JSON: comments,
unquoted (ECMAScript identifier) keys, single-quoted strings, trailing commas, hexadecimal
numbers, leading or trailing decimal points, an explicit ``+`` sign, ``Infinity`` and
``NaN``, and more escapes and white space. This reader is a plain recursive descent over
the same grammar as json5 2.x's state machine; it is small enough that a dependency is not
worth it.

Values come back the way ``json.loads`` gives them: numbers without a fraction or exponent
are ``int``, others ``float``. ``Infinity`` and ``NaN`` become ``None``: Node turns them into
``null`` when it writes the job's payload, so the job ends up the same.
"""

from __future__ import annotations

import math
import re
import unicodedata
from decimal import Decimal
from typing import Final

from ..spec import JSON

__all__ = ["MAX_DEPTH", "Json5Error", "read_json5_object"]

MAX_DEPTH: Final = 100
"""Deepest nesting accepted. json5 has no limit, but serialising a deeper payload (to send it
to PostgreSQL) would exhaust Python's recursion limit, and no schedule needs it."""

_MAX_INTEGER_DIGITS: Final = 4000
# Python refuses to convert integers longer than about 4300 digits to and from text.

# ECMAScript white space and line terminators; json5 also skips any other "Zs" character.
_SPACE: Final = frozenset("\t\v\f \u00a0\ufeff\n\r\u2028\u2029")
_LINE_TERMINATORS: Final = frozenset("\n\r\u2028\u2029")
_HEX: Final = frozenset("0123456789abcdefABCDEF")
_DIGITS: Final = frozenset("0123456789")
_SIMPLE_ESCAPES: Final = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_PLAIN_STRING_RUN: Final = re.compile(r"[^\\\"'\n\r]+")
_DIGIT_RUN: Final = re.compile(r"[0-9]*")
_HEX_RUN: Final = re.compile(r"[0-9a-fA-F]*")
_ID_START_CATEGORIES: Final = frozenset({"Lu", "Ll", "Lt", "Lm", "Lo", "Nl"})
_ID_CONTINUE_CATEGORIES: Final = _ID_START_CATEGORIES | {"Mn", "Mc", "Nd", "Pc"}


class Json5Error(ValueError):
    """The text is not a JSON5 value; ``offset`` is the index of the offending character."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


def read_json5_object(text: str) -> dict[str, JSON]:
    """Read ``text``, which the crontab grammar guarantees starts with ``{``, as JSON5.

    Raises:
        Json5Error: with the offset of the first character that is not allowed.
    """
    reader = _Reader(text)
    value = reader.read_object(1)
    reader.skip_space()
    if reader.position < len(text):
        raise reader.unexpected("after the end of the payload object")
    return value


def _is_id_start(char: str) -> bool:
    if char.isascii():
        return char.isalpha() or char in "$_"
    return unicodedata.category(char) in _ID_START_CATEGORIES


def _is_id_continue(char: str) -> bool:
    if char.isascii():
        return char.isalnum() or char in "$_"
    return char in "\u200c\u200d" or unicodedata.category(char) in _ID_CONTINUE_CATEGORIES


def _is_space(char: str) -> bool:
    return char in _SPACE or (not char.isascii() and unicodedata.category(char) == "Zs")


def _join_surrogates(text: str) -> str:
    r"""Combine ``\ud83d\ude00``-style escaped pairs into one character, as a JS string does."""
    if not any("\ud800" <= char <= "\udfff" for char in text):
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")


class _Reader:
    __slots__ = ("position", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.position = 0

    # ------------------------------------------------------------------------- helpers

    def peek(self) -> str:
        """The next character, or ``""`` at the end."""
        return self.text[self.position : self.position + 1]

    def unexpected(self, where: str) -> Json5Error:
        char = self.peek()
        if not char:
            return Json5Error(f"unexpected end of payload {where}", self.position)
        return Json5Error(f"unexpected character {char!r} {where}", self.position)

    def expect_literal(self, word: str) -> None:
        for char in word:
            if self.peek() != char:
                raise self.unexpected(f"in {word!r}")
            self.position += 1

    def skip_space(self) -> None:
        """Skip white space and comments, which JSON5 allows before any token."""
        text = self.text
        while self.position < len(text):
            char = text[self.position]
            if _is_space(char):
                self.position += 1
            elif char == "/":
                self.skip_comment()
            else:
                return

    def skip_comment(self) -> None:
        text = self.text
        start = self.position
        kind = text[start + 1 : start + 2]
        if kind == "*":
            end = text.find("*/", start + 2)
            if end < 0:
                raise Json5Error("unterminated /* comment */ in payload", start)
            self.position = end + 2
        elif kind == "/":
            self.position = start + 2
            while self.position < len(text) and text[self.position] not in _LINE_TERMINATORS:
                self.position += 1
        else:
            self.position += 1
            raise self.unexpected("after '/' (comments start with // or /*)")

    # -------------------------------------------------------------------------- values

    def read_value(self, depth: int) -> JSON:
        char = self.peek()
        if char == "{":
            return self.read_object(depth + 1)
        if char == "[":
            return self.read_array(depth + 1)
        if char in ("'", '"'):
            return self.read_string()
        if char == "n":
            self.expect_literal("null")
            return None
        if char == "t":
            self.expect_literal("true")
            return True
        if char == "f":
            self.expect_literal("false")
            return False
        if char and char in "+-.0123456789IN":
            return self.read_number()
        raise self.unexpected("where a value should be")

    def read_object(self, depth: int) -> dict[str, JSON]:
        if depth > MAX_DEPTH:
            raise Json5Error(f"payload nests deeper than {MAX_DEPTH} levels", self.position)
        self.position += 1  # "{"
        result: dict[str, JSON] = {}
        while True:
            self.skip_space()
            if self.peek() == "}":
                self.position += 1
                return result
            key = self.read_property_name()
            self.skip_space()
            if self.peek() != ":":
                raise self.unexpected(f"after the property name {key!r} (expected ':')")
            self.position += 1
            self.skip_space()
            result[key] = self.read_value(depth)
            self.skip_space()
            char = self.peek()
            if char == ",":
                self.position += 1
            elif char == "}":
                self.position += 1
                return result
            else:
                raise self.unexpected("after a property value (expected ',' or '}')")

    def read_array(self, depth: int) -> list[JSON]:
        if depth > MAX_DEPTH:
            raise Json5Error(f"payload nests deeper than {MAX_DEPTH} levels", self.position)
        self.position += 1  # "["
        result: list[JSON] = []
        while True:
            self.skip_space()
            if self.peek() == "]":
                self.position += 1
                return result
            result.append(self.read_value(depth))
            self.skip_space()
            char = self.peek()
            if char == ",":
                self.position += 1
            elif char == "]":
                self.position += 1
                return result
            else:
                raise self.unexpected("after an array item (expected ',' or ']')")

    def read_property_name(self) -> str:
        char = self.peek()
        if char in ("'", '"'):
            return self.read_string()
        if not (char == "\\" or (char and _is_id_start(char))):
            raise self.unexpected("where a property name should be")
        name: list[str] = []
        first = True
        while True:
            char = self.peek()
            if char == "\\":
                start = self.position
                self.position += 1
                if self.peek() != "u":
                    raise self.unexpected("in a property name (only \\u escapes are allowed)")
                self.position += 1
                char = self.read_hex_code(4)
                valid = _is_id_start(char) if first else _is_id_continue(char)
                if not valid:
                    raise Json5Error(f"escaped character {char!r} cannot be in a name", start)
            elif char and (_is_id_start(char) if first else _is_id_continue(char)):
                self.position += 1
            else:
                return _join_surrogates("".join(name))
            name.append(char)
            first = False

    def read_string(self) -> str:
        text = self.text
        quote = text[self.position]
        start = self.position
        self.position += 1
        parts: list[str] = []
        while True:
            run = _PLAIN_STRING_RUN.match(text, self.position)
            if run:
                parts.append(run.group())
                self.position = run.end()
            char = self.peek()
            if char == quote:
                self.position += 1
                return _join_surrogates("".join(parts))
            if char in ("'", '"'):
                parts.append(char)
                self.position += 1
            elif char == "\\":
                self.position += 1
                parts.append(self.read_escape())
            elif not char:
                raise Json5Error("unterminated string in payload", start)
            else:
                raise self.unexpected("in a string (escape line breaks as \\n)")

    def read_escape(self) -> str:
        char = self.peek()
        if not char:
            raise self.unexpected("after '\\'")
        self.position += 1
        if char in _SIMPLE_ESCAPES:
            return _SIMPLE_ESCAPES[char]
        if char == "0":
            if self.peek() in _DIGITS and self.peek():
                raise self.unexpected("after '\\0' (octal escapes are not allowed)")
            return "\0"
        if char == "x":
            return self.read_hex_code(2)
        if char == "u":
            return self.read_hex_code(4)
        if char in "123456789":
            self.position -= 1
            raise self.unexpected("after '\\' (octal escapes are not allowed)")
        if char == "\r" and self.peek() == "\n":
            self.position += 1
            return ""
        if char in _LINE_TERMINATORS:
            return ""
        return char

    def read_hex_code(self, length: int) -> str:
        for _ in range(length):
            if self.peek() not in _HEX or not self.peek():
                raise self.unexpected(f"in an escape (expected {length} hexadecimal digits)")
            self.position += 1
        return chr(int(self.text[self.position - length : self.position], 16))

    def read_number(self) -> JSON:
        text = self.text
        start = self.position
        negative = False
        char = self.peek()
        if char in ("+", "-"):
            negative = char == "-"
            self.position += 1
            char = self.peek()
            if not char or char not in ".0123456789IN":
                raise self.unexpected("after a sign")
        if char == "I":
            self.expect_literal("Infinity")
            return None
        if char == "N":
            self.expect_literal("NaN")
            return None
        if char == "0" and text[self.position + 1 : self.position + 2] in ("x", "X"):
            self.position += 2
            digits = _HEX_RUN.match(text, self.position)
            assert digits is not None
            if not digits.group():
                raise self.unexpected("in a hexadecimal number")
            self.position = digits.end()
            return self.integer(digits.group(), 16, negative, start)
        body_start = self.position
        if char == "0":
            self.position += 1
        elif char != ".":
            self.skip_digits()
        is_float = False
        if self.peek() == ".":
            is_float = True
            self.position += 1
            if self.position - 1 == body_start and not self.skip_digits():
                raise self.unexpected("after a leading '.' (expected a digit)")
            self.skip_digits()
        if self.peek() in ("e", "E") and self.peek():
            is_float = True
            self.position += 1
            if self.peek() in ("+", "-") and self.peek():
                self.position += 1
            if not self.skip_digits():
                raise self.unexpected("in an exponent (expected a digit)")
        body = text[body_start : self.position]
        if not is_float:
            return self.integer(body, 10, negative, start)
        value = float(body)
        if not math.isfinite(value):
            return None  # Node writes an overflowing number as null, like Infinity
        return _as_javascript_number(-value if negative else value)

    def skip_digits(self) -> bool:
        digits = _DIGIT_RUN.match(self.text, self.position)
        assert digits is not None
        self.position = digits.end()
        return bool(digits.group())

    def integer(self, digits: str, base: int, negative: bool, start: int) -> int | float:
        if len(digits) > _MAX_INTEGER_DIGITS:
            raise Json5Error(f"number has more than {_MAX_INTEGER_DIGITS} digits", start)
        value = int(digits, base)
        if -_SAFE_INTEGER <= value <= _SAFE_INTEGER:
            return -value if negative else value
        # Beyond 2**53 Node holds the number as a double, which loses digits.
        return _as_javascript_number(float(-value if negative else value))


_SAFE_INTEGER = 2**53 - 1
"""JavaScript's ``Number.MAX_SAFE_INTEGER``: every integer up to it is exact as a double."""

_JAVASCRIPT_EXPONENT_FROM = 1e21
"""From this magnitude on, JavaScript writes a number with an exponent (``1e+21``)."""


def _as_javascript_number(value: float) -> int | float:
    """The JSON value Node writes for the double ``value``, as Python would read it back.

    JSON5 numbers are doubles in Node: ``5.0`` and ``1e3`` are written ``5`` and ``1000``,
    and ``12345678901234567890`` becomes ``12345678901234567000`` (the double's shortest
    decimal form, which Python's ``repr`` gives too). Integral values below 1e21 are
    therefore ints here, with those same digits, so a crontab yields the same payload
    whichever worker schedules it, and a Python handler gets an ``int`` either way.
    """
    if value.is_integer() and abs(value) < _JAVASCRIPT_EXPONENT_FROM:
        return int(Decimal(repr(value)))
    return value
