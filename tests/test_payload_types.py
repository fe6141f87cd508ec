"""Everyday payload types (datetime, UUID, Decimal, bytes, sets, enums...) written and read back.

Encoding (``payload_to_json``) and decoding (``Task.decode``) are pure code and are tested
without a database, against each other, against pydantic and against Node. Then jobs holding
every type go through PostgreSQL and a real worker on every (backend, driver) pair.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import shutil
import subprocess
import uuid
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Optional

import pytest

from graphile_worker._payload import payload_to_json
from graphile_worker.errors import InvalidJobSpecError, PayloadDecodeError, TaskDefinitionError
from graphile_worker.task import Task, task
from graphile_worker.utils import WorkerUtils
from graphile_worker.worker import RunOnceSummary, Worker

from .worker.conftest import job_row, job_rows, options

if TYPE_CHECKING:
    from collections.abc import Callable

    import psycopg

    from graphile_worker.drivers import DatabaseDriver

try:
    import pydantic
except ImportError:  # pragma: no cover - the suite's venv has it
    pydantic = None  # type: ignore[assignment]

needs_pydantic = pytest.mark.skipif(pydantic is None, reason="pydantic is not installed")

pytestmark = pytest.mark.anyio

UTC = timezone.utc
INDIA = timezone(timedelta(hours=5, minutes=30))


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Size(enum.IntEnum):
    SMALL = 1
    LARGE = 2


class Mood(str, enum.Enum):  # what StrEnum is on 3.11+; the same JSON
    CALM = "calm"


class Permission(enum.Flag):
    READ = 1
    WRITE = 2


class Level(enum.IntFlag):
    LOW = 1
    HIGH = 4


@dataclasses.dataclass(frozen=True)
class Stamp:
    at: datetime
    note: str = ""


@dataclasses.dataclass
class Everything:
    IDENTIFIER: ClassVar[str] = "everything"
    when: datetime
    elsewhere: datetime
    day: date
    clock: time
    utc_clock: time
    timeout: timedelta
    backwards: timedelta
    id: uuid.UUID
    amount: Decimal
    color: Color
    size: Size
    mood: Mood
    permissions: Permission
    level: Level
    tags: set[str]
    ids: frozenset[uuid.UUID]
    pair: tuple[date, Decimal]
    counts: tuple[int, ...]
    kind: Literal["a", "b"]
    favourite: Literal[Color.GREEN]
    maybe: Optional[datetime]  # noqa: UP045 - typing.Union, which decodes apart from X | None
    nothing: datetime | None
    stamps: list[Stamp]
    by_name: dict[str, timedelta]
    blob: bytes
    buffer: bytearray


ID_1 = uuid.UUID("6f1c2d3e-4a5b-4c6d-8e7f-8091a2b3c4d5")
ID_2 = uuid.UUID("00000000-0000-4000-8000-000000000001")

EVERYTHING = Everything(
    when=datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
    elsewhere=datetime(2024, 1, 2, 3, 4, 5, tzinfo=INDIA),
    day=date(2024, 2, 29),
    clock=time(9, 30),
    utc_clock=time(9, 30, 0, 5, tzinfo=UTC),
    timeout=timedelta(days=1, hours=2, minutes=3, seconds=4, milliseconds=500),
    backwards=timedelta(seconds=-1),
    id=ID_1,
    amount=Decimal("1.10"),
    color=Color.RED,
    size=Size.LARGE,
    mood=Mood.CALM,
    permissions=Permission.READ | Permission.WRITE,
    level=Level.LOW | Level.HIGH,
    tags={"b", "c", "a"},
    ids=frozenset({ID_1, ID_2}),
    pair=(date(2024, 1, 2), Decimal("0.000001")),
    counts=(3, 2, 1),
    kind="b",
    favourite=Color.GREEN,
    maybe=None,
    nothing=datetime(2030, 6, 1, tzinfo=UTC),
    stamps=[Stamp(at=datetime(2024, 1, 1, 12, tzinfo=UTC), note="first")],
    by_name={"short": timedelta(microseconds=1)},
    blob=b"\xfb\xff\x00",
    buffer=bytearray(b"hi"),
)

EVERYTHING_JSON = {
    "when": "2024-01-02T03:04:05.678000Z",
    "elsewhere": "2024-01-02T03:04:05+05:30",
    "day": "2024-02-29",
    "clock": "09:30:00",
    "utc_clock": "09:30:00.000005Z",
    "timeout": "P1DT2H3M4.5S",
    "backwards": "-PT1S",
    "id": "6f1c2d3e-4a5b-4c6d-8e7f-8091a2b3c4d5",
    "amount": "1.10",
    "color": "red",
    "size": 2,
    "mood": "calm",
    "permissions": 3,
    "level": 5,
    "tags": ["a", "b", "c"],
    "ids": ["00000000-0000-4000-8000-000000000001", "6f1c2d3e-4a5b-4c6d-8e7f-8091a2b3c4d5"],
    "pair": ["2024-01-02", "0.000001"],
    "counts": [3, 2, 1],
    "kind": "b",
    "favourite": "green",
    "maybe": None,
    "nothing": "2030-06-01T00:00:00Z",
    "stamps": [{"at": "2024-01-01T12:00:00Z", "note": "first"}],
    "by_name": {"short": "PT0.000001S"},
    "blob": "+/8A",
    "buffer": "aGk=",
}


def decoder_for(annotation: object) -> Callable[[Any], object]:
    """``Task.decode`` of a handler whose payload is annotated ``annotation``."""

    def handler(payload: Any) -> None:
        pass

    handler.__annotations__ = {"payload": annotation, "return": None}
    return Task.from_function(handler, "probe").decode


def through_json(value: object, annotation: object) -> object:
    """Encode ``value`` as a job payload, then decode it as ``annotation``."""
    return decoder_for(annotation)(json.loads(payload_to_json(value)))


def decode_error(annotation: object, payload: object) -> str:
    with pytest.raises(PayloadDecodeError) as caught:
        decoder_for(annotation)(payload)
    return str(caught.value)


def encode_error(payload: object) -> str:
    with pytest.raises(InvalidJobSpecError) as caught:
        payload_to_json(payload)
    return str(caught.value)


def zone(name: str) -> Any:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except ZoneInfoNotFoundError:  # pragma: no cover - tzdata is on the test machines
        pytest.skip(f"time zone {name} is not installed")


# ------------------------------------------------------------------------------------ encoding


class TestEncoding:
    def test_every_type_has_its_json_form(self) -> None:
        assert json.loads(payload_to_json(EVERYTHING)) == EVERYTHING_JSON

    @pytest.mark.parametrize("name", ["UTC", "Europe/London", None])
    def test_utc_is_written_z_as_javascript_writes_it(self, name: str | None) -> None:
        tzinfo = timezone(timedelta(0)) if name is None else zone(name)
        assert payload_to_json(datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=tzinfo)) == (
            '"2024-01-02T03:04:05.000006Z"'
        )

    def test_other_offsets_are_kept(self) -> None:
        new_york = datetime(2024, 1, 2, 3, 4, tzinfo=zone("America/New_York"))
        assert payload_to_json([new_york, datetime(2024, 7, 2, tzinfo=INDIA)]) == (
            '["2024-01-02T03:04:00-05:00","2024-07-02T00:00:00+05:30"]'
        )

    def test_a_zone_name_is_not_kept_only_its_offset(self) -> None:
        paris = datetime(2024, 7, 1, 12, tzinfo=zone("Europe/Paris"))
        decoded = through_json(paris, datetime)
        assert isinstance(decoded, datetime)
        assert decoded == paris
        assert decoded.utcoffset() == timedelta(hours=2)
        assert decoded.tzinfo == timezone(timedelta(hours=2))

    def test_a_naive_datetime_is_refused_saying_where_and_what_to_do(self) -> None:
        aware = Stamp(at=datetime(2024, 1, 1, tzinfo=UTC))
        naive = Stamp(at=datetime(2024, 1, 1, 9, 30))
        message = encode_error({"items": [aware, aware, naive]})
        assert message.startswith(
            "payload cannot be sent as JSON: payload.items[2].at is a naive datetime "
            "(datetime.datetime(2024, 1, 1, 9, 30)); a job may run in another time zone"
        )
        assert "datetime.now(timezone.utc)" in message
        assert ".replace(tzinfo=...)" in message

    def test_errors_in_a_dataclass_payload_do_not_suggest_a_dataclass(self) -> None:
        payload = dataclasses.replace(EVERYTHING, stamps=[Stamp(at=datetime(2024, 1, 1))])
        message = encode_error(payload)
        assert "payload.stamps[0].at is a naive datetime" in message
        assert "dataclass" not in message

    def test_an_unsupported_value_names_its_place_and_the_supported_types(self) -> None:
        message = encode_error(Stamp(at=datetime(2024, 1, 1, tzinfo=UTC), note=1j))  # type: ignore[arg-type]
        assert message.startswith(
            "payload cannot be sent as JSON: payload.note is a builtins.complex (1j), which "
            "has no JSON form; convert it to one of: str, int, float, bool, None, list"
        )
        assert "datetime (aware), date, time, timedelta, UUID, Decimal, bytes" in message

    def test_a_class_instead_of_an_instance(self) -> None:
        assert encode_error({"stamp": Stamp}).endswith(
            "payload.stamp is the class Stamp itself, not an instance of it; pass Stamp(...)"
        )

    def test_nan_names_its_place(self) -> None:
        assert encode_error({"scores": [1.5, float("nan")]}).startswith(
            "payload cannot be sent as JSON: payload.scores[1] is nan, which JSON cannot carry"
        )

    @pytest.mark.parametrize("text", ["NaN", "-Infinity", "sNaN"])
    def test_non_finite_decimals_are_refused(self, text: str) -> None:
        assert f"payload['a b'] is Decimal('{text}')" in encode_error({"a b": Decimal(text)})

    def test_too_deep_to_encode(self) -> None:
        deep: list[object] = []
        for _ in range(100_000):
            deep = [deep]
        assert "maximum recursion depth" in encode_error(deep)

    def test_keys_must_be_strings(self) -> None:
        assert "payload.by_id has the key UUID(" in encode_error({"by_id": {ID_1: 1}})

    def test_decimals_are_kept_as_written(self) -> None:
        values = [
            Decimal("1.10"),
            Decimal("1E+3"),
            Decimal("-0"),
            Decimal("12345678901234567890.5"),
        ]
        assert payload_to_json(values) == '["1.10","1E+3","-0","12345678901234567890.5"]'

    def test_enums_are_their_values(self) -> None:
        values = [Color.RED, Size.SMALL, Mood.CALM, Permission.WRITE, Permission(0), Level.HIGH]
        assert payload_to_json(values) == '["red",1,"calm",2,0,4]'

    def test_str_enum(self) -> None:
        str_enum = getattr(enum, "StrEnum", None)
        if str_enum is None:  # pragma: no cover - Python 3.10
            pytest.skip("StrEnum is new in Python 3.11")
        tone = str_enum("Tone", {"LOUD": "loud"})
        assert payload_to_json([tone.LOUD]) == '["loud"]'
        assert through_json([tone.LOUD], list[tone]) == [tone.LOUD]  # type: ignore[valid-type]

    def test_one_set_always_gives_one_text(self) -> None:
        numbers = [n * 4096 for n in range(40)]  # hashes that collide: insertion order shows
        forwards = set(numbers)
        backwards = set()
        for number in reversed(numbers):
            backwards.add(number)
        assert list(forwards) != list(backwards)
        assert payload_to_json(forwards) == payload_to_json(backwards) == payload_to_json(numbers)
        assert payload_to_json({"b", "a", "c"}) == '["a","b","c"]'
        assert payload_to_json(frozenset({ID_1, ID_2})) == f'["{ID_2}","{ID_1}"]'
        # Items that do not compare are ordered by their JSON text.
        assert payload_to_json({1, "a", None}) == '["a",1,null]'
        assert payload_to_json({Color.RED, Color.GREEN}) == '["green","red"]'

    def test_bytes_are_standard_base64_with_padding(self) -> None:
        assert payload_to_json([b"\xfb\xff", bytearray(b"a"), b""]) == '["+/8=","YQ==",""]'

    def test_tuples_are_arrays(self) -> None:
        assert payload_to_json({"pair": (date(2024, 1, 2), time(3, 4))}) == (
            '{"pair":["2024-01-02","03:04:00"]}'
        )


DURATIONS = [
    (timedelta(0), "PT0S"),
    (timedelta(microseconds=1), "PT0.000001S"),
    (timedelta(seconds=-1), "-PT1S"),
    (timedelta(minutes=90), "PT1H30M"),
    (timedelta(days=1, hours=2, minutes=3, seconds=4.5), "P1DT2H3M4.5S"),
    (timedelta(days=400), "P400D"),
    (timedelta(days=-3, microseconds=7), "-P2DT23H59M59.999993S"),
    (timedelta.max, "P999999999DT23H59M59.999999S"),
    (timedelta.min, "-P999999999D"),
]


@pytest.mark.parametrize(("value", "text"), DURATIONS)
def test_durations_are_iso_8601_both_ways(value: timedelta, text: str) -> None:
    assert payload_to_json(value) == f'"{text}"'
    assert decoder_for(timedelta)(text) == value


# ------------------------------------------------------------------------------------ decoding


class TestDecoding:
    def test_every_type_comes_back_equal(self) -> None:
        decoded = through_json(EVERYTHING, Everything)
        assert decoded == EVERYTHING
        assert isinstance(decoded, Everything)
        assert decoded.elsewhere.utcoffset() == timedelta(hours=5, minutes=30)
        assert decoded.when.tzinfo is UTC
        assert decoded.clock.tzinfo is None
        assert type(decoded.buffer) is bytearray and type(decoded.blob) is bytes
        assert type(decoded.ids) is frozenset and type(decoded.tags) is set
        assert type(decoded.pair) is tuple and type(decoded.counts) is tuple
        assert str(decoded.amount) == "1.10"
        assert decoded.favourite is Color.GREEN

    def test_plain_annotations(self) -> None:
        assert decoder_for(list[uuid.UUID])([str(ID_1), str(ID_2).upper()]) == [ID_1, ID_2]
        assert decoder_for(Optional[datetime])(None) is None  # noqa: UP045 - typing.Union
        assert decoder_for(dict[str, Decimal])({"price": "9.99"}) == {"price": Decimal("9.99")}
        assert decoder_for(tuple[date, time])(["2024-01-02", "03:04"]) == (
            date(2024, 1, 2),
            time(3, 4),
        )
        assert decoder_for(set[uuid.UUID])([str(ID_1), str(ID_1)]) == {ID_1}
        assert decoder_for(Literal[Color.RED, 7])("red") is Color.RED
        assert decoder_for(Permission)(3) == Permission.READ | Permission.WRITE

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            # Date.prototype.toJSON(): milliseconds and Z.
            ("2024-01-02T03:04:05.678Z", datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)),
            # PostgreSQL's to_json(timestamptz), and a lowercase z.
            ("2024-01-02T03:04:05.5+00:00", datetime(2024, 1, 2, 3, 4, 5, 500000, tzinfo=UTC)),
            ("2024-01-02t03:04:05z", datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)),
            ("2024-01-02 03:04+0530", datetime(2024, 1, 2, 3, 4, tzinfo=INDIA)),
            # Nanoseconds: the digits Python cannot keep are dropped.
            (
                "2024-01-02T03:04:05.123456789-01:00",
                datetime(2024, 1, 2, 4, 4, 5, 123456, tzinfo=UTC),
            ),
            ("2024-01-02T03:04:05+00:00:30", datetime(2024, 1, 2, 3, 3, 35, tzinfo=UTC)),
        ],
    )
    def test_datetimes_node_and_others_write(self, text: str, expected: datetime) -> None:
        assert decoder_for(datetime)(text) == expected

    def test_a_datetime_without_an_offset_fails_naming_the_field(self) -> None:
        message = decode_error(Stamp, {"at": "2024-01-02T03:04:05"})
        assert message == (
            "task 'probe' cannot decode its payload as Stamp: payload.at: expected an ISO 8601 "
            "date and time with a UTC offset, like '2024-01-02T03:04:05.678Z', got string "
            "'2024-01-02T03:04:05': it has no UTC offset (without one it names a different "
            "instant in each time zone); write one, as Node's date.toJSON() does"
        )

    @pytest.mark.parametrize(
        ("annotation", "value", "problem"),
        [
            (datetime, 1704164645, "got number 1704164645"),
            (datetime, "2024-01-02", "got string '2024-01-02'"),
            (datetime, "2024-13-02T00:00:00Z", "month must be in 1..12"),
            (datetime, "2024-01-02T03:04:05+24:00", "strictly between"),
            (date, "2024-01-02T00:00:00Z", "expected an ISO 8601 date, like '2024-01-02'"),
            (date, "2024-1-2", "got string '2024-1-2'"),
            (time, "25:00", "hour must be in 0..23"),
            (uuid.UUID, "not-a-uuid", "a UUID string, like"),
            (uuid.UUID, 42, "got number 42"),
            (Decimal, "1,5", "got string '1,5'"),
            (Decimal, "NaN", "NaN and infinities are refused"),
            (Decimal, True, "got boolean true"),
            (timedelta, "P1M", "months have no fixed length; write days"),
            (timedelta, "PT", "an ISO 8601 duration"),
            (timedelta, "1 day", "got string '1 day'"),
            (timedelta, "P99999999999D", "beyond timedelta's range"),
            (timedelta, False, "got boolean false"),
            (bytes, "abc", "expected standard base64 with padding"),
            (bytes, "YW Jj", "got string 'YW Jj'"),
            (bytes, "YQ==YQ==", "got string 'YQ==YQ=='"),
            (bytes, "-_8=", "looks like URL-safe base64"),
            (bytes, 12, "got number 12"),
            (bytearray, "%%%%", "standard base64"),
        ],
    )
    def test_values_not_in_their_json_form(
        self, annotation: object, value: object, problem: str
    ) -> None:
        message = decode_error(dict[str, annotation], {"x": value})  # type: ignore[valid-type]
        assert message.startswith("task 'probe' cannot decode its payload as dict[str, ")
        assert ": payload.x: expected " in message
        assert problem in message

    def test_bad_base64_names_the_field(self) -> None:
        message = decode_error(Everything, {**EVERYTHING_JSON, "blob": "not base64!"})
        assert "payload.blob: expected standard base64 with padding" in message

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("1.10", "1.10"),
            (" 2.50 ", "2.50"),
            (0.1, "0.1"),  # the float's shortest text, not 0.1000000000000000055511151231257827
            (10, "10"),
            (1e-7, "1E-7"),
            ("-0", "-0"),
        ],
    )
    def test_decimals_from_strings_and_numbers(self, value: object, expected: str) -> None:
        decoded = decoder_for(Decimal)(value)
        assert isinstance(decoded, Decimal)
        assert str(decoded) == expected

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            (30, timedelta(seconds=30)),  # what Node code can write: {"timeout": 30}
            (1.5, timedelta(seconds=1.5)),
            (-0.25, timedelta(milliseconds=-250)),
            ("P1Y35D", timedelta(days=400)),  # pydantic writes whole years; one is 365 days
            ("P2W", timedelta(days=14)),
            ("+PT1.5H", timedelta(minutes=90)),
            ("PT0,5S", timedelta(milliseconds=500)),
            ("PT0.0000015S", timedelta(microseconds=2)),
            ("-P1DT1S", timedelta(days=-1, seconds=-1)),
        ],
    )
    def test_durations_others_write(self, value: object, expected: timedelta) -> None:
        assert decoder_for(timedelta)(value) == expected

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("03:04", time(3, 4)),
            ("03:04:05.678", time(3, 4, 5, 678000)),
            ("03:04:05Z", time(3, 4, 5, tzinfo=UTC)),
            ("03:04:05-07:00", time(3, 4, 5, tzinfo=timezone(timedelta(hours=-7)))),
        ],
    )
    def test_times_with_and_without_an_offset(self, text: str, expected: time) -> None:
        decoded = decoder_for(time)(text)
        assert decoded == expected
        assert isinstance(decoded, time) and decoded.tzinfo == expected.tzinfo

    def test_empty_base64_is_empty_bytes(self) -> None:
        assert decoder_for(bytes)("") == b""

    @pytest.mark.parametrize("annotation", [complex, type("MyDateTime", (datetime,), {})])
    def test_types_without_a_json_form_are_refused_when_the_task_is_defined(
        self, annotation: type
    ) -> None:
        with pytest.raises(TaskDefinitionError) as caught:
            decoder_for(list[annotation])  # type: ignore[valid-type]
        message = str(caught.value)
        assert f"cannot build {annotation.__qualname__} from a JSON payload" in message
        assert "datetime, date, time, timedelta, UUID, Decimal, bytes, an Enum" in message


# -------------------------------------------------------------------------------------- pydantic

if pydantic is not None:

    class Reading(pydantic.BaseModel):
        at: datetime
        id: uuid.UUID
        amount: Decimal
        every: timedelta
        day: date

    class Blob(pydantic.BaseModel):
        data: bytes

    class Base64Blob(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(ser_json_bytes="base64", val_json_bytes="base64")
        data: bytes

    class NaiveReading(pydantic.BaseModel):
        at: datetime


@dataclasses.dataclass
class ReadingData:
    at: datetime
    id: uuid.UUID
    amount: Decimal
    every: timedelta
    day: date


@dataclasses.dataclass
class BlobData:
    data: bytes


READINGS = [
    ReadingData(
        datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
        ID_1,
        Decimal("1.10"),
        timedelta(days=1, hours=2, seconds=4.5),
        date(2024, 1, 2),
    ),
    ReadingData(
        datetime(1999, 12, 31, 23, 59, tzinfo=INDIA),
        ID_2,
        Decimal("-12345.000"),
        timedelta(days=-3, microseconds=7),
        date(1, 1, 1),
    ),
    ReadingData(
        datetime(2024, 7, 1, tzinfo=timezone(timedelta(hours=-9, minutes=-30))),
        ID_1,
        Decimal("1E+3"),
        timedelta(days=400),  # pydantic writes P1Y35D, we write P400D: each reads the other
        date(2024, 2, 29),
    ),
]


@needs_pydantic
class TestPydantic:
    @pytest.mark.parametrize("reading", READINGS)
    def test_a_model_producer_and_a_dataclass_consumer_agree(self, reading: ReadingData) -> None:
        model = Reading(**dataclasses.asdict(reading))
        assert through_json(model, ReadingData) == reading

    @pytest.mark.parametrize("reading", READINGS)
    def test_a_dataclass_producer_and_a_model_consumer_agree(self, reading: ReadingData) -> None:
        assert through_json(reading, Reading) == Reading(**dataclasses.asdict(reading))

    def test_both_write_the_same_text_below_a_year(self) -> None:
        reading = READINGS[0]
        assert payload_to_json(reading) == payload_to_json(Reading(**dataclasses.asdict(reading)))

    def test_a_model_that_cannot_dump_names_its_place(self) -> None:
        # pydantic's default bytes mode needs UTF-8.
        assert encode_error({"x": [Blob(data=b"\xff")]}).startswith(
            "payload cannot be sent as JSON: payload.x[0] is a Blob, and "
            "model_dump(mode='json') raised UnicodeDecodeError"
        )

    def test_where_pydantic_differs(self) -> None:
        # bytes: pydantic writes them as UTF-8 text by default, which is not base64...
        assert payload_to_json(Blob(data=b"hi")) == '{"data":"hi"}'
        assert "payload.data: expected standard base64" in decode_error(BlobData, {"data": "hi"})
        # ...and as URL-safe base64 when asked to, which we refuse with a hint.
        written = json.loads(payload_to_json(Base64Blob(data=b"\xfb\xff")))
        assert written == {"data": "-_8="}
        assert "URL-safe" in decode_error(BlobData, written)
        # Ours is standard base64, which pydantic's base64 mode reads.
        assert through_json(BlobData(b"\xfb\xff"), Base64Blob) == Base64Blob(data=b"\xfb\xff")
        # A model may hold a naive datetime (pydantic writes it); a consumer of ours refuses it.
        naive = json.loads(payload_to_json(NaiveReading(at=datetime(2024, 1, 2, 3, 4))))
        assert naive == {"at": "2024-01-02T03:04:00"}
        assert "it has no UTC offset" in decode_error(Stamp, naive)


# ------------------------------------------------------------------------------------------ Node

NODE_SCRIPT = """
const ours = JSON.parse(process.argv[1]);
const written = {
  at: new Date(Date.UTC(2024, 0, 2, 3, 4, 5, 678)),
  data: Buffer.from([251, 255, 0]).toString("base64"),
  timeout: 30,
};
process.stdout.write(JSON.stringify({
  read: {
    when: new Date(ours.when).toISOString(),
    elsewhere: new Date(ours.elsewhere).toISOString(),
    blob: Buffer.from(ours.blob, "base64").toString("hex"),
  },
  written: JSON.parse(JSON.stringify(written)),
}));
"""


@dataclasses.dataclass
class FromNode:
    at: datetime
    data: bytes
    timeout: timedelta


def test_node_reads_what_we_write_and_we_read_what_node_writes() -> None:
    node = shutil.which("node")
    if node is None:  # pragma: no cover - Node is installed where the suite runs
        pytest.skip("node is not installed")
    completed = subprocess.run(
        [node, "-e", NODE_SCRIPT, payload_to_json(EVERYTHING)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    result = json.loads(completed.stdout)
    assert result["read"] == {
        "when": "2024-01-02T03:04:05.678Z",
        "elsewhere": "2024-01-01T21:34:05.000Z",
        "blob": "fbff00",
    }
    assert decoder_for(FromNode)(result["written"]) == FromNode(
        at=datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
        data=b"\xfb\xff\x00",
        timeout=timedelta(seconds=30),
    )


# ---------------------------------------------------------------------------- through the worker


async def test_every_type_reaches_the_handler_equal(
    driver: DatabaseDriver, sync_connection: psycopg.Connection[Any]
) -> None:
    utils = WorkerUtils(driver)
    received: list[object] = []

    @task("everything")
    async def everything(payload: Everything) -> None:
        received.append(payload)

    @task("ids")
    def ids(payload: list[uuid.UUID]) -> None:  # a plain annotation, in a thread
        received.append(payload)

    typed = await utils.add_job(EVERYTHING)
    named = await utils.add_job("everything", EVERYTHING)
    batch = await utils.add_jobs([EVERYTHING, ("ids", [ID_1, ID_2])])
    with sync_connection.cursor() as cursor:
        cursor.execute(
            "select payload::text from graphile_worker._private_jobs where id = %s", (typed.id,)
        )
        stored = cursor.fetchone()
    assert stored is not None and stored[0] == payload_to_json(EVERYTHING)
    assert named.payload == batch[0].payload == EVERYTHING_JSON

    summary = await Worker(options(driver, [everything, ids])).run_once()

    assert summary == RunOnceSummary(completed=4)
    assert received.count(EVERYTHING) == 3
    assert [ID_1, ID_2] in received


@needs_pydantic
async def test_pydantic_and_dataclass_jobs_cross_the_database(driver: DatabaseDriver) -> None:
    utils = WorkerUtils(driver)
    received: list[object] = []

    @task("to_dataclass")
    async def to_dataclass(payload: ReadingData) -> None:
        received.append(payload)

    @task("to_model")
    async def to_model(payload: Reading) -> None:
        received.append(payload)

    for reading in READINGS:
        await utils.add_job("to_dataclass", Reading(**dataclasses.asdict(reading)))
        await utils.add_job("to_model", reading)
    summary = await Worker(options(driver, [to_dataclass, to_model])).run_once()

    assert summary == RunOnceSummary(completed=2 * len(READINGS))
    for reading in READINGS:
        assert reading in received
        assert Reading(**dataclasses.asdict(reading)) in received


async def test_a_value_not_in_its_json_form_fails_the_job_naming_the_field(
    driver: DatabaseDriver, sync_connection: psycopg.Connection[Any]
) -> None:
    utils = WorkerUtils(driver)
    called: list[object] = []

    @task("everything")
    async def everything(payload: Everything) -> None:
        called.append(payload)

    job = await utils.add_job("everything", {**EVERYTHING_JSON, "when": "2024-01-02T03:04:05"})
    summary = await Worker(options(driver, [everything])).run_once()

    assert summary.failed == 1
    assert called == []
    row = job_row(sync_connection, job.id)
    assert row is not None
    assert (
        "cannot decode its payload as Everything: payload.when: expected an ISO 8601"
        in (row["last_error"])
    )
    assert "it has no UTC offset" in row["last_error"]


async def test_a_naive_datetime_is_refused_before_anything_is_sent(
    driver: DatabaseDriver, sync_connection: psycopg.Connection[Any]
) -> None:
    utils = WorkerUtils(driver)
    naive = dataclasses.replace(EVERYTHING, when=datetime(2024, 1, 2))
    with pytest.raises(InvalidJobSpecError, match=r"payload\.when is a naive datetime"):
        await utils.add_job(naive)
    with pytest.raises(InvalidJobSpecError, match=r"payload\.when is a naive datetime"):
        await utils.add_jobs([EVERYTHING, naive])
    assert job_rows(sync_connection) == []
