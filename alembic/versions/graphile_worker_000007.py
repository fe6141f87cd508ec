"""graphile-worker 000007: revised add_job and remove_job.

Node graphile-worker's migration 7, applied by graphile-worker's own migrator on
Alembic's connection, inside Alembic's transaction. A no-op when the ledger
(<schema>.migrations) already holds id 7, whoever applied it.
"""

from __future__ import annotations

from graphile_worker.alembic_support import refuse_downgrade, upgrade_to

revision: str = "graphile_worker_000007"
down_revision: str | None = "graphile_worker_000006"
branch_labels: tuple[str, ...] | None = None
depends_on: str | None = None


def upgrade() -> None:
    upgrade_to(7)


def downgrade() -> None:
    refuse_downgrade(7)
