# Run with REPLICA_DEFAULT_VFS=0. Loading twice is harmless; a plain open does not replicate,
# an ATTACHed database opened after the load with ?vfs=replica (and put in WAL mode) does;
# replica_sync() on a connection whose main database does not replicate waits for every
# database.
import os
import sqlite3

LIB = os.environ["REPLICA_TEST_LIB"]

boot = sqlite3.connect(":memory:")
boot.enable_load_extension(True)
boot.load_extension(LIB)
boot.load_extension(LIB)
other = sqlite3.connect(":memory:")
other.enable_load_extension(True)
other.load_extension(LIB)
print("version", other.execute("SELECT substr(replica_version(), 1, 10)").fetchone()[0], flush=True)

db = sqlite3.connect("file:app.db", uri=True, isolation_level=None)
print("main_journal", db.execute("PRAGMA main.journal_mode").fetchone()[0], flush=True)
db.execute("ATTACH 'file:side.db?vfs=replica' AS side")
print("side_status", db.execute("SELECT name FROM replica_status()").fetchall(), flush=True)
# Only connections' main databases are switched to WAL at open; an attached one is switched
# here, as the README says replicated databases must be in WAL mode.
print("side_journal", db.execute("PRAGMA side.journal_mode=WAL").fetchone()[0], flush=True)
print("initial", boot.execute("SELECT replica_sync(10000)").fetchone()[0], flush=True)
db.execute("CREATE TABLE main.t(x)")
db.execute("INSERT INTO main.t VALUES ('main')")
db.execute("BEGIN")
db.execute("CREATE TABLE side.s(x, y)")
db.executemany("INSERT INTO side.s VALUES (?, ?)", [(i, f"side-{i}") for i in range(300)])
db.execute("COMMIT")
print("sync", boot.execute("SELECT replica_sync(10000)").fetchone()[0], flush=True)
print("status", db.execute("SELECT name, state FROM replica_status()").fetchall(), flush=True)
print("restored", db.execute("SELECT replica_restore('side.db', 'side-restored.db')").fetchone()[0], flush=True)
try:
    db.execute("SELECT replica_restore('app.db', 'app-restored.db')").fetchone()
    print("app_restore", "succeeded", flush=True)
except sqlite3.Error as e:
    print("app_restore", e, flush=True)
r = sqlite3.connect("side-restored.db")
print("side_rows", r.execute("SELECT count(*), max(y) FROM s").fetchone(), flush=True)
