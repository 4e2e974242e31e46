"""Contacts and order state, the notification log, opt-outs, templates, merchants' key hashes, webhooks;
outbox and inbox.

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
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("window_start", UtcDateTime, nullable=True),
        sa.Column("window_end", UtcDateTime, nullable=True),
        sa.Column("last_eta", UtcDateTime, nullable=True),
        sa.Column("eta_messages", sa.Integer, nullable=False),
    )
    op.create_table(
        "notifications",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("order_id", sa.String(40), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("dedupe", sa.String(100), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("to", sa.String(320), nullable=False),
        sa.Column("to_hash", sa.String(64), nullable=False, index=True),
        sa.Column("language", sa.String(10), nullable=False),
        sa.Column("subject", sa.String(300), nullable=True),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("html", sa.Text, nullable=True),
        sa.Column("provider_id", sa.String(100), nullable=True),
        sa.Column("delivery_status", sa.String(20), nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("ambiguous", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", UtcDateTime, nullable=False),
        sa.Column("lease_until", UtcDateTime, nullable=True),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("sent_at", UtcDateTime, nullable=True),
        sa.UniqueConstraint("order_id", "channel", "dedupe", name="uq_notifications_identity"),
    )
    op.create_index("ix_notifications_due", "notifications", ["status", "next_attempt_at"])
    op.create_index("ix_notifications_order", "notifications", ["order_id", "kind", "status"])
    op.create_table(
        "opt_outs",
        sa.Column("channel", sa.String(20), primary_key=True),
        sa.Column("address_hash", sa.String(64), primary_key=True),
        sa.Column("source", sa.String(40), nullable=False),
        sa.Column("at", UtcDateTime, nullable=False),
    )
    op.create_table(
        "deferred_events",
        sa.Column("event_id", sa.String(36), primary_key=True),
        sa.Column("order_id", sa.String(40), nullable=False, index=True),
        sa.Column("envelope", sa.JSON, nullable=False),
        sa.Column("received_at", UtcDateTime, nullable=False),
    )
    op.create_table(
        "templates",
        sa.Column("merchant_id", sa.String(40), primary_key=True),
        sa.Column("language", sa.String(10), primary_key=True),
        sa.Column("kind", sa.String(40), primary_key=True),
        sa.Column("sms", sa.Text, nullable=True),
        sa.Column("subject", sa.Text, nullable=True),
        sa.Column("text", sa.Text, nullable=True),
        sa.Column("updated_at", UtcDateTime, nullable=False),
    )
    op.create_table(
        "merchants",
        sa.Column("merchant_id", sa.String(40), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("keys_version", sa.Integer, nullable=False),
    )
    op.create_table(
        "merchant_keys",
        sa.Column("key_hash", sa.String(64), primary_key=True),
        sa.Column("merchant_id", sa.String(40), nullable=False, index=True),
    )
    op.create_table(
        "webhook_subscriptions",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("merchant_id", sa.String(40), nullable=False, index=True),
        sa.Column("url", sa.String(2000), nullable=False),
        sa.Column("event_types", sa.JSON, nullable=False),
        sa.Column("secret", sa.String(100), nullable=False),
        sa.Column("description", sa.String(200), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("disabled_reason", sa.Text, nullable=True),
        sa.Column("disabled_at", UtcDateTime, nullable=True),
        sa.Column("failing_since", UtcDateTime, nullable=True),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("subscription_id", sa.String(40), nullable=False, index=True),
        sa.Column("merchant_id", sa.String(40), nullable=False),
        sa.Column("order_id", sa.String(40), nullable=False),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("event_type", sa.String(100), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", UtcDateTime, nullable=False),
        sa.Column("lease_until", UtcDateTime, nullable=True),
        sa.Column("last_status_code", sa.Integer, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("delivered_at", UtcDateTime, nullable=True),
        sa.UniqueConstraint("subscription_id", "event_id", name="uq_webhook_deliveries_event"),
    )
    op.create_index("ix_webhook_deliveries_due", "webhook_deliveries", ["status", "next_attempt_at"])
    op.create_table(
        "webhook_attempts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("delivery_id", sa.String(40), nullable=False, index=True),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("at", UtcDateTime, nullable=False),
        sa.Column("status_code", sa.Integer, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("duration_ms", sa.Integer, nullable=False),
    )
    create_outbox_and_inbox(op)


def downgrade() -> None:
    for table in (
        "inbox",
        "outbox",
        "webhook_attempts",
        "webhook_deliveries",
        "webhook_subscriptions",
        "merchant_keys",
        "merchants",
        "templates",
        "deferred_events",
        "opt_outs",
        "notifications",
        "contacts",
    ):
        op.drop_table(table)
