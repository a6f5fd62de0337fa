"""Agents get tags: a JSON list of short lowercase labels, empty for existing agents."""

from peewee import TextField


def up(migrator, db):
    migrator.migrate(migrator.add_column("agent", "tags", TextField(default="[]")))


def down(migrator, db):
    migrator.migrate(migrator.drop_column("agent", "tags"))
