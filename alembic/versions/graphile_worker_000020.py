"""graphile-worker 000020: revised add_job and add_jobs.

Node graphile-worker's migration 20, applied by graphile-worker's own migrator on
Alembic's connection, inside Alembic's transaction. A no-op when the ledger
(<schema>.migrations) already holds id 20, whoever applied it.
"""

from __future__ import annotations

from graphile_worker.alembic_support import refuse_downgrade, upgrade_to

revision: str = "graphile_worker_000020"
down_revision: str | None = "graphile_worker_000019"
branch_labels: tuple[str, ...] | None = None
depends_on: str | None = None


def upgrade() -> None:
    upgrade_to(20)


def downgrade() -> None:
    refuse_downgrade(20)
