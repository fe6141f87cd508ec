"""JobSpec validation, payload serialisation and Job decoding: pure code, no database."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, ClassVar

import pytest

from graphile_worker._payload import identifier_of, payload_to_json, prepare_job
from graphile_worker.errors import ConfigurationError, InvalidJobSpecError
from graphile_worker.spec import Job, JobKeyMode, JobSpec, TypedPayload
from graphile_worker.sql._job_reader import job_reader

NOW = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc)


@dataclasses.dataclass
class SendEmail:
    IDENTIFIER: ClassVar[str] = "send_email"
    to: str
    cc: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Envelope:
    email: SendEmail
    note: str | None = None


class ModelLike:
    """Quacks like a pydantic v2 model (pydantic itself is not a dependency)."""

    IDENTIFIER: ClassVar[str] = "model_task"

    def __init__(self, when: datetime) -> None:
        self.when = when

    def model_dump(self, *, mode: str = "python") -> dict[str, Any]:
        assert mode == "json", "payloads must be dumped in JSON mode"
        return {"when": self.when.isoformat()}


class TestJobSpecAccepts:
    def test_every_field(self) -> None:
        spec = JobSpec(
            queue_name="emails",
            run_at=NOW,
            max_attempts=3,
            job_key="welcome:42",
            job_key_mode=JobKeyMode.PRESERVE_RUN_AT,
            priority=-5,
            flags=["slow", "slow", "external"],
        )
        assert spec.flags == frozenset({"slow", "external"})
        assert spec.job_key_mode is JobKeyMode.PRESERVE_RUN_AT

    @pytest.mark.parametrize("mode", list(JobKeyMode))
    def test_mode_given_as_its_string(self, mode: JobKeyMode) -> None:
        spec = JobSpec(job_key="k", job_key_mode=mode.value)
        assert spec.job_key_mode is mode

    def test_limits_of_the_smallint_columns(self) -> None:
        JobSpec(max_attempts=1, priority=-32768)
        JobSpec(max_attempts=32767, priority=32767)

    def test_longest_key_and_names(self) -> None:
        JobSpec(job_key="k" * 512, queue_name="q" * 128)

    def test_any_timezone(self) -> None:
        JobSpec(run_at=NOW.astimezone(timezone(timedelta(hours=-7))))

    def test_is_frozen_and_hashable(self) -> None:
        spec = JobSpec(flags={"a"})
        with pytest.raises(dataclasses.FrozenInstanceError):
            spec.priority = 1  # type: ignore[misc]
        assert hash(spec) == hash(JobSpec(flags=["a"]))


class TestJobSpecRefuses:
    @pytest.mark.parametrize(
        ("fields", "message"),
        [
            ({"max_attempts": 0}, "max_attempts must be between 1 and 32767"),
            ({"max_attempts": -1}, "max_attempts must be between 1 and 32767"),
            ({"max_attempts": 32768}, "max_attempts must be between 1 and 32767"),
            ({"max_attempts": True}, "max_attempts must be an int, not bool"),
            ({"max_attempts": 2.0}, "max_attempts must be an int, not float"),
            ({"priority": 32768}, "priority must be between -32768 and 32767"),
            ({"priority": -32769}, "priority must be between -32768 and 32767"),
            ({"priority": "1"}, "priority must be an int, not str"),
            ({"run_at": datetime(2030, 1, 1)}, "naive datetime"),
            ({"run_at": "2030-01-01T00:00:00Z"}, "run_at must be a datetime"),
            # asyncpg would store these as -infinity and infinity.
            ({"run_at": datetime.min.replace(tzinfo=timezone.utc)}, "out of range"),
            ({"run_at": datetime.max.replace(tzinfo=timezone.utc)}, "out of range"),
            (
                {"run_at": datetime(9999, 12, 31, 23, tzinfo=timezone(-timedelta(hours=12)))},
                "out of range; give a time from the year 2 to 9999",
            ),
            ({"job_key": ""}, "job_key must not be empty"),
            ({"job_key": "k" * 513}, "job_key must be at most 512 characters"),
            ({"job_key": "a\x00b"}, "NUL"),
            ({"queue_name": ""}, "queue_name must not be empty"),
            ({"queue_name": "q" * 129}, "queue_name must be at most 128 characters"),
            ({"job_key": "k", "job_key_mode": "upsert"}, "job_key_mode must be one of"),
            ({"job_key_mode": "replace"}, "needs a job_key"),
            ({"job_key_mode": JobKeyMode.UNSAFE_DEDUPE}, "needs a job_key"),
            ({"flags": "slow"}, "flags must be a collection of str"),
            ({"flags": ["ok", 3]}, "flags must hold only str, not int"),
            ({"flags": 7}, "flags must be a collection of str"),
        ],
    )
    def test_invalid(self, fields: dict[str, Any], message: str) -> None:
        with pytest.raises(InvalidJobSpecError, match=message):
            JobSpec(**fields)

    def test_is_a_configuration_and_value_error(self) -> None:
        with pytest.raises(ConfigurationError):
            JobSpec(max_attempts=0)
        with pytest.raises(ValueError, match="max_attempts"):
            JobSpec(max_attempts=0)

    def test_positional_arguments(self) -> None:
        with pytest.raises(TypeError):
            JobSpec("queue")  # type: ignore[call-arg]


class TestPayloadToJson:
    def test_none_is_an_empty_object_as_in_node(self) -> None:
        assert payload_to_json(None) == "{}"

    @pytest.mark.parametrize(
        "payload", [{"a": 1}, [1, "two", None], "text", 42, 1.5, True, {"nested": {"ü": ["é"]}}]
    )
    def test_json_values_round_trip(self, payload: object) -> None:
        assert json.loads(payload_to_json(payload)) == payload

    def test_non_ascii_is_kept_readable(self) -> None:
        assert payload_to_json({"name": "Zoë"}) == '{"name":"Zoë"}'

    def test_dataclasses_nested_in_dataclasses(self) -> None:
        text = payload_to_json(Envelope(email=SendEmail(to="a@example.com", cc=["b"])))
        assert json.loads(text) == {"email": {"to": "a@example.com", "cc": ["b"]}, "note": None}

    def test_model_dump_in_json_mode(self) -> None:
        assert json.loads(payload_to_json({"items": [ModelLike(NOW)]})) == {
            "items": [{"when": NOW.isoformat()}]
        }

    def test_tuples_become_lists(self) -> None:
        assert payload_to_json((1, 2)) == "[1,2]"

    @pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
    def test_nan_and_infinity_are_refused(self, value: float) -> None:
        with pytest.raises(InvalidJobSpecError, match="payload cannot be sent as JSON"):
            payload_to_json({"x": [value]})

    @pytest.mark.parametrize(
        ("value", "type_name"),
        [
            (complex(1, 2), "builtins.complex"),
            (Decimal("NaN"), "Decimal"),
            (NOW.replace(tzinfo=None), "naive datetime"),
            (SendEmail, "class SendEmail itself"),
            (object(), "builtins.object"),
        ],
    )
    def test_unserialisable_values_name_their_type(self, value: object, type_name: str) -> None:
        with pytest.raises(InvalidJobSpecError, match=type_name):
            payload_to_json({"deep": [{"value": value}]})

    def test_circular_payload(self) -> None:
        loop: list[object] = []
        loop.append(loop)
        with pytest.raises(InvalidJobSpecError, match="circular reference"):
            payload_to_json(loop)

    def test_unsupported_key_type(self) -> None:
        with pytest.raises(InvalidJobSpecError, match="keys must be"):
            payload_to_json({(1, 2): "tuple key"})

    def test_lone_surrogate(self) -> None:
        with pytest.raises(InvalidJobSpecError, match="surrogate"):
            payload_to_json({"x": "\ud800"})


class TestTypedPayloads:
    def test_identifier_comes_from_the_class(self) -> None:
        assert identifier_of(SendEmail(to="x")) == "send_email"
        assert identifier_of(ModelLike(NOW)) == "model_task"
        assert isinstance(SendEmail(to="x"), TypedPayload)

    def test_plain_payloads_have_none(self) -> None:
        assert identifier_of({"IDENTIFIER": "not a class attribute"}) is None
        assert identifier_of(Envelope(email=SendEmail(to="x"))) is None

    def test_class_variable_is_not_part_of_the_payload(self) -> None:
        assert json.loads(payload_to_json(SendEmail(to="x"))) == {"to": "x", "cc": []}

    def test_bad_identifier_on_the_class(self) -> None:
        @dataclasses.dataclass
        class Broken:
            IDENTIFIER: ClassVar[str] = ""

        with pytest.raises(InvalidJobSpecError, match="task identifier must not be empty"):
            identifier_of(Broken())


class TestPrepareJob:
    def test_defaults(self) -> None:
        prepared = prepare_job("task", None, None)
        assert (prepared.identifier, prepared.payload_json, prepared.spec) == (
            "task",
            "{}",
            JobSpec(),
        )

    @pytest.mark.parametrize(
        ("identifier", "message"),
        [("", "must not be empty"), ("t" * 129, "at most 128"), (3, "must be a str")],
    )
    def test_identifier_checks(self, identifier: Any, message: str) -> None:
        with pytest.raises(InvalidJobSpecError, match=message):
            prepare_job(identifier, {}, None)

    def test_spec_must_be_a_job_spec(self) -> None:
        with pytest.raises(InvalidJobSpecError, match="spec must be a JobSpec"):
            prepare_job("task", {}, {"queue_name": "q"})  # type: ignore[arg-type]


def _private_row(**overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": 7,
        "job_queue_id": 3,
        "task_id": 2,
        "payload": {"a": 1},
        "priority": 0,
        "run_at": NOW,
        "attempts": 1,
        "max_attempts": 25,
        "last_error": None,
        "created_at": NOW,
        "updated_at": NOW,
        "key": None,
        "locked_at": None,
        "locked_by": None,
        "revision": 0,
        "flags": {"slow": True},
        "is_available": True,
        "task_identifier": "task",
        "queue_name": "queue",
    }
    row.update(overrides)
    return row


class TestJobFromRow:
    def test_private_jobs_row(self) -> None:
        job = Job.from_row(_private_row())
        assert job.id == 7
        assert job.flags == frozenset({"slow"})
        assert (job.task_id, job.job_queue_id, job.is_available) == (2, 3, True)
        assert job.payload == {"a": 1}
        assert not job.is_permanently_failed

    def test_view_row_has_no_payload(self) -> None:
        view_row = _private_row()
        for column in ("payload", "task_id", "job_queue_id", "is_available"):
            del view_row[column]
        job = Job.from_row(view_row)
        assert (job.payload, job.task_id, job.job_queue_id, job.is_available) == (
            None,
            None,
            None,
            None,
        )

    def test_null_flags_read_as_empty(self) -> None:
        assert Job.from_row(_private_row(flags=None)).flags == frozenset()

    def test_hash_by_id_equality_by_value(self) -> None:
        first, second = Job.from_row(_private_row()), Job.from_row(_private_row(attempts=2))
        assert hash(first) == hash(second)
        assert first != second
        assert first == Job.from_row(_private_row())

    def test_permanently_failed(self) -> None:
        assert Job.from_row(_private_row(attempts=25)).is_permanently_failed


class TestJobReader:
    """``job_reader`` fills a Job from bare values; it must match ``Job.from_row`` exactly."""

    COLUMNS = tuple(_private_row())

    @pytest.mark.parametrize("flags", [{"slow": True, "big": True}, None, {}])
    def test_same_job_as_from_row(self, flags: dict[str, bool] | None) -> None:
        row = _private_row(flags=flags)
        job = job_reader(self.COLUMNS)(tuple(row.values()))
        expected = Job.from_row(row)
        assert type(job) is Job
        assert job == expected
        assert dataclasses.astuple(job) == dataclasses.astuple(expected)
        assert job.flags == (frozenset(flags) if flags else frozenset())
        assert isinstance(job.flags, frozenset)

    def test_any_column_order(self) -> None:
        columns = tuple(reversed(self.COLUMNS))
        row = _private_row(queue_name=None, job_queue_id=None)
        job = job_reader(columns)([row[column] for column in columns])
        assert job == Job.from_row(row)

    def test_result_is_frozen_and_hashable(self) -> None:
        job = job_reader(self.COLUMNS)(tuple(_private_row().values()))
        with pytest.raises(dataclasses.FrozenInstanceError):
            job.attempts = 2  # type: ignore[misc]
        assert hash(job) == hash(7)
        assert {job: 1}[Job.from_row(_private_row())] == 1

    def test_columns_must_name_every_field_once(self) -> None:
        with pytest.raises(ValueError, match="must name each field of Job once"):
            job_reader(self.COLUMNS[:-1])
        with pytest.raises(ValueError, match="must name each field of Job once"):
            job_reader((*self.COLUMNS[:-1], "id"))

    def test_a_row_of_the_wrong_length_is_refused(self) -> None:
        read = job_reader(self.COLUMNS)
        with pytest.raises(ValueError, match="shorter"):
            read(tuple(_private_row().values())[:-1])
        with pytest.raises(ValueError, match="longer"):
            read((*_private_row().values(), "extra"))
