"""Property: any payload dataclass made of the supported types survives the database unchanged.

Hypothesis makes up dataclasses (``dataclasses.make_dataclass``, with field types drawn from
the supported set, nested dataclasses, ``Optional``, containers and ``Literal`` included) and
values for them. Each value is added as a job through ``WorkerUtils.add_job``, read back
through the driver with ``get_job``, and decoded by ``Task.decode`` for a handler annotated
with the class; the result must equal the original.

``@given`` cannot drive an async test, so the test is a plain function per (backend, driver)
pair that keeps one event loop and one open driver for all its examples, in a blocking portal.

Left out because they cannot round-trip by design (each is refused, or documented as lossy):
naive datetimes (refused); zone names (only the offset travels, so ``ZoneInfo`` is not
drawn: the decoded value would be equal but carry a fixed offset); NaN and infinities, float
or Decimal (refused); unions other than ``Optional`` (``str | UUID``: the first member that
accepts the JSON wins); subclasses of the value types (decoded as the base class); dict keys
other than ``str``; hash-free values inside sets.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import itertools
import tempfile
import uuid
from collections.abc import Callable
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, Optional

import anyio.from_thread
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

# Hypothesis keeps its example database in ./.hypothesis by default, which pytest's
# norecursedirs makes it warn about (an error here); keep it outside the checkout.
_CHECKOUT = hashlib.sha256(str(Path(__file__).resolve().parent).encode()).hexdigest()[:12]
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / f"graphile-worker-hypothesis-{_CHECKOUT}")

from graphile_worker.drivers import create_driver
from graphile_worker.task import Task
from graphile_worker.utils import WorkerUtils

Shape = tuple[object, st.SearchStrategy[Any], bool]
"""An annotation, a strategy for its values, and whether those values are hashable."""


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Size(enum.IntEnum):
    SMALL = 1
    LARGE = 10


class Mood(str, enum.Enum):
    CALM = "calm"
    BUSY = "busy"


class Access(enum.Flag):
    READ = 1
    WRITE = 2
    ADMIN = 4


def _flags() -> st.SearchStrategy[Access]:
    return st.sets(st.sampled_from(list(Access))).map(
        lambda members: functools.reduce(lambda a, b: a | b, members, Access(0))
    )


# Offsets to the microsecond, which Python's isoformat writes and we read back (Node and
# pydantic read whole minutes only; that limit is theirs, not a round-trip one).
_OFFSETS = st.timedeltas(
    min_value=timedelta(hours=-23, minutes=-59, seconds=-59, microseconds=-999999),
    max_value=timedelta(hours=23, minutes=59, seconds=59, microseconds=999999),
).map(timezone)

_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)

LEAVES: list[Shape] = [
    (str, _TEXT, True),
    (int, st.integers(), True),
    (float, st.floats(allow_nan=False, allow_infinity=False), True),
    (bool, st.booleans(), True),
    (datetime, st.datetimes(timezones=_OFFSETS), True),
    (date, st.dates(), True),
    (time, st.times(timezones=st.none() | _OFFSETS), True),
    (timedelta, st.timedeltas(), True),
    (uuid.UUID, st.uuids(), True),
    (Decimal, st.decimals(allow_nan=False, allow_infinity=False), True),
    (bytes, st.binary(max_size=16), True),
    (bytearray, st.binary(max_size=16).map(bytearray), False),
    (Color, st.sampled_from(Color), True),
    (Size, st.sampled_from(Size), True),
    (Mood, st.sampled_from(Mood), True),
    (Access, _flags(), True),
    (
        Literal["a", 2, True, Color.BLUE],
        st.sampled_from(["a", 2, True, Color.BLUE]),
        True,
    ),
]

_class_numbers = itertools.count()


@st.composite
def shapes(draw: st.DrawFn, depth: int = 0) -> Shape:
    """A field type, a strategy for its values, and whether they are hashable."""
    if depth >= 2:
        return draw(st.sampled_from(LEAVES))
    kind = draw(
        st.sampled_from(
            ["leaf"] * 6 + ["optional", "list", "tuple", "fixed", "set", "dict", "dataclass"]
        )
    )
    if kind == "leaf":
        return draw(st.sampled_from(LEAVES))
    if kind == "dataclass":
        cls, values = draw(dataclass_shapes(depth + 1))
        return cls, values, False
    if kind == "set":
        # Set items must hash; a set of floats would fold 0.0 and -0.0 together, harmlessly.
        annotation, items, _ = draw(st.sampled_from([leaf for leaf in LEAVES if leaf[2]]))
        container = draw(st.sampled_from([set, frozenset]))
        return (
            container[annotation],  # type: ignore[index]
            st.sets(items, max_size=4).map(container),
            container is frozenset,
        )
    annotation, values, hashable = draw(shapes(depth + 1))
    if kind == "optional":
        return Optional[annotation], st.none() | values, hashable  # noqa: UP045 - a typing.Union on purpose
    if kind == "list":
        return list[annotation], st.lists(values, max_size=3), False  # type: ignore[valid-type]
    if kind == "tuple":
        return tuple[annotation, ...], st.lists(values, max_size=3).map(tuple), hashable  # type: ignore[valid-type]
    if kind == "fixed":
        other, other_values, other_hashable = draw(shapes(depth + 1))
        return (
            tuple[annotation, other],  # type: ignore[valid-type]
            st.tuples(values, other_values),
            hashable and other_hashable,
        )
    return dict[str, annotation], st.dictionaries(_TEXT, values, max_size=3), False  # type: ignore[valid-type]


@st.composite
def dataclass_shapes(draw: st.DrawFn, depth: int = 0) -> tuple[type, st.SearchStrategy[Any]]:
    """A new dataclass with 1 to 5 fields of drawn types, and a strategy for its instances."""
    fields = draw(st.lists(shapes(depth), min_size=1, max_size=5))
    cls = dataclasses.make_dataclass(
        f"Generated{next(_class_numbers)}",
        [(f"field_{index}", annotation) for index, (annotation, _, _) in enumerate(fields)],
    )
    values = st.builds(cls, *(strategy for _, strategy, _ in fields))
    return cls, values


@st.composite
def payloads(draw: st.DrawFn) -> tuple[type, object]:
    cls, values = draw(dataclass_shapes())
    return cls, draw(values)


def decoder_for(cls: type) -> Callable[[Any], object]:
    def handler(payload: Any) -> None:
        pass

    handler.__annotations__ = {"payload": cls, "return": None}
    return Task.from_function(handler, "roundtrip").decode


def test_generated_payloads_come_back_equal(
    anyio_backend: str, driver_name: str, database_url: str
) -> None:
    with anyio.from_thread.start_blocking_portal(anyio_backend) as portal:
        driver = portal.call(functools.partial(create_driver, database_url, driver=driver_name))
        try:
            utils = WorkerUtils(driver)

            @settings(
                max_examples=40,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
            )
            @given(payloads())
            def round_trip(generated: tuple[type, object]) -> None:
                cls, value = generated
                added = portal.call(functools.partial(utils.add_job, "roundtrip", value))
                stored = portal.call(utils.get_job, added.id)
                assert stored is not None
                assert decoder_for(cls)(stored.payload) == value

            round_trip()
        finally:
            portal.call(driver.aclose)
