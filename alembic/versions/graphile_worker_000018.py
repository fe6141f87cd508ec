"""graphile-worker 000018: jobs:insert notifications sent by the functions, not a trigger.

Node graphile-worker's migration 18, applied by graphile-worker's own migrator on
Alembic's connection, inside Alembic's transaction. A no-op when the ledger
(<schema>.migrations) already holds id 18, whoever applied it.
"""

from __future__ import annotations

from graphile_worker.alembic_support import refuse_downgrade, upgrade_to

revision: str = "graphile_worker_000018"
down_revision: str | None = "graphile_worker_000017"
branch_labels: tuple[str, ...] | None = None
depends_on: str | None = None


def upgrade() -> None:
    upgrade_to(18)


def downgrade() -> None:
    refuse_downgrade(18)
