"""graphile-worker 000011: normalised tables (tasks, job queues), add_jobs, job_spec.

Node graphile-worker's migration 11, applied by graphile-worker's own migrator on
Alembic's connection, inside Alembic's transaction. A no-op when the ledger
(<schema>.migrations) already holds id 11, whoever applied it.

Marked breaking: workers that do not know this migration refuse to run against
the schema once it is applied.
"""

from __future__ import annotations

from graphile_worker.alembic_support import refuse_downgrade, upgrade_to

revision: str = "graphile_worker_000011"
down_revision: str | None = "graphile_worker_000010"
branch_labels: tuple[str, ...] | None = None
depends_on: str | None = None


def upgrade() -> None:
    upgrade_to(11)


def downgrade() -> None:
    refuse_downgrade(11)
