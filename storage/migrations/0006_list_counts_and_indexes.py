"""Lists that stay fast at any size: each user's agent and execution counts kept in a
table, and indexes that serve each list's owner filter and order (and its cursor)."""

from peewee import CharField, CompositeKey, ForeignKeyField, IntegerField, Model


def up(migrator, db):
    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    class User(Base):
        id = CharField(primary_key=True, max_length=40)

    class RowCount(Base):
        owner = ForeignKeyField(User, on_delete="CASCADE")
        kind = CharField(max_length=32)
        n = IntegerField(default=0)

        class Meta:
            primary_key = CompositeKey("owner", "kind")

    db.create_tables([RowCount])
    for table in ("agent", "execution"):
        db.execute_sql(
            f'INSERT INTO "row_count" ("owner_id", "kind", "n") '
            f'SELECT "owner_id", \'{table}\', COUNT(*) FROM "{table}" GROUP BY "owner_id"'
        )
    migrator.migrate(
        migrator.add_index("agent", ("owner_id", "created_at", "id"), False),
        migrator.add_index("execution", ("owner_id", "created_at", "id"), False),
    )


def down(migrator, db):
    migrator.migrate(
        migrator.drop_index("agent", "agent_owner_id_created_at_id"),
        migrator.drop_index("execution", "execution_owner_id_created_at_id"),
    )
    db.execute_sql('DROP TABLE IF EXISTS "row_count"')
