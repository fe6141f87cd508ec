"""A claim whose reply is lost: the server committed it, the worker never saw its jobs.

The connection breaking between the server's commit and the reply (a network cut, a
proxy restart) leaves jobs locked in the name of a worker that is alive and heartbeating,
so no sweep would free them. The driver here runs every statement for real and only
loses the reply of one claim, exactly what such a fault looks like from the worker.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pytest
from typing_extensions import Self

from graphile_worker.errors import ConnectionLostError
from graphile_worker.task import task
from graphile_worker.worker import LocalQueueOptions, Worker, WorkerContext

from .conftest import eventually, job_rows, options

if TYPE_CHECKING:
    from types import TracebackType

    import psycopg

    from graphile_worker.drivers import DatabaseDriver
    from graphile_worker.utils import WorkerUtils

pytestmark = pytest.mark.anyio


class LosesOneClaimReply:
    """A driver whose first claim is committed by the server but whose reply never arrives."""

    def __init__(self, driver: DatabaseDriver) -> None:
        self._driver = driver
        self.lost = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._driver, name)

    async def _fetch_values(self, sql: str, params: Any) -> Sequence[Sequence[Any]]:
        rows = await self._driver._fetch_values(sql, params)  # type: ignore[attr-defined]
        if self.lost == 0 and "skip locked" in sql:
            self.lost = len(rows)
            raise ConnectionLostError("server closed the connection unexpectedly (simulated)")
        return rows  # type: ignore[no-any-return]

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        return None


@pytest.mark.parametrize("local_queue", [None, 10], ids=["claims", "local-queue"])
async def test_jobs_of_a_lost_claim_are_handed_back_and_run_once(
    driver: DatabaseDriver,
    utils: WorkerUtils,
    sync_connection: psycopg.Connection[Any],
    local_queue: int | None,
) -> None:
    runs: list[int] = []

    @task("counted")
    async def counted(payload: dict[str, int], ctx: WorkerContext) -> None:
        runs.append(payload["n"])

    for number in range(5):
        await utils.add_job("counted", {"n": number})
    lossy = LosesOneClaimReply(driver)
    queue = None if local_queue is None else LocalQueueOptions(size=local_queue)
    worker = Worker(
        options(lossy, [counted], concurrency=2, local_queue=queue, poll_interval=0.2)  # type: ignore[arg-type]
    )
    async with worker:
        await eventually(lambda: sorted(runs) == list(range(5)))
    assert lossy.lost > 0  # the fault did happen, and its jobs were locked in our name
    assert sorted(runs) == list(range(5))  # each ran once: none stranded, none twice
    assert job_rows(sync_connection) == []
