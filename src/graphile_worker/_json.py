"""Decoding the JSON the database returns: fast when orjson is installed, same result always.

Every claimed job's payload goes through :func:`loads`, so at tens of thousands of jobs a
second the decoder is a visible share of a worker's CPU; orjson (the ``speedups`` extra)
decodes a typical payload three to six times faster than :func:`json.loads`. Its results
are not always the same, though, and a payload must not change meaning with an optional
install. The differences, and how each is avoided:

* integers outside 64 bits become floats (``json`` keeps them exact): text with a run of
  19 or more digits goes to :func:`json.loads` without trying orjson;
* text orjson refuses while ``json`` accepts it (``1e400``, a lone surrogate escape such as
  ``"\\ud800"``, nesting deeper than orjson's limit): the orjson error sends the text to
  :func:`json.loads`, which returns what it always did, or raises its own error.

Everything else (objects, arrays, strings, floats, which both round correctly, duplicate
keys, where the last wins) decodes to equal values of the same types.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

__all__ = ["FAST_JSON", "loads"]

_LONG_DIGITS = re.compile(r"\d{19}")
_LONG_DIGITS_BYTES = re.compile(rb"\d{19}")


# FAST_JSON: whether orjson is installed, and so whether loads() uses it.
try:
    import orjson
except ImportError:  # pragma: no cover - the test environment installs the extra
    FAST_JSON = False
else:
    FAST_JSON = True


def _fast_loads(text: str | bytes) -> Any:
    # A plain module-level function: psycopg warns about closures as loaders (it caches a
    # loader class per function object).
    long_digits = (
        _LONG_DIGITS.search(text) if isinstance(text, str) else _LONG_DIGITS_BYTES.search(text)
    )
    if long_digits is None:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)


loads: Callable[[str | bytes], Any] = _fast_loads if FAST_JSON else json.loads
"""Decode JSON text (``str`` or UTF-8 ``bytes``); the same values as :func:`json.loads`."""
