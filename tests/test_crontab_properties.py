"""Properties of the crontab code, checked with hypothesis against croniter.

croniter is an independent implementation of the same cron semantics (with ``day_or=True``,
its default, it ORs day of month and day of week when both are restricted, as Node does).
It decides "restricted" from the expression text, Node from the values, so the
comparisons feed it the canonical expression (:attr:`CronItem.expression`), which spells
a full field ``*`` and nothing else that way.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import string
import tempfile
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from croniter import CroniterBadDateError, croniter
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

# Hypothesis keeps its example database and caches in ./.hypothesis by default; the
# project's `norecursedirs` makes pytest warn (an error here) about such a directory, so
# keep them outside the checkout, one directory per checkout.
_CHECKOUT = hashlib.sha256(str(Path(__file__).resolve().parent).encode()).hexdigest()[:12]
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / f"graphile-worker-hypothesis-{_CHECKOUT}")

from graphile_worker import CrontabError, JobKeyMode
from graphile_worker.crontab import CronBuilder, CronItem, cron, parse_crontab

UTC = timezone.utc
# (low, high, top): top is the largest value the text may use (7 means Sunday).
RANGES = ((0, 59, 59), (0, 23, 23), (1, 31, 31), (1, 12, 12), (0, 6, 7))

FAST = settings(max_examples=60, deadline=None)


@st.composite
def field_parts(draw: Any, bounds: tuple[int, int, int]) -> str:
    low, high, top = bounds
    kind = draw(st.sampled_from(["number", "range", "star", "step"]))
    if kind == "number":
        return str(draw(st.integers(low, top)))
    if kind == "range":
        start = draw(st.integers(low, top - 1))
        return f"{start}-{draw(st.integers(start + 1, top))}"
    if kind == "star":
        return "*"
    return f"*/{draw(st.integers(1, high - low + 2))}"


@st.composite
def expressions(draw: Any) -> str:
    fields = []
    for bounds in RANGES:
        parts = draw(st.lists(field_parts(bounds), min_size=1, max_size=3))
        fields.append(",".join(parts))
    # Rare calendar corners get a push: leap days and days some months lack.
    if draw(st.integers(0, 9)) == 0:
        fields[2], fields[3] = draw(st.sampled_from([("29", "2"), ("30", "2"), ("31", "4,6")]))
    return " ".join(fields)


minutes_utc = st.datetimes(
    min_value=datetime(1990, 1, 1), max_value=datetime(2200, 12, 31), timezones=st.just(UTC)
).map(lambda moment: moment.replace(second=0, microsecond=0))


def _croniter_sets(expression: str) -> list[frozenset[int]]:
    expanded, _ = croniter.expand(expression)
    sets = []
    for values, (low, high, _top) in zip(expanded, RANGES, strict=True):
        if "*" in values:
            sets.append(frozenset(range(low, high + 1)))
        else:
            sets.append(frozenset(0 if value == 7 and high == 6 else value for value in values))
    return sets


# ------------------------------------------------------------------- (a) matching agrees


@FAST
@given(expressions(), st.lists(minutes_utc, min_size=1, max_size=20))
def test_fields_and_matches_agree_with_croniter(expression: str, moments: list[datetime]) -> None:
    item = parse_crontab(f"{expression} task")[0]
    fields = [item.minutes, item.hours, item.days_of_month, item.months, item.days_of_week]
    assert fields == _croniter_sets(expression)
    for moment in moments:
        assert item.matches(moment) == croniter.match(item.expression, moment), moment


@FAST
@given(expressions(), st.sampled_from([0, 1, 2]), minutes_utc)
def test_matches_on_croniters_own_runs(expression: str, offset: int, start: datetime) -> None:
    # Random minutes rarely hit a sparse schedule, so also check croniter's hits.
    item = parse_crontab(f"{expression} task")[0]
    runs = croniter(item.expression, start, day_or=True, max_years_between_matches=400)
    try:
        hit = runs.get_next(datetime)
    except CroniterBadDateError:  # croniter gives up on schedules that never run (Feb 30)
        assert item.next_runs(start, 1) == []
        return
    moment = hit + timedelta(minutes=offset)
    assert item.matches(moment) == croniter.match(item.expression, moment)


# --------------------------------------------------------------------- (b) next runs agree


def _croniter_runs(expression: str, after: datetime, count: int) -> Iterator[datetime]:
    runs = croniter(expression, after, day_or=True, max_years_between_matches=400)
    with contextlib.suppress(CroniterBadDateError):  # no further run within 400 years
        for _ in range(count):
            yield runs.get_next(datetime)


@FAST
@given(expressions(), minutes_utc, st.integers(0, 59), st.integers(1, 8))
def test_next_runs_agree_with_croniter(
    expression: str, start: datetime, seconds: int, count: int
) -> None:
    item = parse_crontab(f"{expression} task")[0]
    after = start.replace(second=seconds)
    ours = item.next_runs(after, count)
    assert ours == list(_croniter_runs(item.expression, after, count))
    for run in ours:
        assert item.matches(run)


# -------------------------------------------------------- (c) anything else is an error

_CRONTAB_CHARACTERS = string.digits + "*/,- \t?&={}[]:'\"\\#.abcxyzIN" + "\u00a0\u2028\r\n"
garbage_lines = st.one_of(
    st.text(alphabet=_CRONTAB_CHARACTERS, max_size=120),
    st.text(max_size=120),
    st.builds(
        lambda expression, tail: f"{expression} t {tail}", expressions(), st.text(max_size=80)
    ),
    st.builds(
        lambda expression, payload: f"{expression} t {{{payload}}}",
        expressions(),
        st.text(alphabet=string.printable + "\u00a0\u2028é", max_size=120),
    ),
    st.builds(
        lambda digits, unit: f"* * * * * t ?fill={digits}{unit}&max={digits}&priority=-{digits}",
        st.text(alphabet=string.digits, min_size=1, max_size=6000),
        st.sampled_from("smhdwx"),
    ),
    st.builds(
        lambda digits: f"{digits} {digits}-{digits} */{digits} * * t {{a:{digits}}}",
        st.text(alphabet=string.digits, min_size=1, max_size=6000),
    ),
    st.integers(1, 3000).map(lambda depth: "* * * * * t " + "{a:[" * depth + "]}" * depth),
    st.integers(1, 20000).map(lambda length: "* * * * * t ?jobKey=" + "k" * length),
)


@settings(max_examples=120, deadline=2000)
@given(st.lists(garbage_lines, max_size=4).map("\n".join))
def test_any_text_parses_or_raises_crontab_error(text: str) -> None:
    try:
        items = parse_crontab(text)
    except CrontabError as error:
        assert error.errors
        assert all(e.line is not None and e.column is not None for e in error.errors)
        return
    for item in items:
        assert parse_crontab(item.to_line()) == [item]


# ------------------------------------------------------ (d) builder items round-trip

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=10),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=10,
)
identifiers = st.from_regex(r"[_a-zA-Z][-_a-zA-Z0-9]{0,10}", fullmatch=True)


@st.composite
def builders(draw: Any) -> CronBuilder:
    task = draw(st.from_regex(r"[_a-zA-Z][_a-zA-Z0-9:/_-]{0,12}", fullmatch=True))
    builder = cron(task)
    hour, minute = draw(st.integers(0, 23)), draw(st.integers(0, 59))
    schedule = draw(st.integers(0, 7))
    if schedule == 0:
        builder = builder.every_minute()
    elif schedule == 1:
        unit = draw(st.sampled_from(["minutes", "hours"]))
        sizes = (
            [1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60]
            if unit == "minutes"
            else [1, 2, 3, 4, 6, 8, 12, 24]
        )
        builder = builder.every(draw(st.sampled_from(sizes)), unit)
    elif schedule == 2:
        builder = builder.hourly_at(minute)
    elif schedule == 3:
        builder = builder.daily_at(hour, minute)
    elif schedule == 4:
        days = draw(
            st.lists(
                st.integers(0, 7) | st.sampled_from(["mon", "Fri", "sunday"]),
                min_size=1,
                max_size=4,
            )
        )
        builder = builder.weekly_on(days, hour, minute)
    elif schedule == 5:
        builder = builder.monthly_on(draw(st.integers(1, 31)), hour, minute)
    elif schedule == 6:
        month = draw(st.integers(1, 12))
        builder = builder.yearly_on(month, draw(st.integers(1, 28)), hour, minute)
    else:
        builder = builder.expression(draw(expressions()))
    if draw(st.booleans()):
        builder = builder.id(draw(identifiers))
    if draw(st.booleans()):
        builder = builder.fill(timedelta(seconds=draw(st.integers(0, 10**9))))
    if draw(st.booleans()):
        builder = builder.max_attempts(draw(st.integers(1, 32767)))
    if draw(st.booleans()):
        builder = builder.queue(draw(st.from_regex(r"[-a-zA-Z0-9_:]{1,20}", fullmatch=True)))
    if draw(st.booleans()):
        builder = builder.priority(draw(st.integers(-32768, 32767)))
    if draw(st.booleans()):
        key = draw(
            st.text(
                alphabet=st.characters(
                    exclude_categories=["Cs"], exclude_characters="\n\r\u2028\u2029\x00"
                ),
                min_size=1,
                max_size=30,
            )
        )
        builder = builder.job_key(key, draw(st.sampled_from(list(JobKeyMode)[:2])))
    if draw(st.booleans()):
        builder = builder.payload(
            draw(st.dictionaries(st.text(max_size=5), json_values, max_size=4))
        )
    return builder


@FAST
@given(builders())
def test_built_items_round_trip_through_text(builder: CronBuilder) -> None:
    item = builder.build()
    (parsed,) = parse_crontab(item.to_line())
    assert isinstance(parsed, CronItem)
    # Payload numbers are read as Node reads them (doubles: 0.0 is 0, 2**60 loses digits),
    # so the payload is the same to JavaScript, and the rest is the same exactly.
    assert _as_doubles(parsed.payload) == _as_doubles(item.payload)
    assert dataclasses.replace(parsed, payload=None) == dataclasses.replace(item, payload=None)
    # Once read, a line reads back to itself.
    (again,) = parse_crontab(parsed.to_line())
    assert again == parsed
    assert again.to_line() == parsed.to_line()


def _as_doubles(value: object) -> object:
    """JSON as JavaScript holds it: every number a double."""
    return json.loads(json.dumps(value), parse_int=float)


@FAST
@given(expressions(), minutes_utc)
def test_canonical_expression_means_the_same(expression: str, moment: datetime) -> None:
    item = parse_crontab(f"{expression} task")[0]
    canonical = parse_crontab(f"{item.expression} task")[0]
    assert canonical == item
    assert canonical.matches(moment) == item.matches(moment)


@pytest.mark.parametrize("expression", ["0 0 29 2 1", "0 0 31 * 5", "*/7 */5 13 * 5"])
def test_examples_agree_with_croniter_over_years(expression: str) -> None:
    item = parse_crontab(f"{expression} task")[0]
    start = datetime(2023, 1, 1, tzinfo=UTC)
    runs = croniter(expression, start, day_or=True)
    assert item.next_runs(start, 300) == [runs.get_next(datetime) for _ in range(300)]
