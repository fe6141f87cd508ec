"""graphile-worker 000004: complete_jobs, permanently_fail_jobs and reschedule_jobs.

Node graphile-worker's migration 4, applied by graphile-worker's own migrator on
Alembic's connection, inside Alembic's transaction. A no-op when the ledger
(<schema>.migrations) already holds id 4, whoever applied it.
"""

from __future__ import annotations

from graphile_worker.alembic_support import refuse_downgrade, upgrade_to

revision: str = "graphile_worker_000004"
down_revision: str | None = "graphile_worker_000003"
branch_labels: tuple[str, ...] | None = None
depends_on: str | None = None


def upgrade() -> None:
    upgrade_to(4)


def downgrade() -> None:
    refuse_downgrade(4)
