"""Enable and force row-level security on PostgreSQL.

The store sets ``taskstore.user_id`` at the start of every transaction; these policies make
the database return and accept only that user's rows, so a query that forgets its
``user_id`` condition still cannot reach another user's data. With no setting, no row is
visible. FORCE applies the policies to the table owner too.

The retention purge sets ``taskstore.maintenance = 'purge'`` instead, which exposes only
soft-deleted rows (and the messages of deleted conversations), for selecting and deleting.
SQLite has no row-level security; there the store's own conditions are the only check.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

USER = "user_id = current_setting('taskstore.user_id', true)"
PURGE = "current_setting('taskstore.maintenance', true) = 'purge'"
TABLES = ("task", "conversation", "message")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(f"CREATE POLICY {table}_owner ON {table} USING ({USER}) WITH CHECK ({USER})")

    for table in ("task", "conversation"):
        for command in ("SELECT", "DELETE"):
            op.execute(
                f"CREATE POLICY {table}_purge_{command.lower()} ON {table} FOR {command} "
                f"USING ({PURGE} AND deleted_at IS NOT NULL)"
            )
    op.execute(
        f"CREATE POLICY message_purge_select ON message FOR SELECT USING ({PURGE} AND EXISTS ("
        "SELECT 1 FROM conversation c WHERE c.id = message.conversation_id AND c.deleted_at IS NOT NULL))"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP POLICY IF EXISTS message_purge_select ON message")
    for table in ("task", "conversation"):
        for command in ("select", "delete"):
            op.execute(f"DROP POLICY IF EXISTS {table}_purge_{command} ON {table}")
    for table in TABLES:
        op.execute(f"DROP POLICY IF EXISTS {table}_owner ON {table}")
        op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
