"""Devices, routes and stops, positions, vehicle state, tracking tokens, proof images; outbox and inbox.

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
        sa.Column("start_at", UtcDateTime, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("snapshot", sa.JSON, nullable=False),
        sa.Column("progress", sa.JSON, nullable=True),
        sa.Column("progress_seq", sa.Integer, nullable=False, server_default="0"),
        sa.Column("updated_at", UtcDateTime, nullable=False),
        sa.Column("started_at", UtcDateTime, nullable=True),
        sa.Column("finished_at", UtcDateTime, nullable=True),
    )
    op.create_table(
        "stops",
        sa.Column("order_id", sa.String(40), primary_key=True),
        sa.Column("route_id", sa.String(40), nullable=False, index=True),
        sa.Column("vehicle_id", sa.String(40), nullable=False),
        sa.Column("sequence", sa.Integer, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("planned_arrival", UtcDateTime, nullable=False),
        sa.Column("promised_start", UtcDateTime, nullable=True),
        sa.Column("promised_end", UtcDateTime, nullable=True),
        sa.Column("eta", UtcDateTime, nullable=True),
        sa.Column("scheduled_at", UtcDateTime, nullable=True),
        sa.Column("out_at", UtcDateTime, nullable=True),
        sa.Column("arriving_at", UtcDateTime, nullable=True),
        sa.Column("arrived_at", UtcDateTime, nullable=True),
        sa.Column("completed_at", UtcDateTime, nullable=True),
        sa.Column("failure_reason", sa.String(40), nullable=True),
        sa.Column("proof", sa.JSON, nullable=True),
    )
    op.create_table(
        "proof_images",
        sa.Column("order_id", sa.String(40), primary_key=True),
        sa.Column("kind", sa.String(20), primary_key=True),
        sa.Column("content_type", sa.String(40), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
    )
    op.create_table(
        "positions",
        sa.Column("device_id", sa.String(40), primary_key=True),
        sa.Column("recorded_at", UtcDateTime, primary_key=True),
        sa.Column("vehicle_id", sa.String(40), nullable=False),
        sa.Column("lat", sa.Float, nullable=False),
        sa.Column("lon", sa.Float, nullable=False),
        sa.Column("received_at", UtcDateTime, nullable=False),
        sa.Column("speed_mps", sa.Float, nullable=True),
        sa.Column("heading", sa.Float, nullable=True),
        sa.Column("accuracy_m", sa.Float, nullable=True),
        sa.Column("altitude_m", sa.Float, nullable=True),
        sa.Column("battery", sa.Float, nullable=True),
        sa.Column("suspect", sa.Boolean, nullable=False),
    )
    op.create_index("ix_positions_vehicle_time", "positions", ["vehicle_id", "recorded_at"])
    # BRIN on PostgreSQL: received_at grows with insertion, so a tiny index serves the retention purge.
    op.create_index("ix_positions_received", "positions", ["received_at"], postgresql_using="brin")
    op.create_table(
        "vehicle_state",
        sa.Column("vehicle_id", sa.String(40), primary_key=True),
        sa.Column("device_id", sa.String(40), nullable=False),
        sa.Column("lat", sa.Float, nullable=False),
        sa.Column("lon", sa.Float, nullable=False),
        sa.Column("recorded_at", UtcDateTime, nullable=False),
        sa.Column("accuracy_m", sa.Float, nullable=True),
        sa.Column("speed_mps", sa.Float, nullable=True),
        sa.Column("heading", sa.Float, nullable=True),
        sa.Column("battery", sa.Float, nullable=True),
        sa.Column("raw_lat", sa.Float, nullable=False),
        sa.Column("raw_lon", sa.Float, nullable=False),
        sa.Column("raw_at", UtcDateTime, nullable=False),
        sa.Column("raw_accuracy_m", sa.Float, nullable=True),
        sa.Column("suspect_streak", sa.Integer, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False, index=True),
    )
    op.create_table(
        "tracking",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("order_id", sa.String(40), nullable=False, unique=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("merchant_name", sa.String(200), nullable=False),
        sa.Column("reference", sa.String(200), nullable=False),
        sa.Column("lat", sa.Float, nullable=False),
        sa.Column("lon", sa.Float, nullable=False),
        sa.Column("address", sa.JSON, nullable=False),
        sa.Column("windows", sa.JSON, nullable=False),
        sa.Column("timezone", sa.String(64), nullable=True),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("cancelled_at", UtcDateTime, nullable=True),
        sa.Column("expires_at", UtcDateTime, nullable=True),
    )
    create_outbox_and_inbox(op)


def downgrade() -> None:
    for table in (
        "inbox",
        "outbox",
        "tracking",
        "vehicle_state",
        "positions",
        "proof_images",
        "stops",
        "routes",
        "devices",
    ):
        op.drop_table(table)
