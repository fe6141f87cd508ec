"""Our SQL functions behave like Node's on the same inputs.

Twin databases, one migrated with Node graphile-worker's migrations and one with ours, run
the same statements (see :mod:`tests.migrations.behaviour`); returned rows, errors
(SQLSTATEs), ``jobs:insert`` notifications and the final table contents must agree. Each
case runs in the default schema and in a schema whose name needs quoting.
"""

from __future__ import annotations

import difflib
import pprint
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from graphile_worker.drivers._psycopg_common import PsycopgSyncExecutor
from graphile_worker.migrations import LATEST_MIGRATION, migrate_sync

from .behaviour import Case, prepare_connection, run_case, spec, sql_call
from .databases import connect, scratch_database
from .node import apply_node_migrations

if TYPE_CHECKING:
    import psycopg

pytestmark = pytest.mark.node

SCHEMAS = ["graphile_worker", "Custom Jobs"]

FUTURE = "2030-01-01T00:00:00Z"
LATER = "2031-06-15T12:30:00Z"
PAST = "2000-01-01T00:00:00Z"


def lock(where: str, worker: str = "worker_1", age: str = "0 seconds") -> str:
    """Mark jobs locked by ``worker`` since ``age`` ago, as a running worker would."""
    return (
        f"update {{schema}}._private_jobs set locked_by = '{worker}', "
        f"locked_at = now() - interval '{age}' where {where}"
    )


def lock_queue(queue_name: str, worker: str) -> str:
    """Mark a named queue locked by ``worker``, as a worker running its job would."""
    return (
        f"update {{schema}}._private_job_queues set locked_at = now(), "
        f"locked_by = '{worker}' where queue_name = '{queue_name}'"
    )


def ids(where: str) -> str:
    """An array of the ids of the jobs matching ``where`` (so cases never hard-code ids)."""
    return f"array(select id from {{schema}}._private_jobs where {where} order by id)"


def call_with_ids(function: str, where: str, extra: str = "") -> str:
    return f"select * from {{schema}}.{function}({ids(where)}{extra})"


def add_jobs(*specs: str, preserve_run_at: bool | None = None) -> str:
    array = f"array[{', '.join(specs)}]" if specs else "array[]::{schema}.job_spec[]"
    extra = "" if preserve_run_at is None else f", job_key_preserve_run_at => {preserve_run_at}"
    return f"select * from {{schema}}.add_jobs({array}{extra})"


ADD_JOB = [
    Case("minimal", (sql_call("add_job", "task_a"),)),
    Case(
        "all-arguments",
        (
            sql_call(
                "add_job",
                "task_b",
                payload='{"x": [1, 2], "y": "z"}',
                queue_name="queue_1",
                run_at=FUTURE,
                max_attempts=7,
                job_key="key_1",
                priority=-3,
                flags=["f1", "f2"],
                job_key_mode="replace",
            ),
        ),
    ),
    Case(
        "positional-arguments",
        (sql_call("add_job", "t", '{"a":1}', "q", PAST, 3, "k", 5, ["x"], "replace"),),
    ),
    Case(
        "null-payload-and-past-run-at",
        (sql_call("add_job", "t", payload=None, run_at=PAST, max_attempts=None),),
    ),
    Case(
        "tasks-and-queues-are-reused",
        (
            sql_call("add_job", "t", queue_name="q"),
            sql_call("add_job", "t", queue_name="q"),
            sql_call("add_job", "u", queue_name="q2"),
            sql_call("add_job", "u"),
        ),
    ),
    Case(
        "replace",
        (
            sql_call(
                "add_job",
                "t",
                '{"v":1}',
                queue_name="q1",
                run_at=FUTURE,
                job_key="k",
                priority=1,
                flags=["a"],
            ),
            sql_call(
                "add_job",
                "t2",
                '{"v":2}',
                queue_name="q2",
                run_at=LATER,
                job_key="k",
                priority=2,
                max_attempts=3,
                flags=["b"],
            ),
        ),
    ),
    Case(
        "replace-resets-attempts-and-error",
        (
            sql_call("add_job", "t", job_key="k", run_at=FUTURE),
            "update {schema}._private_jobs set attempts = 2, last_error = 'boom'",
            sql_call("add_job", "t", job_key="k", run_at=FUTURE),
        ),
    ),
    Case(
        "replace-into-no-queue",
        (
            sql_call("add_job", "t", job_key="k", queue_name="q1"),
            sql_call("add_job", "t", job_key="k"),
        ),
    ),
    Case(
        "replace-with-null-mode",
        (
            sql_call("add_job", "t", '{"v":1}', job_key="k"),
            sql_call("add_job", "t", '{"v":2}', job_key="k", job_key_mode=None),
        ),
    ),
    Case(
        "preserve-run-at",
        (
            sql_call("add_job", "t", '{"v":1}', job_key="k", run_at=FUTURE),
            sql_call(
                "add_job",
                "t",
                '{"v":2}',
                job_key="k",
                run_at=LATER,
                job_key_mode="preserve_run_at",
            ),
        ),
    ),
    Case(
        "preserve-run-at-after-an-attempt",
        (
            sql_call("add_job", "t", job_key="k", run_at=FUTURE),
            "update {schema}._private_jobs set attempts = 1",
            sql_call("add_job", "t", job_key="k", run_at=LATER, job_key_mode="preserve_run_at"),
        ),
    ),
    Case(
        "unsafe-dedupe",
        (
            sql_call("add_job", "t", '{"v":1}', job_key="k", job_key_mode="unsafe_dedupe"),
            sql_call(
                "add_job",
                "t",
                '{"v":2}',
                job_key="k",
                run_at=LATER,
                priority=9,
                job_key_mode="unsafe_dedupe",
            ),
        ),
    ),
    Case(
        "unsafe-dedupe-creates-task-queue-and-flags",
        (
            sql_call(
                "add_job",
                "fresh",
                '{"v":1}',
                queue_name="fresh_q",
                job_key="k",
                max_attempts=4,
                priority=2,
                flags=["p", "q"],
                job_key_mode="unsafe_dedupe",
            ),
        ),
    ),
    Case(
        "unsafe-dedupe-over-replace",
        (
            sql_call("add_job", "t", '{"v":1}', job_key="k"),
            sql_call("add_job", "t", '{"v":2}', job_key="k", job_key_mode="unsafe_dedupe"),
        ),
    ),
    Case(
        "unsafe-dedupe-keeps-a-locked-job",
        (
            sql_call("add_job", "t", '{"v":1}', job_key="k"),
            lock("key = 'k'"),
            sql_call("add_job", "t", '{"v":2}', job_key="k", job_key_mode="unsafe_dedupe"),
        ),
    ),
    Case(
        "invalid-mode-with-key",
        (sql_call("add_job", "t", job_key="k", job_key_mode="bogus"),),
    ),
    Case(
        "invalid-mode-without-key",
        (sql_call("add_job", "t", job_key_mode="bogus"),),
    ),
    Case(
        "locked-job-key-is-handed-to-a-new-job",
        (
            sql_call("add_job", "t", '{"v":1}', job_key="k"),
            lock("key = 'k'"),
            sql_call("add_job", "t", '{"v":2}', job_key="k"),
            sql_call("add_job", "t", '{"v":3}', job_key="k"),
        ),
    ),
    Case(
        "locked-job-key-with-preserve-run-at",
        (
            sql_call("add_job", "t", job_key="k", run_at=FUTURE),
            lock("key = 'k'"),
            sql_call("add_job", "t", job_key="k", run_at=LATER, job_key_mode="preserve_run_at"),
        ),
    ),
    Case(
        "failed-job-key-is-handed-to-a-new-job",
        (
            sql_call("add_job", "t", '{"v":1}', job_key="k", max_attempts=1),
            "update {schema}._private_jobs set attempts = 1, last_error = 'boom'",
            sql_call("add_job", "t", '{"v":2}', job_key="k"),
        ),
    ),
    Case(
        "flags",
        (
            sql_call("add_job", "t", flags=["a", "a", "b"]),
            sql_call("add_job", "t", flags=[]),
            sql_call("add_job", "t", flags=None),
        ),
    ),
    Case(
        "limits-accepted",
        (
            sql_call("add_job", "i" * 128, queue_name="q" * 128, job_key="k" * 512),
            sql_call("add_job", "t", max_attempts=1, priority=-32768),
            sql_call("add_job", "t", max_attempts=32767, priority=32767),
        ),
    ),
    Case(
        "limits-refused",
        (
            sql_call("add_job", "t", max_attempts=0),
            sql_call("add_job", "t", job_key=""),
            sql_call("add_job", "t", job_key="k" * 513),
            sql_call("add_job", "t", queue_name="q" * 129),
            sql_call("add_job", "i" * 129),
            sql_call("add_job", "t", priority=40000),
            sql_call("add_job", "t", max_attempts=40000),
            sql_call("add_job", None),
            sql_call("add_job", "t", payload="not json"),
        ),
    ),
    Case(
        "json-payload-text-is-kept",
        (sql_call("add_job", "t", payload='{ "b" : 1,  "a" : [ 2 ] }'),),
    ),
]

ADD_JOBS = [
    Case("empty", (add_jobs(),)),
    Case(
        "batch",
        (
            add_jobs(
                spec("a", '{"n":1}'),
                spec("b", '{"n":2}', "q1", FUTURE, 5, "k1", 3, ["x", "y"]),
                spec("b", None, "q2", PAST, None, "k2", None, []),
                spec("c", "[1]", "q1"),
            ),
        ),
    ),
    Case(
        "replace-by-key",
        (
            add_jobs(spec("a", '{"v":1}', "q1", FUTURE, 5, "k", 1, ["f"])),
            "update {schema}._private_jobs set attempts = 2, last_error = 'boom'",
            add_jobs(spec("b", '{"v":2}', None, LATER, None, "k", None, None)),
        ),
    ),
    Case(
        "preserve-run-at",
        (
            add_jobs(spec("a", job_key="k", run_at=FUTURE)),
            add_jobs(spec("a", job_key="k", run_at=LATER), preserve_run_at=True),
            add_jobs(spec("a", job_key="k2", run_at=FUTURE)),
            add_jobs(spec("a", job_key="k2", run_at=LATER), preserve_run_at=False),
        ),
    ),
    Case(
        "preserve-run-at-after-an-attempt",
        (
            add_jobs(spec("a", job_key="k", run_at=FUTURE)),
            "update {schema}._private_jobs set attempts = 1",
            add_jobs(spec("a", job_key="k", run_at=LATER), preserve_run_at=True),
        ),
    ),
    Case(
        "array-payloads-merge-by-key",
        (
            add_jobs(spec("a", "[1]", job_key="k")),
            add_jobs(spec("a", "[2, 3]", job_key="k")),
            add_jobs(spec("a", '[{"x":4}]', job_key="k")),
            add_jobs(spec("a", '{"o":1}', job_key="k")),
            add_jobs(spec("a", "[5]", job_key="k")),
            add_jobs(spec("a", "[]", job_key="k")),
            add_jobs(spec("a", None, job_key="k")),
        ),
    ),
    Case(
        "array-payloads-merge-through-add-job",
        (
            sql_call("add_job", "a", "[1]", job_key="k"),
            sql_call("add_job", "a", "[2]", job_key="k"),
            sql_call("add_job", "a", "[3]", job_key="k", job_key_mode="preserve_run_at"),
        ),
    ),
    Case(
        "array-payloads-of-a-locked-job-are-not-merged",
        (
            add_jobs(spec("a", "[1]", job_key="k")),
            lock("key = 'k'"),
            add_jobs(spec("a", "[2]", job_key="k")),
        ),
    ),
    Case(
        "duplicate-key-in-one-batch",
        (add_jobs(spec("a", "[1]", job_key="k"), spec("a", "[2]", job_key="k")),),
    ),
    Case(
        "null-identifier",
        (add_jobs(spec(None)),),
    ),
    Case(
        "mixed-keyed-and-unkeyed",
        (
            add_jobs(spec("a", '{"n":1}', job_key="k"), spec("a", '{"n":2}')),
            add_jobs(spec("a", '{"n":3}', job_key="k"), spec("a", '{"n":4}')),
        ),
    ),
]

THREE_JOBS = (
    sql_call("add_job", "t", '{"n":1}', job_key="k1"),
    sql_call("add_job", "t", '{"n":2}', queue_name="q"),
    sql_call("add_job", "u", '{"n":3}', max_attempts=3),
    sql_call("add_job", "u", '{"n":4}'),
)

COMPLETE_JOBS = [
    Case(
        "deletes-unlocked-and-stale-locked",
        (
            *THREE_JOBS,
            lock("payload->>'n' = '3'"),
            lock("payload->>'n' = '4'", age="5 hours"),
            call_with_ids("complete_jobs", "true"),
        ),
    ),
    Case(
        "unknown-empty-and-null",
        (
            *THREE_JOBS,
            "select * from {schema}.complete_jobs(array[-1, 0]::bigint[])",
            "select * from {schema}.complete_jobs(array[]::bigint[])",
            "select * from {schema}.complete_jobs(null)",
        ),
    ),
]

PERMANENTLY_FAIL_JOBS = [
    Case(
        "with-and-without-message",
        (
            *THREE_JOBS,
            lock("payload->>'n' = '3'"),
            call_with_ids("permanently_fail_jobs", "payload->>'n' in ('1', '3')", ", 'gave up'"),
            call_with_ids("permanently_fail_jobs", "payload->>'n' = '2'"),
            call_with_ids("permanently_fail_jobs", "payload->>'n' = '4'", ", null"),
        ),
    ),
    Case(
        "stale-lock",
        (
            *THREE_JOBS,
            lock("true", age="5 hours"),
            call_with_ids("permanently_fail_jobs", "true", ", 'stale'"),
        ),
    ),
]

RESCHEDULE_JOBS = [
    Case(
        "every-argument",
        (
            *THREE_JOBS,
            call_with_ids(
                "reschedule_jobs",
                "payload->>'n' in ('1', '2')",
                f", run_at => '{LATER}', priority => 4, attempts => 2, max_attempts => 9",
            ),
        ),
    ),
    Case(
        "partial-arguments-and-locks",
        (
            *THREE_JOBS,
            lock("payload->>'n' = '3'"),
            lock("payload->>'n' = '4'", age="5 hours"),
            call_with_ids("reschedule_jobs", "true", ", priority => -1"),
            call_with_ids("reschedule_jobs", "true", f", run_at => '{PAST}'"),
            call_with_ids("reschedule_jobs", "true"),
        ),
    ),
    Case(
        "out-of-range-and-invalid",
        (
            *THREE_JOBS,
            call_with_ids("reschedule_jobs", "true", ", priority => 40000"),
            call_with_ids("reschedule_jobs", "true", ", max_attempts => 0"),
            call_with_ids("reschedule_jobs", "true", ", attempts => 100"),
        ),
    ),
]

REMOVE_JOB = [
    Case(
        "unlocked-locked-stale-missing-null",
        (
            sql_call("add_job", "t", job_key="free"),
            sql_call("add_job", "t", job_key="busy", max_attempts=5),
            sql_call("add_job", "t", job_key="stale"),
            lock("key = 'busy'"),
            lock("key = 'stale'", age="5 hours"),
            sql_call("remove_job", "free"),
            sql_call("remove_job", "busy"),
            sql_call("remove_job", "stale"),
            sql_call("remove_job", "missing"),
            sql_call("remove_job", None),
            sql_call("add_job", "t", job_key="busy"),
        ),
    ),
]

FORCE_UNLOCK_WORKERS = [
    Case(
        "jobs-and-queues",
        (
            *THREE_JOBS,
            sql_call("add_job", "t", queue_name="q2"),
            lock("payload->>'n' = '1'", worker="w1"),
            lock("payload->>'n' = '2'", worker="w2"),
            lock("payload->>'n' = '3'", worker="w3"),
            lock_queue("q", worker="w1"),
            lock_queue("q2", worker="w3"),
            "select * from {schema}.force_unlock_workers(array['w1', 'w2', 'nobody'])",
            "select * from {schema}.force_unlock_workers(array[]::text[])",
            "select * from {schema}.force_unlock_workers(null)",
        ),
    ),
]

CASES = [
    *(("add_job", case) for case in ADD_JOB),
    *(("add_jobs", case) for case in ADD_JOBS),
    *(("complete_jobs", case) for case in COMPLETE_JOBS),
    *(("permanently_fail_jobs", case) for case in PERMANENTLY_FAIL_JOBS),
    *(("reschedule_jobs", case) for case in RESCHEDULE_JOBS),
    *(("remove_job", case) for case in REMOVE_JOB),
    *(("force_unlock_workers", case) for case in FORCE_UNLOCK_WORKERS),
]


@pytest.fixture(scope="module")
def twins(
    pg_cluster: Any, node_package: Path
) -> Iterator[tuple[psycopg.Connection[Any], psycopg.Connection[Any]]]:
    """Two databases holding every schema in :data:`SCHEMAS`: Node-migrated, ours-migrated."""
    with (
        scratch_database(pg_cluster, "behaviour_node") as node_url,
        scratch_database(pg_cluster, "behaviour_ours") as ours_url,
        connect(node_url) as node,
        connect(ours_url) as ours,
    ):
        for schema in SCHEMAS:
            apply_node_migrations(node, schema, LATEST_MIGRATION, package=node_package)
            # With our extension steps: they must not change how Node's functions behave.
            migrate_sync(PsycopgSyncExecutor(ours), schema=schema)
        prepare_connection(node)
        prepare_connection(ours)
        yield node, ours


@pytest.mark.parametrize("schema", SCHEMAS, ids=["default-schema", "quoted-schema"])
@pytest.mark.parametrize(
    ("function", "case"), CASES, ids=[f"{function}-{case.id}" for function, case in CASES]
)
def test_same_behaviour_as_node(
    function: str,
    case: Case,
    schema: str,
    twins: tuple[psycopg.Connection[Any], psycopg.Connection[Any]],
) -> None:
    node, ours = twins
    expected = run_case(node, schema, case)
    actual = run_case(ours, schema, case)
    if expected != actual:
        diff = difflib.unified_diff(
            pprint.pformat(expected, width=110).splitlines(),
            pprint.pformat(actual, width=110).splitlines(),
            "node",
            "ours",
            lineterm="",
            n=4,
        )
        pytest.fail(f"{function} {case.id!r} differs from Node:\n" + "\n".join(diff), pytrace=False)
