"""Tasks: definition, payload decoding, the registry, load_tasks, and Task.execute.

Definition, decoding and the registry are pure code and are tested without a database.
``Task.execute`` runs on asyncio and trio: async handlers on the loop, plain ``def`` ones in
a worker thread, and batch results interpreted as Node graphile-worker does.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Any, ClassVar, Literal, NewType, Optional, TypedDict, Union

import anyio
import anyio.from_thread
import anyio.lowlevel
import pytest
import sniffio

from graphile_worker._payload import payload_to_json
from graphile_worker.errors import (
    BatchFailedError,
    ConfigurationError,
    JobError,
    PayloadDecodeError,
    TaskDefinitionError,
)
from graphile_worker.spec import JSON
from graphile_worker.task import (
    BatchResult,
    Task,
    TaskRegistry,
    load_tasks,
    task,
)
from graphile_worker.task._registry import TASK_ATTRIBUTE

try:
    import pydantic
except ImportError:  # pragma: no cover - the suite's venv has it
    pydantic = None  # type: ignore[assignment]

needs_pydantic = pytest.mark.skipif(pydantic is None, reason="pydantic is not installed")

pytestmark = pytest.mark.anyio

CTX: Any = SimpleNamespace(name="a stand-in for WorkerContext")
"""Handlers only pass ctx through; the worker's tests use the real WorkerContext."""


# -------------------------------------------------------------------------------- payload types


@dataclasses.dataclass
class Address:
    city: str
    zip_code: str | None = None


@dataclasses.dataclass
class SendEmail:
    IDENTIFIER: ClassVar[str] = "send_email"
    to: str
    address: Address | None = None
    tags: list[str] = dataclasses.field(default_factory=list)
    sent: ClassVar[list[SendEmail]] = []

    async def run(self, ctx: Any) -> None:
        SendEmail.sent.append(self)


@dataclasses.dataclass
class Resize:
    """A sync handler class that records the thread it ran on and the ctx it got."""

    IDENTIFIER: ClassVar[str] = "resize"
    width: int
    seen: ClassVar[list[tuple[int, object]]] = []

    def run(self, ctx: Any) -> None:
        Resize.seen.append((threading.get_ident(), ctx))


@dataclasses.dataclass
class NoContext:
    IDENTIFIER: ClassVar[str] = "no_context"
    runs: ClassVar[int] = 0

    def run(self) -> None:
        NoContext.runs += 1


@dataclasses.dataclass
class Tree:
    label: str
    children: list[Tree] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Positive:
    value: int

    def __post_init__(self) -> None:
        if self.value <= 0:
            raise ValueError(f"value must be positive, not {self.value}")


@dataclasses.dataclass
class WithInitVar:
    scale: dataclasses.InitVar[int]
    base: int = 1
    total: int = dataclasses.field(init=False, default=0)

    def __post_init__(self, scale: int) -> None:
        self.total = self.base * scale


@dataclasses.dataclass(init=False)
class Open:
    name: str
    extra: dict[str, Any]

    def __init__(self, name: str, **extra: Any) -> None:
        self.name = name
        self.extra = extra


class Colour(str, enum.Enum):
    RED = "red"
    GREEN = "green"


class Point(TypedDict):
    x: int
    y: int


UserId = NewType("UserId", int)


class NotJson:
    """A class we cannot build from JSON."""


@dataclasses.dataclass
class HasNotJson:
    thing: NotJson


@dataclasses.dataclass
class Item:
    id: int


if pydantic is not None:

    class EmailModel(pydantic.BaseModel):
        IDENTIFIER: ClassVar[str] = "email_model"
        to: str
        retries: int = 0
        ran_with: ClassVar[list[object]] = []

        async def run(self, ctx: Any) -> None:
            EmailModel.ran_with.append(ctx)

    class AliasedItem(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(populate_by_name=False)
        user_id: int = pydantic.Field(alias="userId")


def decoder_for(annotation: Any) -> Task:
    """A task whose payload parameter is annotated ``annotation``."""

    def handler(payload: Any) -> None:
        pass

    handler.__annotations__ = {"payload": annotation}
    return Task.from_function(handler, "probe")


def decode_error(task_: Task, payload: JSON) -> str:
    with pytest.raises(PayloadDecodeError) as caught:
        task_.decode(payload)
    return str(caught.value)


# ------------------------------------------------------------------------------- @task / Task


class TestDefinition:
    def test_decorator_keeps_the_function_and_attaches_a_task(self) -> None:
        async def send(payload: dict[str, Any], ctx: Any) -> None:
            pass

        decorated = task("send")(send)
        assert decorated is send
        made = getattr(send, TASK_ATTRIBUTE)
        assert isinstance(made, Task)
        assert (made.identifier, made.batch, made.is_async, made.handler) == (
            "send",
            False,
            True,
            send,
        )

    def test_identifier_defaults_to_the_function_name(self) -> None:
        @task
        def bare(payload: object) -> None:
            pass

        @task()
        def called(payload: object) -> None:
            pass

        assert getattr(bare, TASK_ATTRIBUTE).identifier == "bare"
        assert getattr(called, TASK_ATTRIBUTE).identifier == "called"
        assert getattr(bare, TASK_ATTRIBUTE).is_async is False

    def test_identifier_defaults_to_the_payload_types_identifier(self) -> None:
        # So that add_job(SendEmail(...)) reaches this function without naming the task.
        @task()
        async def deliver(payload: SendEmail) -> None:
            pass

        assert getattr(deliver, TASK_ATTRIBUTE).identifier == "send_email"

    def test_handler_class(self) -> None:
        made = Task.from_handler_class(SendEmail)
        assert (made.identifier, made.is_async, made.handler, made.payload_type) == (
            "send_email",
            True,
            SendEmail,
            SendEmail,
        )
        assert Task.from_handler_class(Resize).is_async is False

    @pytest.mark.parametrize(
        ("identifier", "message"),
        [("", "must not be empty"), ("x" * 129, "at most 128"), ("a\x00b", "NUL")],
    )
    def test_invalid_identifiers(self, identifier: str, message: str) -> None:
        with pytest.raises(TaskDefinitionError, match=message):

            @task(identifier)
            def handler(payload: object) -> None:
                pass

    def test_lambda_needs_an_identifier(self) -> None:
        with pytest.raises(TaskDefinitionError, match="no usable name"):
            Task.from_function(lambda payload: None)
        assert Task.from_function(lambda payload: None, "named").identifier == "named"

    def test_async_detection_sees_through_partials_and_callable_objects(self) -> None:
        async def handler(prefix: str, payload: object) -> None:
            pass

        class AsyncCallable:
            async def __call__(self, payload: object) -> None:
                pass

        class SyncCallable:
            def __call__(self, payload: object) -> None:
                pass

        assert Task.from_function(functools.partial(handler, "p"), "x").is_async is True
        assert Task.from_function(AsyncCallable(), "y").is_async is True
        assert Task.from_function(SyncCallable(), "z").is_async is False

    def test_decorating_a_class_is_refused(self) -> None:
        with pytest.raises(TaskDefinitionError, match="IDENTIFIER and a run"):
            task("x")(Address)

    def test_generators_are_refused(self) -> None:
        def gen(payload: object) -> Iterator[int]:
            yield 1

        with pytest.raises(TaskDefinitionError, match="generator"):
            task("gen")(gen)

    def test_too_many_required_parameters(self) -> None:
        def needy(payload: object, ctx: object, third: object) -> None:
            pass

        def keyword(payload: object, *, flag: bool) -> None:
            pass

        with pytest.raises(TaskDefinitionError, match="'third'"):
            Task.from_function(needy)
        with pytest.raises(TaskDefinitionError, match="'flag'"):
            Task.from_function(keyword)

    def test_optional_extra_parameters_are_fine(self) -> None:
        def relaxed(
            payload: object, ctx: object = None, extra: int = 3, *, flag: bool = False
        ) -> None:
            pass

        assert Task.from_function(relaxed).identifier == "relaxed"

    def test_unresolvable_payload_annotation(self) -> None:
        def handler(payload: DoesNotExist) -> None:  # type: ignore[name-defined]  # noqa: F821
            pass

        with pytest.raises(TaskDefinitionError, match="'DoesNotExist'.*module level"):
            Task.from_function(handler)

    def test_ctx_annotation_is_never_evaluated(self) -> None:
        # WorkerContext is typically imported under TYPE_CHECKING only.
        def handler(payload: Address, ctx: OnlyForTypeCheckers) -> None:  # type: ignore[name-defined]  # noqa: F821
            pass

        assert Task.from_function(handler).payload_type is Address

    def test_types_that_cannot_come_from_json(self) -> None:
        with pytest.raises(TaskDefinitionError, match="cannot build NotJson"):
            decoder_for(NotJson)
        with pytest.raises(TaskDefinitionError, match="cannot build NotJson"):
            decoder_for(list[NotJson])
        with pytest.raises(TaskDefinitionError, match="keys are always strings"):
            decoder_for(dict[int, str])
        with pytest.raises(TaskDefinitionError, match="NotJson.*field 'thing' of HasNotJson"):
            decoder_for(HasNotJson)

    class TestHandlerClasses:
        def test_identifier_must_be_a_string(self) -> None:
            @dataclasses.dataclass
            class Bad:
                IDENTIFIER: ClassVar[int] = 3

                def run(self) -> None:
                    pass

            with pytest.raises(TaskDefinitionError, match="IDENTIFIER"):
                Task.from_handler_class(Bad)

        def test_run_is_required(self) -> None:
            with pytest.raises(TaskDefinitionError, match="no run"):
                TaskRegistry().add(_PayloadOnly)

        def test_run_must_be_an_instance_method(self) -> None:
            @dataclasses.dataclass
            class Static:
                IDENTIFIER: ClassVar[str] = "static"

                @staticmethod
                def run() -> None:
                    pass

            with pytest.raises(TaskDefinitionError, match="plain instance method"):
                Task.from_handler_class(Static)

        def test_run_takes_at_most_ctx(self) -> None:
            @dataclasses.dataclass
            class Greedy:
                IDENTIFIER: ClassVar[str] = "greedy"

                def run(self, ctx: object, more: object) -> None:
                    pass

            with pytest.raises(TaskDefinitionError, match="'more'"):
                Task.from_handler_class(Greedy)

        def test_must_be_buildable_from_json(self) -> None:
            class Plain:
                IDENTIFIER: ClassVar[str] = "plain"

                def run(self) -> None:
                    pass

            with pytest.raises(TaskDefinitionError, match="dataclass or a pydantic model"):
                Task.from_handler_class(Plain)


@dataclasses.dataclass
class _PayloadOnly:
    IDENTIFIER: ClassVar[str] = "payload_only"
    text: str


# ------------------------------------------------------------------------------------ decoding


class TestDecoding:
    def test_raw_json_is_passed_through_untouched(self) -> None:
        payload: JSON = {"a": [1, {"b": None}]}
        for annotation in (Any, object, JSON, dict, dict[str, Any]):
            assert decoder_for(annotation).decode(payload) is payload

        @task("unannotated")
        def unannotated(payload, ctx):  # type: ignore[no-untyped-def]
            pass

        assert getattr(unannotated, TASK_ATTRIBUTE).decode([1, 2]) == [1, 2]

    def test_dataclass_with_nested_dataclass_and_defaults(self) -> None:
        decoded = Task.from_handler_class(SendEmail).decode(
            {"to": "a@b.c", "address": {"city": "Lyon"}, "tags": ["x"]}
        )
        assert decoded == SendEmail(to="a@b.c", address=Address(city="Lyon"), tags=["x"])
        assert Task.from_handler_class(SendEmail).decode({"to": "z"}) == SendEmail(to="z")

    @pytest.mark.parametrize(
        ("payload", "expected"),
        [
            ({"to": 5}, "payload.to: expected a string, got number 5"),
            ({"to": "a", "address": {"city": 1}}, "payload.address.city: expected a string"),
            ({"to": "a", "address": 7}, "payload.address: expected Address | None, got number 7"),
            ({"to": "a", "tags": ["ok", None]}, "payload.tags[1]: expected a string, got null"),
            ({}, "payload: missing required field 'to' for SendEmail"),
            ({"to": "a", "bcc": "x", "cc": 1}, "unexpected fields 'bcc', 'cc' for SendEmail"),
            ([1], "payload: expected a JSON object for SendEmail, got a JSON array"),
            (None, "payload: expected a JSON object for SendEmail, got null"),
        ],
    )
    def test_errors_name_the_task_the_type_and_the_field(
        self, payload: JSON, expected: str
    ) -> None:
        message = decode_error(Task.from_handler_class(SendEmail), payload)
        assert message.startswith("task 'send_email' cannot decode its payload as SendEmail: ")
        assert expected in message

    def test_error_keeps_the_constructor_exception_as_cause(self) -> None:
        probe = decoder_for(Positive)
        with pytest.raises(
            PayloadDecodeError,
            match=r"Positive\(\.\.\.\) raised ValueError: value must be positive",
        ) as caught:
            probe.decode({"value": -1})
        assert isinstance(caught.value.__cause__, ValueError)
        assert isinstance(caught.value, JobError)

    def test_recursive_dataclass(self) -> None:
        decoded = decoder_for(Tree).decode(
            {"label": "root", "children": [{"label": "leaf", "children": []}]}
        )
        assert decoded == Tree("root", [Tree("leaf")])
        message = decode_error(decoder_for(Tree), {"label": "r", "children": [{"label": 3}]})
        assert "payload.children[0].label: expected a string" in message

    def test_init_var_and_init_false_fields(self) -> None:
        decoded = decoder_for(WithInitVar).decode({"scale": 3, "base": 2})
        assert isinstance(decoded, WithInitVar)
        assert decoded.total == 6
        assert "unexpected field 'total'" in decode_error(
            decoder_for(WithInitVar), {"scale": 1, "total": 9}
        )

    def test_dataclass_accepting_kwargs_takes_unknown_keys(self) -> None:
        decoded = decoder_for(Open).decode({"name": "n", "colour": "blue"})
        assert isinstance(decoded, Open)
        assert decoded.extra == {"colour": "blue"}

    @pytest.mark.parametrize(
        ("annotation", "payload", "expected"),
        [
            (int, 3, 3),
            (float, 2, 2.0),
            (float, 2.5, 2.5),
            (bool, True, True),
            (str, "s", "s"),
            (None, None, None),
            (Optional[int], None, None),  # noqa: UP045 - the spelling under test
            (int | None, 4, 4),
            (Union[int, str], "x", "x"),  # noqa: UP007 - the spelling under test
            (Literal["a", "b"], "b", "b"),
            (Colour, "green", Colour.GREEN),
            (Point, {"x": 1, "y": 2}, {"x": 1, "y": 2}),
            (UserId, 7, 7),
            (Annotated[int, "meta"], 5, 5),
            (list[int], [1, 2], [1, 2]),
            (Sequence[Address], [{"city": "c"}], [Address("c")]),
            (tuple[int, str], [1, "a"], (1, "a")),
            (tuple[int, ...], [1, 2, 3], (1, 2, 3)),
            (set[str], ["a", "a", "b"], {"a", "b"}),
            (frozenset[int], [1], frozenset({1})),
            (dict[str, Address], {"home": {"city": "c"}}, {"home": Address("c")}),
        ],
    )
    def test_supported_annotations(self, annotation: Any, payload: JSON, expected: object) -> None:
        decoded = decoder_for(annotation).decode(payload)
        assert decoded == expected
        assert type(decoded) is type(expected)

    @pytest.mark.parametrize(
        ("annotation", "payload", "expected"),
        [
            (int, True, "expected an integer, got boolean true"),
            (int, 1.5, "expected an integer, got number 1.5"),
            (float, "1", "expected a number, got string '1'"),
            (bool, 1, "expected a boolean, got number 1"),
            (Literal[1], True, "expected Literal[1], got boolean true"),
            (Colour, "blue", "expected one of 'red', 'green' (Colour), got string 'blue'"),
            (Point, [1], "expected a JSON object for Point"),
            (tuple[int, str], [1], "expected a JSON array of 2 items, got a JSON array of 1"),
            (list[int], {"a": 1}, "expected a JSON array, got a JSON object"),
            (dict[str, int], {"a": "x"}, "payload.a: expected an integer"),
            (dict[str, int], {"a b": "x"}, "payload['a b']: expected an integer"),
            (int | str, None, "expected int | str, got null"),
            (set[Any], [{"a": 1}], "items cannot form a set"),
        ],
    )
    def test_rejected_payloads(self, annotation: Any, payload: JSON, expected: str) -> None:
        message = decode_error(decoder_for(annotation), payload)
        assert message.startswith("task 'probe' cannot decode its payload as ")
        assert expected in message

    @needs_pydantic
    def test_pydantic_model_handler_class(self) -> None:
        made = Task.from_handler_class(EmailModel)
        assert made.identifier == "email_model"
        assert made.decode({"to": "a"}) == EmailModel(to="a")
        message = decode_error(made, {"retries": "many"})
        assert message.startswith(
            "task 'email_model' cannot decode its payload as EmailModel: payload: EmailModel "
            "validation failed: "
        )
        assert "payload.to: Field required" in message
        assert "payload.retries: Input should be a valid integer" in message

    @needs_pydantic
    def test_pydantic_model_nested_in_a_list(self) -> None:
        decoded = decoder_for(list[AliasedItem]).decode([{"userId": 1}])
        assert decoded == [AliasedItem(userId=1)]
        assert "payload[0].userId: Field required" in decode_error(
            decoder_for(list[AliasedItem]), [{"user_id": 1}]
        )


# ------------------------------------------------------------------------------------ registry


@task("alpha")
def alpha(payload: object) -> None:
    pass


@task("alpha")
def alpha_again(payload: object) -> None:
    pass


class TestRegistry:
    def test_accepts_functions_classes_and_tasks(self) -> None:
        def undecorated(payload: object) -> None:
            pass

        made = Task.from_function(undecorated, "from_task")
        registry = TaskRegistry([alpha, SendEmail, made, undecorated])
        assert registry.identifiers == ("alpha", "from_task", "send_email", "undecorated")
        assert len(registry) == 4
        assert "alpha" in registry
        assert "beta" not in registry
        assert registry.get("from_task") is made
        assert registry.get("beta") is None
        assert [t.identifier for t in registry] == [
            "alpha",
            "send_email",
            "from_task",
            "undecorated",
        ]
        assert repr(registry) == (
            "TaskRegistry(['alpha', 'from_task', 'send_email', 'undecorated'])"
        )

    def test_add_returns_the_task(self) -> None:
        registry = TaskRegistry()
        assert registry.add(alpha) is getattr(alpha, TASK_ATTRIBUTE)
        assert not TaskRegistry()

    def test_same_handler_twice_is_harmless(self) -> None:
        registry = TaskRegistry([alpha, alpha, getattr(alpha, TASK_ATTRIBUTE)])
        assert len(registry) == 1

    def test_two_handlers_for_one_identifier(self) -> None:
        with pytest.raises(TaskDefinitionError, match="two handlers for task 'alpha'") as caught:
            TaskRegistry([alpha, alpha_again])
        assert "alpha_again" in str(caught.value)
        assert isinstance(caught.value, ConfigurationError)

    @pytest.mark.parametrize("item", ["send_email", 42, None])
    def test_things_that_are_not_tasks(self, item: object) -> None:
        with pytest.raises(TaskDefinitionError, match="cannot register"):
            TaskRegistry([item])


# ---------------------------------------------------------------------------------- load_tasks


@pytest.fixture
def isolated_imports() -> Iterator[None]:
    """Undo what loading tasks does to sys.path and sys.modules, so tests stay independent."""
    path = list(sys.path)
    modules = set(sys.modules)
    try:
        yield
    finally:
        sys.path[:] = path
        for name in set(sys.modules) - modules:
            # Only what the tests imported themselves; a library's lazy import stays.
            if name.startswith(("tests.task_fixtures", "gwtest_")):
                del sys.modules[name]


FIXTURES = "tests.task_fixtures"


@pytest.mark.usefixtures("isolated_imports")
class TestLoadTasks:
    def test_scans_functions_and_handler_classes(self) -> None:
        registry = load_tasks(f"{FIXTURES}.simple_tasks")
        # Cleanup is imported from other_tasks; Notice has no run(); AbstractHandler is
        # abstract; TypedPayload is a Protocol; helper is undecorated.
        assert registry.identifiers == ("cleanup", "notice", "resize", "send_email")
        notice = registry.get("notice")
        assert notice is not None
        assert notice.is_async is True

    def test_tasks_list_wins(self) -> None:
        assert load_tasks(f"{FIXTURES}.explicit_tasks").identifiers == ("chosen",)

    def test_tasks_registry_wins(self) -> None:
        assert load_tasks(f"{FIXTURES}.registry_tasks").identifiers == ("first",)

    def test_module_colon_attribute(self) -> None:
        assert load_tasks(f"{FIXTURES}.registry_tasks:others").identifiers == ("second",)
        assert load_tasks(f"{FIXTURES}.registry_tasks:second").identifiers == ("second",)
        with pytest.raises(TaskDefinitionError, match="has no attribute 'nope'"):
            load_tasks(f"{FIXTURES}.registry_tasks:nope")

    def test_path_inside_a_package_gets_its_real_module_name(self) -> None:
        path = Path(__file__).parent / "task_fixtures" / "package" / "tasks.py"
        registry = load_tasks(str(path))
        made = registry.get("package_thing")
        assert made is not None
        # Imported as tests.task_fixtures.package.tasks, so its relative import worked and
        # the payload class is the one everybody else imports.
        from tests.task_fixtures.package.models import Thing

        assert made.payload_type is Thing
        assert getattr(made.handler, "__module__", None) == f"{FIXTURES}.package.tasks"

    def test_package_directory(self) -> None:
        path = Path(__file__).parent / "task_fixtures" / "package"
        with pytest.raises(TaskDefinitionError, match="defines no tasks"):
            load_tasks(str(path))

    def test_plain_file_can_import_its_neighbours(self, tmp_path: Path) -> None:
        (tmp_path / "gwtest_neighbour.py").write_text("GREETING = 'hi'\n")
        (tmp_path / "gwtest_file_tasks.py").write_text(
            "from gwtest_neighbour import GREETING\n"
            "from graphile_worker.task import task\n\n"
            "@task('greet')\n"
            "def greet(payload):\n"
            "    return GREETING\n"
        )
        registry = load_tasks(str(tmp_path / "gwtest_file_tasks.py"))
        assert registry.identifiers == ("greet",)
        # Loading again reuses the module rather than defining a second set of handlers.
        again = load_tasks(str(tmp_path / "gwtest_file_tasks.py"))
        assert again.get("greet") is registry.get("greet")

    def test_file_whose_name_is_taken(self, tmp_path: Path) -> None:
        (tmp_path / "json.py").write_text("")
        with pytest.raises(TaskDefinitionError, match="'json' already belongs to"):
            load_tasks(str(tmp_path / "json.py"))

    @pytest.mark.parametrize(
        ("target", "message"),
        [
            (f"{FIXTURES}.no_such_module", "there is no module named"),
            ("gwtest_no_such_top_level", "there is no module named 'gwtest_no_such_top_level'"),
            (f"{FIXTURES}.empty_tasks", "defines no tasks"),
            (f"{FIXTURES}.duplicate_tasks", "two handlers for task 'same'"),
            (f"{FIXTURES}.mapping_tasks", "is a mapping"),
            ("not a module", "neither a module name"),
            ("", "empty"),
            ("./gwtest_missing_file.py", "no such file"),
        ],
    )
    def test_clear_errors(self, target: str, message: str) -> None:
        with pytest.raises(TaskDefinitionError, match=message):
            load_tasks(target)

    def test_import_errors_keep_their_cause(self) -> None:
        with pytest.raises(
            TaskDefinitionError, match="raised RuntimeError: database settings"
        ) as caught:
            load_tasks(f"{FIXTURES}.broken_tasks")
        assert isinstance(caught.value.__cause__, RuntimeError)
        with pytest.raises(
            TaskDefinitionError, match="raised ModuleNotFoundError: No module named 'graphile_"
        ):
            load_tasks(f"{FIXTURES}.missing_dependency_tasks")

    def test_directory_without_init(self, tmp_path: Path) -> None:
        with pytest.raises(TaskDefinitionError, match="no __init__.py"):
            load_tasks(str(tmp_path))

    def test_bad_file_name(self, tmp_path: Path) -> None:
        (tmp_path / "my-tasks.py").write_text("")
        with pytest.raises(TaskDefinitionError, match="not a valid module name"):
            load_tasks(str(tmp_path / "my-tasks.py"))


# ------------------------------------------------------------------------------------- execute


class TestExecute:
    async def test_async_handler_runs_on_the_loop(self, anyio_backend: str) -> None:
        seen: list[tuple[int, str, object]] = []

        @task("on_loop")
        async def on_loop(payload: object, ctx: object) -> None:
            seen.append((threading.get_ident(), sniffio.current_async_library(), ctx))

        made = getattr(on_loop, TASK_ATTRIBUTE)
        assert await made.execute(made.decode({}), CTX) is None
        assert seen == [(threading.get_ident(), anyio_backend, CTX)]

    async def test_sync_handler_runs_in_a_worker_thread(self) -> None:
        seen: list[int] = []

        @task("in_thread")
        def in_thread(payload: dict[str, Any]) -> None:
            seen.append(threading.get_ident())

        made = getattr(in_thread, TASK_ATTRIBUTE)
        assert await made.execute({}, CTX) is None
        assert len(seen) == 1
        assert seen[0] != threading.get_ident()

    async def test_sync_handler_can_call_back_into_the_loop(self, anyio_backend: str) -> None:
        # WorkerContext.call_async relies on this: the thread is one of anyio's.
        libraries: list[str] = []

        async def on_loop() -> None:
            libraries.append(sniffio.current_async_library())

        @task("calls_back")
        def calls_back(payload: object) -> None:
            anyio.from_thread.run(on_loop)

        await getattr(calls_back, TASK_ATTRIBUTE).execute({}, CTX)
        assert libraries == [anyio_backend]

    async def test_loop_stays_responsive_while_a_sync_handler_blocks(self) -> None:
        started = threading.Event()
        release = threading.Event()
        released: list[bool] = []

        @task("blocker")
        def blocker(payload: object) -> None:
            started.set()
            # If this ran on the loop, nothing could set `release` and this would time out.
            released.append(release.wait(timeout=10))

        made = getattr(blocker, TASK_ATTRIBUTE)
        ticks = 0
        with anyio.fail_after(10):
            async with anyio.create_task_group() as group:
                group.start_soon(made.execute, {}, CTX)
                assert await anyio.to_thread.run_sync(started.wait, 10)
                for _ in range(5):  # the loop keeps running other work meanwhile
                    await anyio.lowlevel.checkpoint()
                    ticks += 1
                release.set()
        assert ticks == 5
        assert released == [True]

    async def test_cancelling_abandons_a_blocked_sync_handler(self) -> None:
        release = threading.Event()
        finished = threading.Event()

        @task("stuck")
        def stuck(payload: object) -> None:
            release.wait(timeout=10)
            finished.set()

        made = getattr(stuck, TASK_ATTRIBUTE)
        try:
            with anyio.fail_after(5), anyio.CancelScope() as scope:
                async with anyio.create_task_group() as group:
                    group.start_soon(made.execute, {}, CTX)
                    await anyio.sleep(0.05)
                    scope.cancel()
            # execute returned (cancelled) while the thread is still blocked.
            assert scope.cancelled_caught
            assert not finished.is_set()
        finally:
            release.set()
        await anyio.to_thread.run_sync(finished.wait, 10)

    async def test_limiter_bounds_sync_handlers(self) -> None:
        lock = threading.Lock()
        running = 0
        most = 0

        @task("limited")
        def limited(payload: object) -> None:
            nonlocal running, most
            with lock:
                running += 1
                most = max(most, running)
            threading.Event().wait(0.02)
            with lock:
                running -= 1

        made = getattr(limited, TASK_ATTRIBUTE)
        limiter = anyio.CapacityLimiter(1)
        async with anyio.create_task_group() as group:
            for _ in range(4):
                group.start_soon(functools.partial(made.execute, {}, CTX, limiter=limiter))
        assert most == 1

    async def test_ctx_is_passed_by_position_count_not_name(self) -> None:
        received: list[tuple[object, ...]] = []

        def two(data: object, whatever: object) -> None:
            received.append((data, whatever))

        def one(context: object) -> None:  # named like a ctx, but it is the payload
            received.append((context,))

        def none() -> None:
            received.append(())

        async def star(*args: object) -> None:
            received.append(args)

        handlers: tuple[Callable[..., object], ...] = (two, one, none, star)
        for index, handler in enumerate(handlers):
            made = Task.from_function(handler, f"h{index}")
            await made.execute({"n": index}, CTX)
        assert received == [({"n": 0}, CTX), ({"n": 1},), (), ({"n": 3}, CTX)]

    async def test_handler_classes_async_and_sync(self) -> None:
        SendEmail.sent.clear()
        Resize.seen.clear()
        NoContext.runs = 0
        cases: list[tuple[type, JSON]] = [
            (SendEmail, {"to": "x"}),
            (Resize, {"width": 3}),
            (NoContext, {}),
        ]
        for cls, payload in cases:
            made = Task.from_handler_class(cls)
            assert await made.execute(made.decode(payload), CTX) is None
        assert SendEmail.sent == [SendEmail(to="x")]
        assert len(Resize.seen) == 1
        assert Resize.seen[0][0] != threading.get_ident()
        assert Resize.seen[0][1] is CTX
        assert NoContext.runs == 1

    async def test_handler_class_needs_a_decoded_payload(self) -> None:
        made = Task.from_handler_class(SendEmail)
        with pytest.raises(TypeError, match="pass the result of Task.decode"):
            await made.execute({"to": "x"}, CTX)

    @needs_pydantic
    async def test_pydantic_handler_class(self) -> None:
        EmailModel.ran_with.clear()
        made = Task.from_handler_class(EmailModel)
        await made.execute(made.decode({"to": "a"}), CTX)
        assert EmailModel.ran_with == [CTX]

    @pytest.mark.parametrize("is_async", [True, False])
    async def test_handler_exceptions_propagate_unchanged(self, is_async: bool) -> None:
        error = KeyError("boom")

        def sync_handler(payload: object) -> None:
            raise error

        async def async_handler(payload: object) -> None:
            raise error

        made = Task.from_function(async_handler if is_async else sync_handler, "boom")
        with pytest.raises(KeyError) as caught:
            await made.execute({}, CTX)
        assert caught.value is error

    async def test_sync_function_returning_a_coroutine_is_awaited(self) -> None:
        done: list[bool] = []

        async def inner(payload: object) -> None:
            done.append(True)

        def wrapper(payload: object) -> Any:
            return inner(payload)

        await Task.from_function(wrapper, "wrapped").execute({}, CTX)
        assert done == [True]


def batch_task(results: object, *, is_async: bool = True, item_type: Any = Any) -> Task:
    """A batch task whose handler returns ``results`` (a callable gets the items)."""

    def produce(items: list[Any]) -> object:
        return results(items) if callable(results) else results

    async def async_handler(items: list[Any], ctx: Any) -> object:
        return produce(items)

    def sync_handler(items: list[Any], ctx: Any) -> object:
        return produce(items)

    handler = async_handler if is_async else sync_handler
    handler.__annotations__["items"] = list[item_type]
    return Task.from_function(handler, "batch", batch=True)


class TestBatch:
    @pytest.mark.parametrize("is_async", [True, False])
    async def test_partial_failure_returns_exactly_the_failed_items(self, is_async: bool) -> None:
        first, third = ValueError("bad 1"), RuntimeError("")
        made = batch_task([first, None, third, None], is_async=is_async)
        items: JSON = [{"n": 1}, {"n": 2}, {"n": 3}, {"n": 4}]
        result = await made.execute(made.decode(items), CTX)
        assert result == BatchResult(failed_items=({"n": 1}, {"n": 3}), errors=(first, third))
        # Node's last_error wording; an empty message falls back to the class name.
        assert result.message == "Batch failures:\nbad 1\nRuntimeError"
        error = result.as_error()
        assert isinstance(error, BatchFailedError)
        assert isinstance(error, JobError)
        assert str(error) == result.message
        assert error.errors == (first, third)
        assert error.__cause__ is first

    async def test_all_failed_raises(self) -> None:
        errors = [ValueError("a"), ValueError("b")]
        made = batch_task(errors)
        with pytest.raises(BatchFailedError) as caught:
            await made.execute(made.decode([1, 2]), CTX)
        assert str(caught.value) == "Batch failures:\na\nb"
        assert caught.value.errors == tuple(errors)

    @pytest.mark.parametrize("results", [None, [None, None], (None, None)])
    async def test_success(self, results: object) -> None:
        made = batch_task(results)
        assert await made.execute(made.decode([1, 2]), CTX) is None

    async def test_empty_batch(self) -> None:
        made = batch_task([])
        assert await made.execute(made.decode([]), CTX) is None

    @pytest.mark.parametrize(
        ("results", "message"),
        [
            ([None], "returned 1 results for a batch of 2 items"),
            ([None, None, None], "returned 3 results for a batch of 2 items"),
            ("ab", "returned str"),
            (5, "returned int"),
            ([None, "failed"], "returned 'failed' for item 1"),
        ],
    )
    async def test_malformed_results_are_clear_errors(self, results: object, message: str) -> None:
        made = batch_task(results)
        with pytest.raises(JobError, match=message):
            await made.execute(made.decode([1, 2]), CTX)

    async def test_typed_items_are_decoded_but_failed_items_are_the_original_json(self) -> None:
        received: list[object] = []

        def fail_second(items: list[Any]) -> list[BaseException | None]:
            received.extend(items)
            return [None, ValueError("no")]

        made = batch_task(fail_second, item_type=Item)
        raw: JSON = [{"id": 1}, {"id": 2}]
        result = await made.execute(made.decode(raw), CTX)
        assert received == [Item(1), Item(2)]
        assert result is not None
        assert result.failed_items == ({"id": 2},)

    @needs_pydantic
    async def test_failed_items_survive_field_aliases(self) -> None:
        # Re-encoding decoded models would write user_id, which would not decode again.
        made = batch_task([ValueError("x"), None], item_type=AliasedItem)
        result = await made.execute(made.decode([{"userId": 1}, {"userId": 2}]), CTX)
        assert result is not None
        assert result.failed_items == ({"userId": 1},)
        assert made.decode(list(result.failed_items)) == [AliasedItem(userId=1)]

    async def test_payload_not_from_decode_is_re_encoded(self) -> None:
        made = batch_task([ValueError("x"), None, None], item_type=Item)
        result = await made.execute([Item(1), None, Item(3)], CTX)
        assert result is not None
        assert result.failed_items == ({"id": 1},)
        assert payload_to_json(list(result.failed_items)) == '[{"id":1}]'

    def test_batch_payload_must_be_an_array(self) -> None:
        made = batch_task(None, item_type=Item)
        message = decode_error(made, {"id": 1})
        assert message == (
            "task 'batch' cannot decode its payload as list[Item]: payload: a batch task needs "
            "a JSON array payload, got a JSON object"
        )
        assert "payload[1].id: expected an integer, got string 'x'" in decode_error(
            made, [{"id": 1}, {"id": "x"}]
        )

    def test_batch_annotation_must_be_a_list(self) -> None:
        async def handler(items: Item) -> None:
            pass

        with pytest.raises(TaskDefinitionError, match=r"annotate the parameter list\[Item\]"):
            Task.from_function(handler, "b", batch=True)

    def test_batch_without_item_type_gets_raw_items(self) -> None:
        @task("raw_batch", batch=True)
        async def raw_batch(items: list, ctx: object) -> None:  # type: ignore[type-arg]
            pass

        made = getattr(raw_batch, TASK_ATTRIBUTE)
        assert made.batch is True
        assert made.decode([{"a": 1}, 2]) == [{"a": 1}, 2]

    def test_batch_handler_ignores_payload_identifier(self) -> None:
        @task(batch=True)
        async def many_emails(items: list[SendEmail]) -> None:
            pass

        assert getattr(many_emails, TASK_ATTRIBUTE).identifier == "many_emails"
