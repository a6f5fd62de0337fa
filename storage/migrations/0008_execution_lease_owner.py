"""Fencing of execution leases: the row names the process holding its lease, so a worker
whose run was adopted by another (it stalled past the stale time) stops writing to it."""

from peewee import CharField


def up(migrator, db):
    migrator.migrate(
        migrator.add_column("execution", "lease_owner", CharField(max_length=16, null=True))
    )


def down(migrator, db):
    migrator.migrate(migrator.drop_column("execution", "lease_owner"))
