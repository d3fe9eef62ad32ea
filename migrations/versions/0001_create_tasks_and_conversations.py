"""Create the task, conversation and message tables.

Revision ID: 0001
Revises:
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import store.types

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UTC_DATETIME = store.types.UTCDateTime(timezone=True)


def _partial(condition: str) -> dict[str, sa.TextClause]:
    return {"postgresql_where": sa.text(condition), "sqlite_where": sa.text(condition)}


def upgrade() -> None:
    op.create_table(
        "conversation",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("title", sa.String(length=255), nullable=True),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
        sa.Column("deleted_at", UTC_DATETIME, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conversation")),
        sa.UniqueConstraint("id", "user_id", name=op.f("uq_conversation_id_user_id")),
    )
    op.create_index(
        op.f("ix_conversation_user_id_updated_at_id"),
        "conversation",
        ["user_id", "updated_at", "id"],
        **_partial("deleted_at IS NULL"),
    )
    op.create_index(
        op.f("ix_conversation_user_id_deleted_at"),
        "conversation",
        ["user_id", "deleted_at"],
        **_partial("deleted_at IS NOT NULL"),
    )

    op.create_table(
        "task",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("title", sa.String(length=255), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("completed", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("completed_at", UTC_DATETIME, nullable=True),
        sa.Column("priority", sa.String(length=10), nullable=True),
        sa.Column("due_at", UTC_DATETIME, nullable=True),
        sa.Column("version", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
        sa.Column("deleted_at", UTC_DATETIME, nullable=True),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.CheckConstraint("priority IN ('low', 'medium', 'high')", name=op.f("ck_task_priority")),
        sa.CheckConstraint("version >= 1", name=op.f("ck_task_version_positive")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task")),
    )
    op.create_index(
        op.f("ix_task_user_id_completed_id"), "task", ["user_id", "completed", "id"], **_partial("deleted_at IS NULL")
    )
    op.create_index(op.f("ix_task_user_id_id"), "task", ["user_id", "id"], **_partial("deleted_at IS NULL"))
    op.create_index(
        op.f("ix_task_user_id_deleted_at_id"),
        "task",
        ["user_id", "deleted_at", "id"],
        **_partial("deleted_at IS NOT NULL"),
    )
    op.create_index(
        op.f("ix_task_user_id_idempotency_key"),
        "task",
        ["user_id", "idempotency_key"],
        unique=True,
        **_partial("idempotency_key IS NOT NULL"),
    )

    op.create_table(
        "message",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("conversation_id", ID, nullable=False),
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.CheckConstraint("role IN ('user', 'assistant', 'system', 'tool')", name=op.f("ck_message_role")),
        sa.ForeignKeyConstraint(
            ["conversation_id", "user_id"],
            ["conversation.id", "conversation.user_id"],
            name=op.f("fk_message_conversation_id_user_id_conversation"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_message")),
    )
    op.create_index(op.f("ix_message_conversation_id_id"), "message", ["conversation_id", "id"])
    op.create_index(
        op.f("ix_message_user_id_idempotency_key"),
        "message",
        ["user_id", "idempotency_key"],
        unique=True,
        **_partial("idempotency_key IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_table("message")
    op.drop_table("task")
    op.drop_table("conversation")
