"""graphile-worker 000002: job keys (jobs.key) and remove_job.

Node graphile-worker's migration 2, applied by graphile-worker's own migrator on
Alembic's connection, inside Alembic's transaction. A no-op when the ledger
(<schema>.migrations) already holds id 2, whoever applied it.
"""

from __future__ import annotations

from graphile_worker.alembic_support import refuse_downgrade, upgrade_to

revision: str = "graphile_worker_000002"
down_revision: str | None = "graphile_worker_000001"
branch_labels: tuple[str, ...] | None = None
depends_on: str | None = None


def upgrade() -> None:
    upgrade_to(2)


def downgrade() -> None:
    refuse_downgrade(2)
