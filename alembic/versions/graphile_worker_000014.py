"""graphile-worker 000014: revised add_job and reschedule_jobs.

Node graphile-worker's migration 14, applied by graphile-worker's own migrator on
Alembic's connection, inside Alembic's transaction. A no-op when the ledger
(<schema>.migrations) already holds id 14, whoever applied it.

Marked breaking: workers that do not know this migration refuse to run against
the schema once it is applied.
"""

from __future__ import annotations

from graphile_worker.alembic_support import refuse_downgrade, upgrade_to

revision: str = "graphile_worker_000014"
down_revision: str | None = "graphile_worker_000013"
branch_labels: tuple[str, ...] | None = None
depends_on: str | None = None


def upgrade() -> None:
    upgrade_to(14)


def downgrade() -> None:
    refuse_downgrade(14)
