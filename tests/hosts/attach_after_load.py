# A connection opened before the load, the extension loaded into it, then a WAL database
# ATTACHed to it: the attached database is adopted at its first commit (the connection's
# files come through its own VFS, never the replica VFS) and replicates like the main one.
import os
import sqlite3

LIB = os.environ["REPLICA_TEST_LIB"]

# other.db exists in WAL mode before the extension is in the process.
o = sqlite3.connect("other.db", isolation_level=None)
o.execute("PRAGMA journal_mode=WAL")
o.execute("CREATE TABLE u(x INTEGER PRIMARY KEY, v TEXT)")
o.close()

db = sqlite3.connect("app.db", isolation_level=None)
db.execute("PRAGMA journal_mode=WAL")
db.execute("CREATE TABLE t(x)")
db.enable_load_extension(True)
db.load_extension(LIB)
db.enable_load_extension(False)
db.execute("INSERT INTO t VALUES (1)")
db.execute("ATTACH 'other.db' AS o")
for i in range(10):
    db.execute("BEGIN")
    db.executemany("INSERT INTO o.u(v) VALUES (?)", [(f"row-{i}-{j}",) for j in range(30)])
    db.execute("COMMIT")
names = sorted(r[0] for r in db.execute("SELECT name FROM replica_status()"))
print("status", ",".join(names), flush=True)
everything = sqlite3.connect(":memory:")
print("synced", everything.execute("SELECT replica_sync(10000)").fetchone()[0] > 0, flush=True)
everything.execute("SELECT replica_restore('other.db', 'other-restored.db')").fetchone()
r = sqlite3.connect("other-restored.db")
print("restored", *r.execute("SELECT count(*), max(v) FROM u").fetchone(), flush=True)
