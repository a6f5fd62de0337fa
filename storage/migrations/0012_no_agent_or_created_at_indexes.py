"""Three more indexes every execution paid to write and no query used (a page more in the
write-ahead log of each transaction inserting the row):

- ``execution_agent_id`` and ``cost_record_agent_id``: the one filter on ``agent_id``
  matches an agent's id or its name (``agent_id = ? OR agent_name = ?``), which no
  index on one of the two serves; it runs within one owner's rows, through the indexes
  that lead with ``owner_id``;
- ``execution_created_at``: executions are only listed per owner, newest first, which
  ``(owner_id, created_at, id)`` serves whole; a session's turns are ordered within the
  session, found by ``execution_session_id``.
"""


def up(migrator, db):
    migrator.migrate(
        migrator.drop_index("execution", "execution_agent_id"),
        migrator.drop_index("execution", "execution_created_at"),
        migrator.drop_index("cost_record", "cost_record_agent_id"),
    )


def down(migrator, db):
    migrator.migrate(
        migrator.add_index("cost_record", ("agent_id",), False),
        migrator.add_index("execution", ("created_at",), False),
        migrator.add_index("execution", ("agent_id",), False),
    )
