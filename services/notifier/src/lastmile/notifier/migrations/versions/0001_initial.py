"""Contacts and the notification log; outbox and inbox.

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
        "contacts",
        sa.Column("order_id", sa.String(40), primary_key=True),
        sa.Column("merchant_id", sa.String(40), nullable=False, index=True),
        sa.Column("merchant_name", sa.String(200), nullable=False),
        sa.Column("recipient", sa.JSON, nullable=False),
        sa.Column("tracking_url", sa.String(500), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
    )
    op.create_table(
        "notifications",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("order_id", sa.String(40), nullable=False, index=True),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("dedupe", sa.String(100), nullable=False),
        sa.Column("status", sa.String(20), nullable=False, index=True),
        sa.Column("to", sa.String(320), nullable=False),
        sa.Column("subject", sa.String(300), nullable=True),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("provider_id", sa.String(100), nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("sent_at", UtcDateTime, nullable=True),
        sa.UniqueConstraint("order_id", "channel", "dedupe", name="uq_notifications_identity"),
    )
    op.create_table(
        "deferred_events",
        sa.Column("event_id", sa.String(36), primary_key=True),
        sa.Column("order_id", sa.String(40), nullable=False, index=True),
        sa.Column("envelope", sa.JSON, nullable=False),
        sa.Column("received_at", UtcDateTime, nullable=False),
    )
    create_outbox_and_inbox(op)


def downgrade() -> None:
    for table in ("inbox", "outbox", "deferred_events", "notifications", "contacts"):
        op.drop_table(table)
