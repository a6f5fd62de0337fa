"""Seed 002: hierarchical jobs, their workers (each one execution), and per-user quotas of
concurrent workers per depth (each job's grant, and each user's sum per depth)."""

import datetime

from peewee import (
    CharField,
    CompositeKey,
    DateTimeField,
    ForeignKeyField,
    IntegerField,
    Model,
    TextField,
)


def up(migrator, db):
    class Base(Model):
        class Meta:
            database = db
            legacy_table_names = False

    class User(Base):
        id = CharField(primary_key=True, max_length=40)

    class Job(Base):
        id = CharField(primary_key=True, max_length=40)
        owner = ForeignKeyField(User, on_delete="CASCADE")
        task_description = TextField()
        worker_count = IntegerField()
        depth = IntegerField()
        parent_job_id = CharField(max_length=40, null=True, index=True)
        agent_id = CharField(max_length=40, null=True)
        agent_name = CharField(max_length=64)
        config = TextField()
        inputs = TextField()
        workspace_id = CharField(max_length=40)
        status = CharField(max_length=16, default="PENDING", index=True)
        error = TextField(null=True)
        created_at = DateTimeField(default=datetime.datetime.utcnow)
        updated_at = DateTimeField(default=datetime.datetime.utcnow)
        completed_at = DateTimeField(null=True)

        class Meta:
            indexes = ((("owner", "created_at", "id"), False),)

    class Worker(Base):
        id = CharField(primary_key=True, max_length=40)
        owner = ForeignKeyField(User, on_delete="CASCADE")
        job = ForeignKeyField(Job, on_delete="CASCADE")
        slot = IntegerField()
        attempt = IntegerField(default=0)
        workspace_id = CharField(max_length=40)
        execution_id = CharField(max_length=40)
        status = CharField(max_length=16, default="IDLE", index=True)
        created_at = DateTimeField(default=datetime.datetime.utcnow)
        updated_at = DateTimeField(default=datetime.datetime.utcnow)

        class Meta:
            indexes = (
                (("job", "slot", "attempt"), True),
                (("owner", "created_at", "id"), False),
            )

    class QuotaUsage(Base):
        owner = ForeignKeyField(User, on_delete="CASCADE")
        depth = IntegerField()
        allocated = IntegerField(default=0)

        class Meta:
            primary_key = CompositeKey("owner", "depth")

    class Allocation(Base):
        job = ForeignKeyField(Job, on_delete="CASCADE")
        depth = IntegerField()
        owner = ForeignKeyField(User, on_delete="CASCADE")
        granted = IntegerField(default=0)

        class Meta:
            primary_key = CompositeKey("job", "depth")

    db.create_tables([Job, Worker, QuotaUsage, Allocation])


def down(migrator, db):
    for table in ("allocation", "quota_usage", "worker", "job"):
        db.execute_sql(f'DROP TABLE IF EXISTS "{table}"')
