"""Devices, routes and stops, positions, vehicle state, tracking tokens; outbox and inbox.

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

BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "devices",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("vehicle_id", sa.String(40), nullable=False, index=True),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("revoked_at", UtcDateTime, nullable=True),
    )
    op.create_table(
        "routes",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("vehicle_id", sa.String(40), nullable=False, index=True),
        sa.Column("service_date", sa.Date, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("snapshot", sa.JSON, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
    )
    op.create_table(
        "stops",
        sa.Column("order_id", sa.String(40), primary_key=True),
        sa.Column("route_id", sa.String(40), nullable=False, index=True),
        sa.Column("vehicle_id", sa.String(40), nullable=False),
        sa.Column("sequence", sa.Integer, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("planned_arrival", UtcDateTime, nullable=False),
        sa.Column("eta", UtcDateTime, nullable=True),
        sa.Column("completed_at", UtcDateTime, nullable=True),
        sa.Column("proof", sa.JSON, nullable=True),
    )
    op.create_table(
        "positions",
        sa.Column("id", BIGINT, primary_key=True, autoincrement=True),
        sa.Column("vehicle_id", sa.String(40), nullable=False),
        sa.Column("device_id", sa.String(40), nullable=False),
        sa.Column("lat", sa.Float, nullable=False),
        sa.Column("lon", sa.Float, nullable=False),
        sa.Column("recorded_at", UtcDateTime, nullable=False),
        sa.Column("received_at", UtcDateTime, nullable=False),
        sa.Column("speed_mps", sa.Float, nullable=True),
        sa.Column("accuracy_m", sa.Float, nullable=True),
        sa.Column("suspect", sa.Boolean, nullable=False),
        sa.UniqueConstraint("device_id", "recorded_at", name="uq_positions_device_time"),
    )
    op.create_table(
        "vehicle_state",
        sa.Column("vehicle_id", sa.String(40), primary_key=True),
        sa.Column("lat", sa.Float, nullable=False),
        sa.Column("lon", sa.Float, nullable=False),
        sa.Column("recorded_at", UtcDateTime, nullable=False),
    )
    op.create_table(
        "tracking",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("order_id", sa.String(40), nullable=False, unique=True),
    )
    create_outbox_and_inbox(op)


def downgrade() -> None:
    for table in ("inbox", "outbox", "tracking", "vehicle_state", "positions", "stops", "routes", "devices"):
        op.drop_table(table)
