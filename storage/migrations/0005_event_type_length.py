"""Event types up to 32 characters: ``approval_required`` (17) did not fit in 16 on
PostgreSQL, which enforces the length (SQLite does not)."""

from peewee import CharField


def up(migrator, db):
    migrator.migrate(
        migrator.alter_column_type("execution_event", "type", CharField(max_length=32))
    )


def down(migrator, db):
    migrator.migrate(
        migrator.alter_column_type("execution_event", "type", CharField(max_length=16))
    )
