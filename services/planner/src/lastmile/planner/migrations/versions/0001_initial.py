"""Depots, vehicles, drivers, devices, positions, jobs, routes, plans; outbox and inbox.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from lastmile.common.db import UtcDateTime
from lastmile.common.outbox import create_outbox_and_inbox

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "depots",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
    )
    op.create_table(
        "vehicles",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("depot_id", sa.String(40), nullable=False, index=True),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
    )
    op.create_table(
        "jobs",
        sa.Column("order_id", sa.String(40), primary_key=True),
        sa.Column("depot_id", sa.String(40), nullable=False),
        sa.Column("service_date", sa.Date, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("order", sa.JSON, nullable=False),
        sa.Column("vehicle_id", sa.String(40), nullable=True),
        sa.Column("route_id", sa.String(40), nullable=True),
        sa.Column("planned_arrival", UtcDateTime, nullable=True),
        sa.Column("promised_start", UtcDateTime, nullable=True),
        sa.Column("promised_end", UtcDateTime, nullable=True),
        sa.Column("lateness_s", sa.Integer, nullable=False, server_default="0"),
        sa.Column("reason", sa.String(60), nullable=True),
        sa.Column("done_at", UtcDateTime, nullable=True),
    )
    op.create_table(
        "drivers",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("vehicle_id", sa.String(40), nullable=True),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
    )
    op.create_table(
        "devices",
        sa.Column("device_id", sa.String(40), primary_key=True),
        sa.Column("vehicle_id", sa.String(40), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, index=True),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("at", UtcDateTime, nullable=False),
    )
    op.create_table(
        "positions",
        sa.Column("vehicle_id", sa.String(40), primary_key=True),
        sa.Column("lat", sa.Float, nullable=False),
        sa.Column("lon", sa.Float, nullable=False),
        sa.Column("recorded_at", UtcDateTime, nullable=False),
    )
    op.create_table(
        "plans",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("depot_id", sa.String(40), nullable=False),
        sa.Column("service_date", sa.Date, nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("wave", sa.String(5), nullable=True),
        sa.Column("triggers", sa.JSON, nullable=False),
        sa.Column("requested_at", UtcDateTime, nullable=False),
        sa.Column("finished_at", UtcDateTime, nullable=True),
        sa.Column("result", sa.JSON, nullable=False),
        sa.Column("error", sa.String(500), nullable=True),
    )
    op.create_index("ix_plans_depot_day", "plans", ["depot_id", "service_date"])
    op.create_index("ix_jobs_depot_day", "jobs", ["depot_id", "service_date"])
    op.create_table(
        "routes",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("vehicle_id", sa.String(40), nullable=False),
        sa.Column("depot_id", sa.String(40), nullable=False),
        sa.Column("service_date", sa.Date, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("plan_id", sa.String(40), nullable=False),
        sa.Column("snapshot", sa.JSON, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
        sa.UniqueConstraint("vehicle_id", "service_date", name="uq_routes_vehicle_day"),
    )
    create_outbox_and_inbox(op)


def downgrade() -> None:
    for table in ("inbox", "outbox", "plans", "positions", "devices", "drivers", "routes", "jobs", "vehicles", "depots"):
        op.drop_table(table)
