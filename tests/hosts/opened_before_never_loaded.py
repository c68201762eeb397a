# Connection A is opened before the load and never loaded into; B is opened after it. Both
# write in turn (A's log opens only after the load, through the wrapped default VFS): every
# commit reaches the replica, which restores equal, with one snapshot.
import os
import sqlite3

LIB = os.environ["REPLICA_TEST_LIB"]
init = sqlite3.connect("app.db", isolation_level=None)
init.execute("PRAGMA journal_mode=WAL")
init.execute("CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT)")
init.close()
a = sqlite3.connect("app.db", isolation_level=None)
boot = sqlite3.connect(":memory:")
boot.enable_load_extension(True)
boot.load_extension(LIB)
b = sqlite3.connect("app.db", isolation_level=None)
for r in range(200):
    c = a if r % 2 else b
    c.execute("BEGIN IMMEDIATE")
    for i in range(5):
        c.execute("INSERT INTO t(v) VALUES (?)", (f"{r}-{i}" + "x" * (r % 300),))
    if r % 7 == 0:
        c.execute("UPDATE t SET v = v || 'u' WHERE k % 5 = ?", (r % 5,))
    c.execute("COMMIT")
    if r % 50 == 49:
        boot.execute("SELECT replica_sync(20000)").fetchone()
a.close()
b.execute("SELECT replica_sync(20000)").fetchone()
print("status", b.execute("SELECT name, state FROM replica_status()").fetchall(), flush=True)
b.execute("SELECT replica_restore('app.db', 'restored.db')")
r = sqlite3.connect("file:restored.db?replica=off", uri=True)
same = list(r.execute("SELECT * FROM t ORDER BY k")) == list(b.execute("SELECT * FROM t ORDER BY k"))
print("same", same, flush=True)
print("integrity", r.execute("PRAGMA integrity_check").fetchone()[0], flush=True)
snapshots = os.listdir(os.path.join("replicas", "app.db", "ltx", "9"))
print("snapshots", len(snapshots), flush=True)
