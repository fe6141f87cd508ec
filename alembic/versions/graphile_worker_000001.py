"""graphile-worker 000001: initial schema: jobs, job queues and their functions.

Node graphile-worker's migration 1, applied by graphile-worker's own migrator on
Alembic's connection, inside Alembic's transaction. A no-op when the ledger
(<schema>.migrations) already holds id 1, whoever applied it.

Marked breaking: workers that do not know this migration refuse to run against
the schema once it is applied.
"""

from __future__ import annotations

from graphile_worker.alembic_support import refuse_downgrade, upgrade_to

revision: str = "graphile_worker_000001"
down_revision: str | None = None
branch_labels: tuple[str, ...] | None = ("graphile_worker",)
depends_on: str | None = None


def upgrade() -> None:
    upgrade_to(1)


def downgrade() -> None:
    refuse_downgrade(1)
