"""Execution events keep one index, the unique ``(execution_id, seq)``: the foreign key's
own index on ``execution_id`` repeated that one's first column, and every streamed token
paid for writing both."""


def up(migrator, db):
    migrator.migrate(migrator.drop_index("execution_event", "execution_event_execution_id"))


def down(migrator, db):
    migrator.migrate(migrator.add_index("execution_event", ("execution_id",), False))
