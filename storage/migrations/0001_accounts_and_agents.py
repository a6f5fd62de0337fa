"""Accounts, refresh tokens and agents (frozen copies of the models as first shipped)."""

import datetime

from peewee import (
    BooleanField,
    CharField,
    DateTimeField,
    FloatField,
    ForeignKeyField,
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
        email = CharField(max_length=254, unique=True)
        username = CharField(max_length=64, unique=True)
        full_name = CharField(max_length=200, null=True)
        password_hash = CharField(max_length=255)
        role = CharField(max_length=16, default="user")
        is_active = BooleanField(default=True)
        created_at = DateTimeField(default=datetime.datetime.utcnow)
        last_login_at = DateTimeField(null=True)

    class RefreshToken(Base):
        id = CharField(primary_key=True, max_length=40)
        user = ForeignKeyField(User, on_delete="CASCADE")
        family = CharField(max_length=40, index=True)
        token_hash = CharField(max_length=64, unique=True)
        expires_at = DateTimeField()
        created_at = DateTimeField(default=datetime.datetime.utcnow)
        used_at = DateTimeField(null=True)
        revoked_at = DateTimeField(null=True)

    class Agent(Base):
        id = CharField(primary_key=True, max_length=40)
        owner = ForeignKeyField(User, on_delete="CASCADE")
        name = CharField(max_length=64)
        provider = CharField(max_length=32, null=True)
        model = CharField(max_length=128, null=True)
        temperature = FloatField(null=True)
        instructions = TextField(null=True)
        tools = TextField(null=True)
        parent = ForeignKeyField("self", null=True, on_delete="RESTRICT")
        status = CharField(max_length=16, default="active")
        created_at = DateTimeField(default=datetime.datetime.utcnow)
        updated_at = DateTimeField(default=datetime.datetime.utcnow)

        class Meta:
            indexes = ((("owner", "name"), True),)

    db.create_tables([User, RefreshToken, Agent])


def down(migrator, db):
    db.execute_sql('DROP TABLE IF EXISTS "agent"')
    db.execute_sql('DROP TABLE IF EXISTS "refresh_token"')
    db.execute_sql('DROP TABLE IF EXISTS "user"')
