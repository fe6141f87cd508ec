"""The JSON decoder used for claimed payloads: the same values as json.loads, always.

The test environment installs the ``speedups`` extra, so :func:`graphile_worker._json.loads`
is the orjson-backed decoder here; these tests hold it to :func:`json.loads` value for value
and type for type, including where orjson on its own would differ.
"""

from __future__ import annotations

import json
import math
import sys
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
    ],
)
@pytest.mark.parametrize("as_bytes", [False, True], ids=["str", "bytes"])
def test_agrees_with_json_loads_where_orjson_alone_would_not(text: str, as_bytes: bool) -> None:
    data: str | bytes = text.encode() if as_bytes else text
    assert same(_json.loads(data), json.loads(data))


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


# ------------------------------------------------------------------------------ nesting


def nested_arrays(depth: int, inner: str = "1") -> str:
    return "[" * depth + inner + "]" * depth


def nested_objects(depth: int, inner: str = "1") -> str:
    return '{"a": ' * depth + inner + "}" * depth


def decode_deep_in_the_stack(text: str, frames: int) -> Any:
    """Decode ``text`` with ``frames`` more Python frames on the stack than a test has."""
    if frames:
        return decode_deep_in_the_stack(text, frames - 1)
    return _json.loads(text)


# Every way a text reaches a decoder: orjson, json.loads (a long integer inside sends the
# text there; _careful_loads is the decoder without orjson), str or bytes.
DECODERS = {
    "loads": _json.loads,
    "careful": _json._careful_loads,
}
INNER = {"short": "1", "long-integer": "12345678901234567890"}


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("inner", INNER)
@pytest.mark.parametrize("as_bytes", [False, True], ids=["str", "bytes"])
@pytest.mark.parametrize("build", [nested_arrays, nested_objects])
def test_max_depth_decodes_and_one_more_level_is_refused_whatever_the_path(
    decoder: str, inner: str, as_bytes: bool, build: Any
) -> None:
    decode = DECODERS[decoder]
    deepest = build(_json.MAX_DEPTH, INNER[inner])
    value = decode(deepest.encode() if as_bytes else deepest)
    for _ in range(_json.MAX_DEPTH):
        value = value[0] if isinstance(value, list) else value["a"]
    assert value == int(INNER[inner])
    too_deep = build(_json.MAX_DEPTH + 1, INNER[inner])
    with pytest.raises(_json.NestingTooDeepError, match="nested 1025 levels deep"):
        decode(too_deep.encode() if as_bytes else too_deep)


def test_orjson_refuses_exactly_what_max_depth_refuses() -> None:
    # The fast path relies on orjson's own limit; an orjson release that changed it would
    # make the limit depend on whether orjson is installed.
    orjson = pytest.importorskip("orjson")
    orjson.loads(nested_arrays(_json.MAX_DEPTH))
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(nested_arrays(_json.MAX_DEPTH + 1))


@pytest.mark.parametrize("frames", [0, 200, 600, 900])
def test_max_depth_decodes_however_deep_the_callers_stack_is(frames: int) -> None:
    # json.loads counts its nesting against the recursion limit (before Python 3.12), so
    # deep in a stack it gives up early; the decoder without recursion takes over.
    text = nested_arrays(_json.MAX_DEPTH, "12345678901234567890")  # not orjson: json.loads
    value = decode_deep_in_the_stack(text, frames)
    for _ in range(_json.MAX_DEPTH):
        (value,) = value
    assert value == 12345678901234567890


def test_the_limit_holds_when_json_loads_could_go_deeper() -> None:
    # With a raised recursion limit json.loads itself decodes 3000 levels; ours still may not.
    text = nested_arrays(3000, "12345678901234567890")
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(20_000)
    try:
        try:
            json.loads(text)
        except RecursionError:
            pytest.skip("json.loads stops before 3000 levels on this interpreter anyway")
        with pytest.raises(_json.NestingTooDeepError, match="nested 3000 levels deep"):
            _json.loads(text)
    finally:
        sys.setrecursionlimit(limit)


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ("1", 0),
        ("[]", 1),
        ('{"a": [1, {"b": []}]}', 4),
        ('["[[[[", "{{{{"]', 1),  # brackets inside strings do not count
        ('["\\"[[", "\\\\", "[{", ["]"]]', 2),  # nor do escaped quotes end a string
        ("[[1], [[2]], [3]]", 3),
        (nested_objects(3000), 3000),
    ],
)
def test_nesting_depth(text: str, depth: int) -> None:
    assert _json.nesting_depth(text) == depth


def test_brackets_inside_strings_do_not_count_towards_the_limit() -> None:
    text = json.dumps(["[" * 5000, {"key": "{" * 5000}, "12345678901234567890"])
    for decode in DECODERS.values():
        assert decode(text) == json.loads(text)


# ------------------------------------------------------------ the loader drivers register


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (nested_arrays(3000), "nested 3000 levels deep; graphile-worker decodes JSON nested"),
        (nested_objects(100_000), "nested 100000 levels deep"),
        ("[1,]", "not valid JSON (Expecting value: line 1 column 4 (char 3))"),
        ("", "not valid JSON"),
        (b'"\xff"', "not valid text ('utf-8' codec can't decode byte 0xff"),
        ("1" * 5000, "Exceeds the limit (4300 digits) for integer string conversion"),
    ],
)
@pytest.mark.parametrize("as_bytes", [False, True], ids=["str", "bytes"])
def test_decode_column_returns_a_marker_saying_why_instead_of_raising(
    data: str | bytes, reason: str, as_bytes: bool
) -> None:
    if as_bytes and isinstance(data, str):
        data = data.encode()
    marker = _json.decode_column(data)
    assert isinstance(marker, _json.UndecodableJson)
    assert marker.column == "payload"
    assert reason in marker.reason


def test_decode_column_decodes_what_loads_decodes() -> None:
    text = '{"n": 12345678901234567890, "deep": ' + nested_arrays(300) + "}"
    assert same(_json.decode_column(text), json.loads(text))
    assert same(_json.decode_column(text.encode()), json.loads(text))


@settings(max_examples=300, deadline=None)
@given(data=st.text(alphabet='[]{}",:0123456789.eE+- \\ntrufalsNIy\ud800') | st.binary())
def test_decode_column_never_raises(data: str | bytes) -> None:
    result = _json.decode_column(data)
    try:
        expected = json.loads(data)
    except (ValueError, RecursionError):
        assert isinstance(result, _json.UndecodableJson)
    else:
        assert same(result, expected)


def test_undecodable_json_compares_by_value() -> None:
    marker = _json.UndecodableJson("why")
    assert marker == _json.UndecodableJson("why")
    assert marker != _json.UndecodableJson("why", column="flags")
    assert len({marker, _json.UndecodableJson("why")}) == 1
    assert repr(marker) == "UndecodableJson('why', column='payload')"


# ---------------------------------------------------------- the decoder without recursion


@settings(max_examples=300, deadline=None)
@given(value=json_values, indent=st.sampled_from([None, 0, 2]), ensure_ascii=st.booleans())
def test_the_decoder_without_recursion_agrees_with_json_loads(
    value: Any, indent: int | None, ensure_ascii: bool
) -> None:
    text = json.dumps(value, indent=indent, ensure_ascii=ensure_ascii)
    assert same(_json._loads_iteratively(text), json.loads(text))


@pytest.mark.parametrize(
    "text",
    [
        " [1, 2.5e3, -0, -0.0, 1E400, NaN, Infinity, -Infinity, null, true, false] ",
        '{"a": 1, "a": {"b": []}, "c": {}, "": [[], {}]}',
        '"caf\\u00e9 \\ud83d\\ude00 \\ud800"',
        "\t\n\r 7 \n",
        nested_objects(150, "[" + nested_arrays(100) + ", []]"),
    ],
)
def test_the_decoder_without_recursion_reads_what_json_loads_reads(text: str) -> None:
    assert same(_json._loads_iteratively(text), json.loads(text))


def test_the_decoder_without_recursion_stops_at_max_depth() -> None:
    value = _json._loads_iteratively(nested_objects(_json.MAX_DEPTH - 1, "[]"))
    for _ in range(_json.MAX_DEPTH - 2):
        value = value["a"]
    assert value == {"a": []}
    with pytest.raises(_json.NestingTooDeepError):
        _json._loads_iteratively(nested_objects(_json.MAX_DEPTH - 1, "[[]]"))


@pytest.mark.parametrize(
    "text",
    ["", " ", "[", "[1,]", "[1 2]", '{"a" 1}', '{"a": 1,}', "{1: 2}", "[1] x", "nul", "01", "-"],
)
def test_the_decoder_without_recursion_refuses_what_json_loads_refuses(text: str) -> None:
    with pytest.raises(json.JSONDecodeError) as expected:
        json.loads(text)
    with pytest.raises(json.JSONDecodeError) as refused:
        _json._loads_iteratively(text)
    assert (refused.value.msg, refused.value.pos) == (expected.value.msg, expected.value.pos)
