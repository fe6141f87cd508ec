"""The JSON decoder used for claimed payloads: the same values as json.loads, always.

The test environment installs the ``speedups`` extra, so :func:`graphile_worker._json.loads`
is the orjson-backed decoder here; these tests hold it to :func:`json.loads` value for value
and type for type, including where orjson on its own would differ.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graphile_worker import _json


def same(left: Any, right: Any) -> bool:
    """Equal values of the same types all the way down (``1 == 1.0`` does not count)."""
    if type(left) is not type(right):
        return False
    if isinstance(left, dict):
        return list(left) == list(right) and all(same(left[k], right[k]) for k in left)
    if isinstance(left, list):
        return len(left) == len(right) and all(map(same, left, right))
    if isinstance(left, float) and math.isnan(left):
        return math.isnan(right)
    return bool(left == right)


def test_the_fast_decoder_is_the_one_under_test() -> None:
    # The suite's environment has orjson; without it these tests would only compare
    # json.loads with itself.
    pytest.importorskip("orjson")
    assert _json.FAST_JSON
    assert _json.loads is not json.loads


@pytest.mark.parametrize(
    "text",
    [
        "123456789012345678901234567890",  # beyond 64 bits: orjson alone gives a float
        "-9223372036854775809",
        "18446744073709551616",
        '{"id": 18446744073709551616, "n": [1, 2]}',
        "9223372036854775807",
        "1e400",  # json.loads: inf; orjson alone refuses it
        "-1e400",
        '"\\ud800"',  # a lone surrogate: json.loads keeps it; orjson alone refuses it
        '{"a": 1, "a": 2}',
        "-0.0",
        "0.1",
        "[1.5e-7, 2e308, -0]",
        '"caf\\u00e9 \\ud83d\\ude00"',
        '{"phone": "12345678901234567890"}',  # long digits inside a string
        "[" * 2000 + "]" * 2000,  # deeper than orjson's limit
    ],
)
@pytest.mark.parametrize("as_bytes", [False, True], ids=["str", "bytes"])
def test_agrees_with_json_loads_where_orjson_alone_would_not(text: str, as_bytes: bool) -> None:
    data: str | bytes = text.encode() if as_bytes else text
    try:
        expected = json.loads(data)
    except RecursionError:
        with pytest.raises(RecursionError):
            _json.loads(data)
        return
    assert same(_json.loads(data), expected)


@pytest.mark.parametrize("text", ["", "{", "[1,]", "nul", '{"a" 1}', "NaN x"])
def test_invalid_text_raises_json_decode_error(text: str) -> None:
    with pytest.raises(json.JSONDecodeError):
        _json.loads(text)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=25,
)


@settings(max_examples=400, deadline=None)
@given(value=json_values, ensure_ascii=st.booleans())
def test_decodes_what_json_dumps_writes_exactly_as_json_loads(
    value: Any, ensure_ascii: bool
) -> None:
    text = json.dumps(value, ensure_ascii=ensure_ascii)
    assert same(_json.loads(text), json.loads(text))
    assert same(_json.loads(text.encode("utf-8", "surrogatepass")), json.loads(text))
