# An ATTACHed database opened with ?vfs=replica stays in its rollback-journal mode (only a
# connection's main database is switched to WAL at open). Whatever the extension does about
# it, it must not report a commit as replicated when it is not: if replica_sync() succeeds,
# the replica must hold the commit.
import os
import sqlite3

boot = sqlite3.connect(":memory:")
boot.enable_load_extension(True)
boot.load_extension(os.environ["REPLICA_TEST_LIB"])

db = sqlite3.connect("file:app.db", uri=True, isolation_level=None)
db.execute("ATTACH 'file:side.db?vfs=replica' AS side")
print("side_journal", db.execute("PRAGMA side.journal_mode").fetchone()[0], flush=True)
db.execute("CREATE TABLE side.s(x)")


def sync():
    try:
        return str(boot.execute("SELECT replica_sync(1000)").fetchone()[0])
    except sqlite3.Error as e:
        return f"error: {e}"


print("sync1", sync(), flush=True)
db.execute("INSERT INTO side.s VALUES ('after the first sync')")
print("sync2", sync(), flush=True)
print("status", db.execute("SELECT state, local_txid, replicated_txid, pending_txns, last_error FROM replica_status()").fetchall(), flush=True)
try:
    print("restored", db.execute("SELECT replica_restore('side.db', 'side-restored.db')").fetchone()[0], flush=True)
    r = sqlite3.connect("file:side-restored.db?replica=off", uri=True)
    print("restored_rows", r.execute("SELECT count(*) FROM s").fetchone()[0], flush=True)
except sqlite3.Error as e:
    print("restored", f"error: {e}", flush=True)
print("source_rows", db.execute("SELECT count(*) FROM side.s").fetchone()[0], flush=True)
