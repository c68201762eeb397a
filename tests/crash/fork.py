# A process that replicates app.db forks; the child writes to app.db (capture stays with the
# parent, whose next commit takes the child's along) and replicates a database of its own.
import os, sqlite3
boot = sqlite3.connect(":memory:")
boot.enable_load_extension(True)
boot.load_extension(os.environ["REPLICA_TEST_LIB"])
db = sqlite3.connect("app.db", isolation_level=None)
db.execute("CREATE TABLE t(x)")
db.execute("INSERT INTO t VALUES ('parent-1')")
print("parent_sync", db.execute("SELECT replica_sync(10000)").fetchone()[0], flush=True)
pid = os.fork()
if pid == 0:
    code = 0
    try:
        c = sqlite3.connect("app.db", isolation_level=None)
        c.execute("INSERT INTO t VALUES ('child-1')")
        # The parent ships the child's commit (it takes it from the shared WAL): the child's
        # sync waits for that, as a standby process's does.
        try:
            print("child_sync", c.execute("SELECT replica_sync(10000)").fetchone()[0], flush=True)
            print("child_verify", c.execute("SELECT replica_verify()").fetchone()[0], flush=True)
            row = c.execute("SELECT state, replicated_txid FROM replica_status() WHERE name = 'app.db'").fetchone()
            print("child_status", *row, flush=True)
        except sqlite3.Error as e:
            print("child_sync_error", e, flush=True)
            code = 1
        own = sqlite3.connect("child.db", isolation_level=None)
        own.execute("CREATE TABLE c(y)")
        own.execute("INSERT INTO c VALUES (42)")
        print("child_db_sync", own.execute("SELECT replica_sync(10000)").fetchone()[0], flush=True)
    except Exception as e:
        print("child_failed", e, flush=True)
        code = 1
    os._exit(code)
_, status = os.waitpid(pid, 0)
print("child_exit", status, flush=True)
db.execute("INSERT INTO t VALUES ('parent-2')")
print("parent_sync", db.execute("SELECT replica_sync(10000)").fetchone()[0], flush=True)
db.execute("SELECT replica_restore('app.db', 'r.db')").fetchone()
print("restored", sqlite3.connect("r.db").execute("SELECT group_concat(x) FROM t").fetchone()[0], flush=True)
db.execute("SELECT replica_restore('child.db', 'r2.db')").fetchone()
print("restored_child", sqlite3.connect("r2.db").execute("SELECT y FROM c").fetchone()[0], flush=True)
