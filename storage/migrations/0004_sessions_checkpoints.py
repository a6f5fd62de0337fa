"""Conversations: sessions, their messages and tool calls, session templates, and the
checkpoints every run step stores; executions learn which session turn they are."""

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

    class SessionTemplate(Base):
        id = CharField(primary_key=True, max_length=40)
        owner = ForeignKeyField(User, on_delete="CASCADE")
        name = CharField(max_length=128)
        description = TextField(default="")
        category = CharField(max_length=64, null=True, index=True)
        sdk_options = TextField()
        default_mode = CharField(max_length=16, default="interactive")
        is_public = BooleanField(default=False, index=True)
        created_at = DateTimeField(default=datetime.datetime.utcnow, index=True)
        updated_at = DateTimeField(default=datetime.datetime.utcnow)

    class Session(Base):
        id = CharField(primary_key=True, max_length=40)
        owner = ForeignKeyField(User, on_delete="CASCADE")
        name = CharField(max_length=128)
        agent_id = CharField(max_length=40, null=True)
        mode = CharField(max_length=16, default="interactive")
        status = CharField(max_length=16, default="created", index=True)
        sdk_options = TextField()
        template_id = CharField(max_length=40, null=True)
        parent_session_id = CharField(max_length=40, null=True)
        is_fork = BooleanField(default=False)
        working_directory_path = TextField()
        current_run_id = CharField(max_length=40, null=True)
        total_messages = IntegerField(default=0)
        total_tool_calls = IntegerField(default=0)
        total_cost_usd = FloatField(default=0.0)
        api_input_tokens = IntegerField(default=0)
        api_output_tokens = IntegerField(default=0)
        archive_id = CharField(max_length=40, null=True)
        archive_path = TextField(null=True)
        archive_size_bytes = IntegerField(null=True)
        archive_file_count = IntegerField(null=True)
        created_at = DateTimeField(default=datetime.datetime.utcnow, index=True)
        started_at = DateTimeField(null=True)
        last_activity_at = DateTimeField(null=True)
        completed_at = DateTimeField(null=True)

    class SessionMessage(Base):
        id = CharField(primary_key=True, max_length=40)
        session = ForeignKeyField(Session, on_delete="CASCADE")
        sequence_number = IntegerField()
        message_type = CharField(max_length=16)
        content = TextField()
        model = CharField(max_length=128, null=True)
        run_id = CharField(max_length=40, null=True, index=True)
        created_at = DateTimeField(default=datetime.datetime.utcnow)

        class Meta:
            indexes = ((("session", "sequence_number"), True),)

    class SessionToolCall(Base):
        id = CharField(primary_key=True, max_length=40)
        session = ForeignKeyField(Session, on_delete="CASCADE")
        run_id = CharField(max_length=40, index=True)
        call_id = CharField(max_length=128)
        tool_name = CharField(max_length=64)
        tool_input = TextField()
        tool_output = TextField(null=True)
        status = CharField(max_length=16)
        duration_ms = IntegerField(null=True)
        created_at = DateTimeField(default=datetime.datetime.utcnow, index=True)

    class Checkpoint(Base):
        id = CharField(primary_key=True, max_length=40)
        execution = ForeignKeyField(Execution, on_delete="CASCADE")
        session_id = CharField(max_length=40, null=True, index=True)
        step = IntegerField()
        state = TextField()
        created_at = DateTimeField(default=datetime.datetime.utcnow)

        class Meta:
            indexes = ((("execution", "step"), True),)

    db.create_tables([SessionTemplate, Session, SessionMessage, SessionToolCall, Checkpoint])
    migrator.migrate(
        migrator.add_column("execution", "session_id", CharField(max_length=40, null=True)),
        migrator.add_column("execution", "restored_from", CharField(max_length=40, null=True)),
        migrator.add_index("execution", ("session_id",), False),
    )


def down(migrator, db):
    migrator.migrate(
        migrator.drop_index("execution", "execution_session_id"),
        migrator.drop_column("execution", "session_id"),
        migrator.drop_column("execution", "restored_from"),
    )
    for table in (
        "checkpoint",
        "session_tool_call",
        "session_message",
        "session",
        "session_template",
    ):
        db.execute_sql(f'DROP TABLE IF EXISTS "{table}"')
