"""Payload decoding for tasks: turn a job's JSON into the type its handler declares.

A decoder is compiled once per task from the payload annotation, when the task is defined,
so a type we cannot build from JSON is a :class:`~graphile_worker.TaskDefinitionError` at
import time rather than a failed job at three in the morning. At run time a decoder is a
plain function ``(value, path) -> object`` that raises :class:`DecodeFailure` naming the
place (``payload.items[2].to``) and the problem; :meth:`graphile_worker.task.Task.decode`
adds the task's name and turns it into a :class:`~graphile_worker.PayloadDecodeError`.

What can be decoded: ``Any``/``object``/:data:`~graphile_worker.JSON`/no annotation (the
raw JSON), ``dict``/``Mapping``, ``list``/``Sequence``, ``tuple``, ``set``/``frozenset``,
``str``/``int``/``float``/``bool``/``None``, unions and ``Optional``, ``Literal`` (of enum
members too), enums and flags (by value), ``TypedDict`` (checked to be an object),
``NewType``, dataclasses (nested ones too) and pydantic v2 models; and, from the strings
:func:`graphile_worker._payload.payload_to_json` writes for them (see
:mod:`._decode_values`), ``datetime`` (an offset required: a naive one would mean a
different instant on each worker), ``date``, ``time``, ``timedelta`` (also a number of
seconds), ``UUID``, ``Decimal`` (also a JSON number) and ``bytes``/``bytearray`` (base64).
Only the exact classes: a subclass of ``datetime`` cannot be built from the text.

pydantic is never imported here: a class can only be a pydantic model if pydantic is already
loaded, so looking it up in ``sys.modules`` is enough.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import enum
import inspect
import json
import sys
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeAlias

from ..errors import TaskDefinitionError
from ..spec import JSON
from ._decode_values import VALUE_FORMS, ValueForm

__all__ = [
    "NO_ANNOTATION",
    "TRACE_KEY",
    "BatchItems",
    "DecodeFailure",
    "Decoder",
    "compile_batch_decoder",
    "compile_decoder",
    "describe_value",
    "identity",
    "type_name",
]

TRACE_KEY: Final = "_trace"
"""The payload key where :mod:`graphile_worker.otel` puts trace context; typed payloads skip it
unless they declare a field of that name."""

Decoder: TypeAlias = Callable[[object, str], object]
"""``decoder(value, path)``: the decoded value, or :class:`DecodeFailure` about ``path``."""

NO_ANNOTATION: Final = inspect.Parameter.empty
"""What :mod:`inspect` reports for a parameter without an annotation: raw JSON."""

_LIST_TYPES: Final = frozenset(
    {
        list,
        collections.abc.Sequence,
        collections.abc.MutableSequence,
        collections.abc.Collection,
        collections.abc.Iterable,
    }
)
_SET_TYPES: Final = frozenset({set, frozenset, collections.abc.Set, collections.abc.MutableSet})
_DICT_TYPES: Final = frozenset({dict, collections.abc.Mapping, collections.abc.MutableMapping})
_UNION_TYPES: Final = frozenset({typing.Union, types.UnionType})


class DecodeFailure(Exception):
    """A payload did not fit: ``path`` says where, ``problem`` says what was wrong."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class BatchItems(list[object]):
    """The decoded items of a batch payload, remembering the JSON they came from.

    A failed batch job is retried with only its failed items as the new payload (Node's
    semantics), and that payload must be the JSON the job held, not a re-encoding of the
    decoded objects: a pydantic model with field aliases, for one, would not decode again.
    Handlers see an ordinary list.
    """

    __slots__ = ("raw",)

    def __init__(self, items: list[object], raw: tuple[JSON, ...]) -> None:
        super().__init__(items)
        self.raw = raw


def identity(value: object, path: str) -> object:
    """The decoder for raw JSON: the value as the database driver decoded it."""
    return value


def describe_value(value: object) -> str:
    """Name a JSON value in an error message, the way a JSON reader would think of it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {json.dumps(value)}"
    if isinstance(value, (int, float)):
        return f"number {value!r}"
    if isinstance(value, str):
        return f"string {value!r:.60}"
    if isinstance(value, dict):
        return "a JSON object"
    if isinstance(value, list):
        return "a JSON array"
    return f"{type(value).__qualname__} {value!r:.60}"


def type_name(annotation: object) -> str:
    """A short, readable spelling of an annotation (``list[Item] | None``) for messages."""
    if annotation is NO_ANNOTATION or annotation is JSON:
        return "JSON"
    if annotation is None or annotation is type(None):
        return "None"
    if annotation is Any:
        return "Any"
    if annotation is Ellipsis:
        return "..."
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if origin in _UNION_TYPES:
        return " | ".join(type_name(argument) for argument in arguments)
    if origin is typing.Literal:
        return f"Literal[{', '.join(_literal_name(argument) for argument in arguments)}]"
    if origin is typing.Annotated:
        return type_name(arguments[0])
    if origin is not None and arguments:
        return f"{type_name(origin)}[{', '.join(type_name(argument) for argument in arguments)}]"
    if isinstance(annotation, type):
        return annotation.__qualname__
    return repr(annotation)


def _literal_name(choice: object) -> str:
    if isinstance(choice, enum.Enum):
        return f"{type(choice).__qualname__}.{choice.name}"
    return repr(choice)


def compile_decoder(annotation: object, *, owner: str) -> Decoder:
    """Build the decoder for one payload annotation.

    Args:
        annotation: The resolved annotation (a type, not a string), or ``NO_ANNOTATION``.
        owner: The handler, named in definition errors (``"function myapp.tasks.send"``).

    Raises:
        TaskDefinitionError: the annotation names a type that cannot be built from JSON.
    """
    compiler = _Compiler(owner)
    decoder = compiler.compile(annotation)
    return _within_the_recursion_limit(decoder) if compiler.recursive else decoder


def _within_the_recursion_limit(decode: Decoder) -> Decoder:
    """A decoder for a type that contains itself, failing cleanly on a payload too deep for it.

    Such a decoder recurses once per level of the payload, and a payload nested a few
    hundred levels deep (well within what the JSON decoder accepts) exhausts Python's
    recursion limit. That is the payload's fault, so it is a decode failure, not a bug.
    """

    def decode_recursive(value: object, path: str) -> object:
        try:
            return decode(value, path)
        except RecursionError:
            raise DecodeFailure(
                path,
                "nested too deeply to decode (Python's recursion limit was reached); "
                "send a shallower payload",
            ) from None

    return decode_recursive


def compile_batch_decoder(item_annotation: object, *, owner: str) -> Decoder:
    """Build the decoder for a batch payload: a JSON array whose items decode one by one.

    The result is a :class:`BatchItems` list that keeps the raw items for the retry payload.
    """
    decode_item = compile_decoder(item_annotation, owner=owner)

    def decode_batch(value: object, path: str) -> object:
        if not isinstance(value, list):
            raise DecodeFailure(
                path, f"a batch task needs a JSON array payload, got {describe_value(value)}"
            )
        raw: tuple[JSON, ...] = tuple(value)
        if decode_item is identity:
            return BatchItems(list(value), raw)
        return BatchItems(
            [decode_item(item, f"{path}[{index}]") for index, item in enumerate(value)], raw
        )

    return decode_batch


def _field_path(path: str, key: str) -> str:
    return f"{path}.{key}" if key.isidentifier() else f"{path}[{key!r}]"


def _is_pydantic_model(cls: type) -> bool:
    # No import: if pydantic was never imported, no class can derive from its BaseModel.
    pydantic = sys.modules.get("pydantic")
    base = getattr(pydantic, "BaseModel", None)
    return isinstance(base, type) and issubclass(cls, base)


def _require(kind: type, expected: str) -> Decoder:
    """A decoder that only checks the JSON kind (and keeps the value as it is)."""

    def check(value: object, path: str) -> object:
        if not isinstance(value, kind):
            raise DecodeFailure(path, f"expected {expected}, got {describe_value(value)}")
        return value

    return check


def _decode_str(value: object, path: str) -> object:
    if not isinstance(value, str):
        raise DecodeFailure(path, f"expected a string, got {describe_value(value)}")
    return value


def _decode_int(value: object, path: str) -> object:
    # bool is an int subclass, but JSON true is not the number 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise DecodeFailure(path, f"expected an integer, got {describe_value(value)}")
    return value


def _decode_float(value: object, path: str) -> object:
    # JSON has one number type: Node writes 2.0 as 2, so integers are valid floats.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DecodeFailure(path, f"expected a number, got {describe_value(value)}")
    return float(value)


def _decode_bool(value: object, path: str) -> object:
    if not isinstance(value, bool):
        raise DecodeFailure(path, f"expected a boolean, got {describe_value(value)}")
    return value


def _decode_none(value: object, path: str) -> object:
    if value is not None:
        raise DecodeFailure(path, f"expected null, got {describe_value(value)}")
    return value


_SCALARS: Final[Mapping[object, Decoder]] = {
    str: _decode_str,
    int: _decode_int,
    float: _decode_float,
    bool: _decode_bool,
    None: _decode_none,
    type(None): _decode_none,
}


def _value_decoder(form: ValueForm) -> Decoder:
    parse, expected = form

    def decode_value(value: object, path: str) -> object:
        try:
            return parse(value)
        except ValueError as error:
            reason = f": {error}" if str(error) else ""
            raise DecodeFailure(
                path, f"expected {expected}, got {describe_value(value)}{reason}"
            ) from None

    return decode_value


_VALUES: Final[Mapping[object, Decoder]] = {
    kind: _value_decoder(form) for kind, form in VALUE_FORMS.items()
}


class _Compiler:
    """Compiles annotations into decoders; remembers dataclasses so that cycles terminate."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.dataclasses: dict[type, Decoder] = {}
        self.recursive = False  # some dataclass contains itself, directly or not

    def compile(self, annotation: object) -> Decoder:
        if (
            annotation is NO_ANNOTATION
            or annotation is Any
            or annotation is object
            or annotation is JSON
            # Unresolved forward references only survive inside recursive type aliases
            # (JSON-like ones); type variables carry no shape either.
            or isinstance(annotation, (str, typing.ForwardRef, typing.TypeVar))
        ):
            return identity
        scalar = _SCALARS.get(annotation) or _VALUES.get(annotation)
        if scalar is not None:
            return scalar
        origin = typing.get_origin(annotation)
        arguments = typing.get_args(annotation)
        if origin is typing.Annotated:
            return self.compile(arguments[0])
        if origin in _UNION_TYPES:
            return self._union(annotation, arguments)
        if origin is typing.Literal:
            return _literal(annotation, arguments)
        if isinstance(annotation, typing.NewType):
            return self.compile(annotation.__supertype__)
        if typing.is_typeddict(annotation):
            return _require(dict, f"a JSON object for {type_name(annotation)}")
        container = origin if origin is not None else annotation
        if container in _LIST_TYPES:
            return self._list(arguments[0] if arguments else Any)
        if container is tuple:
            return self._tuple(arguments)
        if container in _SET_TYPES:
            return self._set(container, arguments[0] if arguments else Any)
        if container in _DICT_TYPES:
            return self._dict(annotation, arguments)
        if isinstance(annotation, type):
            if issubclass(annotation, enum.Enum):
                return _enum(annotation)
            if _is_pydantic_model(annotation):
                return _pydantic(annotation)
            if dataclasses.is_dataclass(annotation):
                return self._dataclass(annotation)
        raise TaskDefinitionError(
            f"{self.owner}: cannot build {type_name(annotation)} from a JSON payload; "
            "annotate it with a JSON type (dict, list, str, int, float, bool, None), datetime, "
            "date, time, timedelta, UUID, Decimal, bytes, an Enum, Literal, a set, tuple or "
            "union of those, a dataclass, a pydantic model, or Any for the raw JSON"
        )

    def _union(self, annotation: object, members: tuple[object, ...]) -> Decoder:
        decoders = [self.compile(member) for member in members]
        if identity in decoders:
            return identity
        expected = type_name(annotation)

        def decode_union(value: object, path: str) -> object:
            failures: list[DecodeFailure] = []
            for decode in decoders:
                try:
                    return decode(value, path)
                except DecodeFailure as failure:  # noqa: PERF203 - trying each is the point
                    failures.append(failure)
            # When exactly one alternative got inside the value before failing (the dataclass
            # in ``Item | None``), its message is the precise one.
            deepest = [failure for failure in failures if failure.path != path]
            if len(deepest) == 1:
                raise deepest[0]
            raise DecodeFailure(path, f"expected {expected}, got {describe_value(value)}")

        return decode_union

    def _list(self, item_annotation: object) -> Decoder:
        decode_item = self.compile(item_annotation)
        if decode_item is identity:
            return _require(list, "a JSON array")

        def decode_list(value: object, path: str) -> object:
            if not isinstance(value, list):
                raise DecodeFailure(path, f"expected a JSON array, got {describe_value(value)}")
            return [decode_item(item, f"{path}[{index}]") for index, item in enumerate(value)]

        return decode_list

    def _tuple(self, arguments: tuple[object, ...]) -> Decoder:
        if not arguments or (len(arguments) == 2 and arguments[1] is Ellipsis):
            decode_items = self._list(arguments[0] if arguments else Any)

            def decode_variadic(value: object, path: str) -> object:
                items = decode_items(value, path)
                assert isinstance(items, list)
                return tuple(items)

            return decode_variadic
        if arguments == ((),):  # tuple[()]: the empty tuple
            arguments = ()
        decoders = [self.compile(argument) for argument in arguments]

        def decode_fixed(value: object, path: str) -> object:
            if not isinstance(value, list) or len(value) != len(decoders):
                raise DecodeFailure(
                    path,
                    f"expected a JSON array of {len(decoders)} items, got {describe_value(value)}"
                    + (f" of {len(value)}" if isinstance(value, list) else ""),
                )
            return tuple(
                decode(item, f"{path}[{index}]")
                for index, (decode, item) in enumerate(zip(decoders, value, strict=True))
            )

        return decode_fixed

    def _set(self, container: object, item_annotation: object) -> Decoder:
        decode_items = self._list(item_annotation)
        build = frozenset if container is frozenset else set

        def decode_set(value: object, path: str) -> object:
            items = decode_items(value, path)
            assert isinstance(items, list)
            try:
                return build(items)
            except TypeError as error:  # e.g. objects inside: dicts are unhashable
                raise DecodeFailure(path, f"items cannot form a set: {error}") from error

        return decode_set

    def _dict(self, annotation: object, arguments: tuple[object, ...]) -> Decoder:
        if arguments and arguments[0] not in (str, Any, object):
            raise TaskDefinitionError(
                f"{self.owner}: {type_name(annotation)} cannot come from JSON, whose object "
                "keys are always strings; use str keys"
            )
        decode_value = self.compile(arguments[1]) if len(arguments) == 2 else identity
        if decode_value is identity:
            return _require(dict, "a JSON object")

        def decode_dict(value: object, path: str) -> object:
            if not isinstance(value, dict):
                raise DecodeFailure(path, f"expected a JSON object, got {describe_value(value)}")
            return {key: decode_value(item, _field_path(path, key)) for key, item in value.items()}

        return decode_dict

    def _dataclass(self, cls: type) -> Decoder:
        known = self.dataclasses.get(cls)
        if known is not None:
            if not isinstance(known, _DataclassDecoder):
                self.recursive = True  # met again while its own fields are compiled
            return known
        # A dataclass may contain itself (a tree of nodes): register a forwarder first.
        compiled: list[Decoder] = []

        def forward(value: object, path: str) -> object:
            return compiled[0](value, path)

        self.dataclasses[cls] = forward
        decoder = _DataclassDecoder(cls, self)
        compiled.append(decoder)
        self.dataclasses[cls] = decoder
        return decoder


class _DataclassDecoder:
    """Builds a dataclass from a JSON object with ``cls(**fields)``, checking the keys first.

    Keys come from the class's ``__init__`` (so ``InitVar`` fields and a custom ``__init__``
    count, ``field(init=False)`` ones do not); unknown keys are an error unless ``__init__``
    takes ``**kwargs``. Errors raised by the constructor (``__post_init__`` validation) are
    decode failures too: the payload, not the code, is what is wrong.
    """

    def __init__(self, cls: type, compiler: _Compiler) -> None:
        self.cls = cls
        self.name = cls.__qualname__
        parameters = inspect.signature(cls).parameters.values()
        self.accepts_extra = any(p.kind is p.VAR_KEYWORD for p in parameters)
        keyword = [p for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        self.required = tuple(p.name for p in keyword if p.default is p.empty)
        hints = _class_hints(cls, compiler.owner)
        self.fields: dict[str, Decoder] = {}
        for parameter in keyword:
            annotation = hints.get(parameter.name, Any)
            if isinstance(annotation, dataclasses.InitVar):
                annotation = annotation.type
            try:
                self.fields[parameter.name] = compiler.compile(annotation)
            except TaskDefinitionError as error:
                raise TaskDefinitionError(
                    f"{error} (field {parameter.name!r} of {self.name})"
                ) from error

    def __call__(self, value: object, path: str) -> object:
        if not isinstance(value, dict):
            raise DecodeFailure(
                path, f"expected a JSON object for {self.name}, got {describe_value(value)}"
            )
        if not self.accepts_extra:
            unknown = [key for key in value if key not in self.fields]
            if unknown and TRACE_KEY in unknown:
                # Trace context a producer wrote next to the fields (graphile_worker.otel).
                unknown.remove(TRACE_KEY)
                value = {key: item for key, item in value.items() if key != TRACE_KEY}
            if unknown:
                accepted = ", ".join(self.fields) or "no fields"
                raise DecodeFailure(
                    path,
                    f"unexpected field{'s' if len(unknown) > 1 else ''} "
                    f"{', '.join(repr(key) for key in unknown)} for {self.name} "
                    f"(it accepts: {accepted})",
                )
        missing = [name for name in self.required if name not in value]
        if missing:
            raise DecodeFailure(
                path,
                f"missing required field{'s' if len(missing) > 1 else ''} "
                f"{', '.join(repr(name) for name in missing)} for {self.name}",
            )
        arguments: dict[str, object] = {}
        for key, item in value.items():
            decode = self.fields.get(key, identity)
            arguments[key] = item if decode is identity else decode(item, _field_path(path, key))
        try:
            return self.cls(**arguments)
        except Exception as error:
            raise DecodeFailure(
                path, f"{self.name}(...) raised {type(error).__name__}: {error}"
            ) from error


def _class_hints(cls: type, owner: str) -> dict[str, object]:
    try:
        return typing.get_type_hints(cls, include_extras=True)
    except Exception as error:  # NameError for TYPE_CHECKING-only names, and friends
        raise TaskDefinitionError(
            f"{owner}: cannot resolve the field annotations of {cls.__qualname__} "
            f"({type(error).__name__}: {error}); import the types it names at module level, "
            "not only under TYPE_CHECKING"
        ) from error


def _literal(annotation: object, choices: tuple[object, ...]) -> Decoder:
    expected = type_name(annotation)
    # An enum member travels as its value (Literal[Color.RED] is written "red").
    by_value = [
        (choice.value, choice) if isinstance(choice, enum.Enum) else (choice, choice)
        for choice in choices
    ]

    def decode_literal(value: object, path: str) -> object:
        # Compare types too: JSON true must not match Literal[1].
        for written, choice in by_value:
            if type(written) is type(value) and written == value:
                return choice
        raise DecodeFailure(path, f"expected {expected}, got {describe_value(value)}")

    return decode_literal


def _enum(cls: type[enum.Enum]) -> Decoder:
    def decode_enum(value: object, path: str) -> object:
        try:
            return cls(value)
        except ValueError:
            allowed = ", ".join(repr(member.value) for member in cls)
            raise DecodeFailure(
                path,
                f"expected one of {allowed} ({cls.__qualname__}), got {describe_value(value)}",
            ) from None

    return decode_enum


def _pydantic(cls: type) -> Decoder:
    validate: Callable[[object], object] = cls.model_validate  # type: ignore[attr-defined]

    def decode_model(value: object, path: str) -> object:
        try:
            return validate(value)
        except Exception as error:
            if isinstance(value, dict) and TRACE_KEY in value:
                # A model that forbids extra fields: try again without the trace context
                # (only on this failure path, so payloads without it pay nothing).
                return decode_model(
                    {key: item for key, item in value.items() if key != TRACE_KEY}, path
                )
            raise DecodeFailure(path, _pydantic_problem(cls, error, path)) from error

    return decode_model


def _pydantic_problem(cls: type, error: Exception, path: str) -> str:
    """One line per pydantic error, each naming its field (``payload.to: Field required``)."""
    details = getattr(error, "errors", None)
    if not callable(details):
        return f"{cls.__qualname__} rejected it: {type(error).__name__}: {error}"
    entries: list[dict[str, Any]] = details(include_url=False)
    problems = []
    for entry in entries:
        location = path
        for part in entry.get("loc", ()):
            location = f"{location}[{part}]" if isinstance(part, int) else f"{location}.{part}"
        problems.append(f"{location}: {entry.get('msg', 'invalid')}")
    return f"{cls.__qualname__} validation failed: {'; '.join(problems)}"
