"""Message ids commit in id order, so a board socket that has sent id N never meets a smaller id later.

Why (issue 11, item 2): the board consumer (consumers.BoardConsumer) sends each id once and in
ascending order, and skips ids at or below the last one it sent. On PostgreSQL, concurrent
writers draw ids from the sequence in one order and may commit in another: id 12 commits, its
broadcast arrives, the consumer fills the gap "from 11 to 12" from the database, finds only 12 (11
is not committed yet), sends it, and drops 11 when it commits a moment later. A socket opening at
that moment misses 11 the same way: its backlog query sees 12 but not 11.

Design: every message insert first takes one transaction-scoped PostgreSQL advisory lock
(`pg_advisory_xact_lock`), so inserts run one at a time from "take an id" to "commit". PostgreSQL
releases a transaction's locks only after its commit is visible to everyone
(CommitTransaction: ProcArrayEndTransaction, then ResourceOwnerRelease), so the next writer takes
its id only after the previous id is readable: the committed ids are always a prefix of the ids
handed out (a rolled-back insert leaves a hole that nothing will ever fill, which the gap fill
passes over). The consumer's rule "skip ids at or below the last sent" is then exact, and no
message waits for a reconnect.

SQLite needs nothing: its IMMEDIATE transactions (config/settings.py) take the database's single
write lock at BEGIN, which serializes writers the same way.

Cost: message inserts are serialized, one commit at a time (a commit's fsync, well under a
millisecond to a few milliseconds), which is the same ceiling SQLite has; other tables and readers
are not affected. Alternatives weighed: a per-board counter row updated under a row lock gives the
same serialization with more schema; a gap fill that waits for late commits
(pg_snapshot_xmin / "ids below the oldest running transaction") keeps inserts parallel but makes
every socket wait on the slowest writer and needs a timer per socket.
"""

from django.db import connections

# Key of the advisory lock ("message ids" as one 64-bit integer): PostgreSQL advisory locks are
# per database, so the key only has to differ from other advisory locks this app takes
# (board.management.commands.migrate.MIGRATE_LOCK).
MESSAGE_ID_LOCK = 0x6D65_7373_6167_6531  # b"message1"


def lock_message_ids(using: str = "default") -> None:
    """Take the lock that orders message commits, held until the current transaction ends.

    Call it inside transaction.atomic(), right before inserting a Message. A no-op on SQLite (its
    writers are serialized already). Raises RuntimeError outside a transaction, where the lock
    would be released at once and order nothing.
    """
    connection = connections[using]
    if connection.vendor != "postgresql":
        return
    if not connection.in_atomic_block:
        raise RuntimeError("lock_message_ids() must run inside transaction.atomic()")
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [MESSAGE_ID_LOCK])
