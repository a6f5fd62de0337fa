"""Indexes that every execution paid to write and no query needed (each one a page more
in the write-ahead log of every transaction that touches the row):

- ``execution_owner_id`` repeated the first column of ``(owner_id, idempotency_key)``
  and ``(owner_id, created_at, id)``, as ``checkpoint_execution_id`` did that of
  ``(execution_id, step)``: the wider indexes serve every lookup by those columns,
  and the foreign keys' cascades;
- ``checkpoint_session_id`` served no query;
- ``execution_session_id`` held every execution, where only a session's turns are ever
  looked up by it: it keeps those alone (a partial index; ``session_id = ?`` uses it).
"""

PARTIAL = (
    'CREATE INDEX "execution_session_id" ON "execution" ("session_id") '
    'WHERE "session_id" IS NOT NULL'
)


def up(migrator, db):
    migrator.migrate(
        migrator.drop_index("execution", "execution_owner_id"),
        migrator.drop_index("checkpoint", "checkpoint_execution_id"),
        migrator.drop_index("checkpoint", "checkpoint_session_id"),
        migrator.drop_index("execution", "execution_session_id"),
    )
    db.execute_sql(PARTIAL)


def down(migrator, db):
    migrator.migrate(
        migrator.drop_index("execution", "execution_session_id"),
        migrator.add_index("execution", ("session_id",), False),
        migrator.add_index("checkpoint", ("session_id",), False),
        migrator.add_index("checkpoint", ("execution_id",), False),
        migrator.add_index("execution", ("owner_id",), False),
    )
