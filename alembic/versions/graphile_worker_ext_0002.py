"""graphile-worker extension steps up to 0002: queue-order index and worker registry.

graphile-worker for Python's own objects, which Node graphile-worker does not have and
its ledger never records: the index that keeps named queues in order
(0001_jobs_queue_order_index) and the worker registry of dead-worker recovery
(0002_worker_registry). They are tracked in <schema>._pyworker_migrations.

graphile_worker_000020 applies them too on a project that reaches it today. This revision
is for projects that deployed graphile_worker_000020 before the steps existed: Alembic
never runs that revision again, so without this one they would never get them. Steps
already recorded are skipped, so elsewhere it changes nothing.
"""

from __future__ import annotations

from graphile_worker.alembic_support import refuse_downgrade, upgrade_extensions

revision: str = "graphile_worker_ext_0002"
down_revision: str | None = "graphile_worker_000020"
branch_labels: tuple[str, ...] | None = None
depends_on: str | None = None


def upgrade() -> None:
    upgrade_extensions("0002_worker_registry")


def downgrade() -> None:
    refuse_downgrade(revision)
