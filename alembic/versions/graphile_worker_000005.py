"""graphile-worker 000005: a revision counter and jsonb flags on jobs.

Node graphile-worker's migration 5, applied by graphile-worker's own migrator on
Alembic's connection, inside Alembic's transaction. A no-op when the ledger
(<schema>.migrations) already holds id 5, whoever applied it.
"""

from __future__ import annotations

from graphile_worker.alembic_support import refuse_downgrade, upgrade_to

revision: str = "graphile_worker_000005"
down_revision: str | None = "graphile_worker_000004"
branch_labels: tuple[str, ...] | None = None
depends_on: str | None = None


def upgrade() -> None:
    upgrade_to(5)


def downgrade() -> None:
    refuse_downgrade(5)
