"""Each user's session count, and the count and sum of their cost records, kept in
``row_count`` like agents' and executions' counts (0006): the sessions list's ``total``
and the costs list's ``total_cost`` read one row instead of scanning every one."""

from peewee import FloatField


def up(migrator, db):
    migrator.migrate(migrator.add_column("row_count", "amount", FloatField(default=0.0)))
    db.execute_sql(
        'INSERT INTO "row_count" ("owner_id", "kind", "n", "amount") '
        'SELECT "owner_id", \'session\', COUNT(*), 0 FROM "session" GROUP BY "owner_id"'
    )
    db.execute_sql(
        'INSERT INTO "row_count" ("owner_id", "kind", "n", "amount") '
        'SELECT "owner_id", \'cost\', COUNT(*), SUM("cost_usd") FROM "cost_record" '
        'GROUP BY "owner_id"'
    )


def down(migrator, db):
    db.execute_sql("DELETE FROM \"row_count\" WHERE \"kind\" IN ('session', 'cost')")
    migrator.migrate(migrator.drop_column("row_count", "amount"))
