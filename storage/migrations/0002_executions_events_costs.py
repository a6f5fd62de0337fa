"""Executions, their events, and cost records (frozen copies of the models as first shipped)."""

import datetime

from peewee import (
    BooleanField,
    CharField,
    DateTimeField,
    FloatField,
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

    class Execution(Base):
        id = CharField(primary_key=True, max_length=40)
        owner = ForeignKeyField(User, on_delete="CASCADE")
        agent_id = CharField(max_length=40, index=True)
        agent_name = CharField(max_length=64)
        task = TextField()
        mode = CharField(max_length=16)
        inputs = TextField()
        config = TextField()
        provider = CharField(max_length=32)
        model = CharField(max_length=128)
        cost_limit = FloatField(null=True)
        timeout = IntegerField(null=True)
        status = CharField(max_length=16, default="queued", index=True)
        stop_reason = CharField(max_length=32, null=True)
        result = TextField(null=True)
        error = TextField(null=True)
        prompt_tokens = IntegerField(default=0)
        completion_tokens = IntegerField(default=0)
        cost_usd = FloatField(default=0.0)
        steps = IntegerField(default=0)
        latency_ms = IntegerField(null=True)
        time_to_first_token_ms = IntegerField(null=True)
        idempotency_key = CharField(max_length=255, null=True)
        request_hash = CharField(max_length=64, null=True)
        control = CharField(max_length=16, null=True)
        heartbeat_at = DateTimeField(null=True)
        created_at = DateTimeField(default=datetime.datetime.utcnow, index=True)
        started_at = DateTimeField(null=True)
        completed_at = DateTimeField(null=True)

        class Meta:
            indexes = ((("owner", "idempotency_key"), True),)

    class ExecutionEvent(Base):
        execution = ForeignKeyField(Execution, on_delete="CASCADE")
        seq = IntegerField()
        type = CharField(max_length=16)
        data = TextField()
        created_at = DateTimeField(default=datetime.datetime.utcnow)

        class Meta:
            indexes = ((("execution", "seq"), True),)

    class CostRecord(Base):
        id = CharField(primary_key=True, max_length=40)
        owner = ForeignKeyField(User, on_delete="CASCADE")
        agent_id = CharField(max_length=40, index=True)
        agent_name = CharField(max_length=64)
        execution_id = CharField(max_length=40, index=True)
        provider = CharField(max_length=32)
        model = CharField(max_length=128)
        prompt_tokens = IntegerField()
        completion_tokens = IntegerField()
        cost_usd = FloatField()
        priced = BooleanField()
        timestamp = DateTimeField(default=datetime.datetime.utcnow, index=True)

    db.create_tables([Execution, ExecutionEvent, CostRecord])


def down(migrator, db):
    for table in ("execution_event", "cost_record", "execution"):
        db.execute_sql(f'DROP TABLE IF EXISTS "{table}"')
