"""When the anyio psycopg driver prepares a statement: pure bookkeeping, no database."""

from __future__ import annotations

from graphile_worker.drivers._prepared import (
    MAX_PREPARED_STATEMENTS,
    PreparedStatements,
    StatementKey,
)

SELECT: StatementKey = (b"select $1", (23,))


def _run(statements: PreparedStatements, key: StatementKey) -> bytes | None:
    """One run of ``key`` as the connection does it: the name it runs under, if any."""
    name = statements.lookup(key)
    if name is None and (name := statements.name_to_prepare(key)) is not None:
        statements.prepared(key, name)
    return name


def test_prepared_on_the_run_after_the_threshold_then_reused() -> None:
    statements = PreparedStatements(threshold=2)
    assert [_run(statements, SELECT) for _ in range(4)] == [
        None,
        None,
        b"_graphile_worker_1",
        b"_graphile_worker_1",
    ]


def test_threshold_zero_prepares_at_once_and_none_never() -> None:
    assert _run(PreparedStatements(threshold=0), SELECT) == b"_graphile_worker_1"
    never = PreparedStatements(threshold=None)
    assert {_run(never, SELECT) for _ in range(50)} == {None}


def test_other_parameter_types_are_another_statement() -> None:
    statements = PreparedStatements(threshold=0)
    assert _run(statements, SELECT) == b"_graphile_worker_1"
    assert _run(statements, (b"select $1", (25,))) == b"_graphile_worker_2"
    assert _run(statements, SELECT) == b"_graphile_worker_1"


def test_forgotten_statements_get_new_names() -> None:
    statements = PreparedStatements(threshold=0)
    assert _run(statements, SELECT) == b"_graphile_worker_1"
    statements.forget()
    assert statements.lookup(SELECT) is None
    assert _run(statements, SELECT) == b"_graphile_worker_2"


def test_at_most_so_many_statements_are_prepared() -> None:
    statements = PreparedStatements(threshold=0)
    names = {_run(statements, (b"select %d" % n, None)) for n in range(MAX_PREPARED_STATEMENTS)}
    assert None not in names
    assert _run(statements, (b"one too many", None)) is None
