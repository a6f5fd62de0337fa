"""Two more writes every execution paid for and nothing needed:

- Execution events are keyed by ``(execution_id, seq)``, which every read of them looks
  up, instead of a surrogate ``id`` no query used. Each event was written twice, to the
  table and to the unique ``(execution_id, seq)`` index; now once. On SQLite the table
  is rebuilt ``WITHOUT ROWID`` (the rows copied: on a large database this migration
  takes a while); on PostgreSQL the unique index becomes the primary key.
- ``(owner_id, idempotency_key)`` keeps only the executions created with a key (a
  partial index; ``idempotency_key = ?`` uses it): it held a row for every execution.
"""

import peewee

COLUMNS = '"execution_id", "seq", "type", "data", "created_at"'
SQLITE_KEYED = (
    'CREATE TABLE "execution_event_keyed" ('
    '"execution_id" VARCHAR(40) NOT NULL '
    'REFERENCES "execution" ("id") ON DELETE CASCADE, '
    '"seq" INTEGER NOT NULL, "type" VARCHAR(32) NOT NULL, "data" TEXT NOT NULL, '
    '"created_at" DATETIME NOT NULL, PRIMARY KEY ("execution_id", "seq")) WITHOUT ROWID'
)
SQLITE_NUMBERED = (
    'CREATE TABLE "execution_event_numbered" ("id" INTEGER NOT NULL PRIMARY KEY, '
    '"execution_id" VARCHAR(40) NOT NULL '
    'REFERENCES "execution" ("id") ON DELETE CASCADE, '
    '"seq" INTEGER NOT NULL, "type" VARCHAR(32) NOT NULL, "data" TEXT NOT NULL, '
    '"created_at" DATETIME NOT NULL)'
)
IDEMPOTENCY = '"execution" ("owner_id", "idempotency_key")'


def _sqlite(db) -> bool:
    return isinstance(db, peewee.SqliteDatabase)


def _replace_events(db, create: str, name: str) -> None:
    """SQLite cannot change a table's key: copy the events into ``name``, made by
    ``create``, and let it take the table's place."""
    db.execute_sql(create)
    db.execute_sql(f'INSERT INTO "{name}" ({COLUMNS}) SELECT {COLUMNS} FROM "execution_event"')
    db.execute_sql('DROP TABLE "execution_event"')
    db.execute_sql(f'ALTER TABLE "{name}" RENAME TO "execution_event"')


def up(migrator, db):
    if _sqlite(db):
        _replace_events(db, SQLITE_KEYED, "execution_event_keyed")
    else:
        db.execute_sql('ALTER TABLE "execution_event" DROP COLUMN "id"')
        db.execute_sql(
            'ALTER TABLE "execution_event" ADD CONSTRAINT "execution_event_pkey" '
            'PRIMARY KEY USING INDEX "execution_event_execution_id_seq"'
        )
    db.execute_sql('DROP INDEX "execution_owner_id_idempotency_key"')
    db.execute_sql(
        f'CREATE UNIQUE INDEX "execution_owner_id_idempotency_key" ON {IDEMPOTENCY} '
        'WHERE "idempotency_key" IS NOT NULL'
    )


def down(migrator, db):
    db.execute_sql('DROP INDEX "execution_owner_id_idempotency_key"')
    db.execute_sql(f'CREATE UNIQUE INDEX "execution_owner_id_idempotency_key" ON {IDEMPOTENCY}')
    if _sqlite(db):
        _replace_events(db, SQLITE_NUMBERED, "execution_event_numbered")
    else:
        db.execute_sql('ALTER TABLE "execution_event" DROP CONSTRAINT "execution_event_pkey"')
        db.execute_sql('ALTER TABLE "execution_event" ADD COLUMN "id" SERIAL PRIMARY KEY')
    db.execute_sql(
        'CREATE UNIQUE INDEX "execution_event_execution_id_seq" '
        'ON "execution_event" ("execution_id", "seq")'
    )
