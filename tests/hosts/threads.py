# Two connections in two threads write to the same database at the same time; then one
# replica_sync() and a restore. tests/hosts.rs compares the dumps.
import os
import sqlite3
import threading

LIB = os.environ["REPLICA_TEST_LIB"]
PER_THREAD = 150

boot = sqlite3.connect(":memory:")
boot.enable_load_extension(True)
boot.load_extension(LIB)

setup = sqlite3.connect("app.db", isolation_level=None)
print("initial", setup.execute("SELECT replica_sync(10000)").fetchone()[0], flush=True)
setup.execute("BEGIN")
setup.execute("CREATE TABLE log(id INTEGER PRIMARY KEY, writer TEXT NOT NULL, seq INTEGER NOT NULL, body TEXT)")
setup.execute("CREATE TABLE counters(writer TEXT PRIMARY KEY, n INTEGER NOT NULL)")
setup.execute("COMMIT")
print("first_sync", setup.execute("SELECT replica_sync(10000)").fetchone()[0], flush=True)

start = threading.Barrier(2)
errors = []


def writer(name):
    try:
        conn = sqlite3.connect("app.db", isolation_level=None, timeout=60)
        start.wait()
        for i in range(PER_THREAD):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO log(writer, seq, body) VALUES (?, ?, ?)", (name, i, name * (i % 40)))
            conn.execute(
                "INSERT INTO counters VALUES (?, 1) ON CONFLICT(writer) DO UPDATE SET n = n + 1", (name,)
            )
            if i % 50 == 49:
                conn.execute("DELETE FROM log WHERE writer = ? AND seq % 7 = 0", (name,))
            conn.execute("COMMIT")
        conn.close()
    except Exception as e:  # reported below; the test fails on it
        errors.append(f"{name}: {e!r}")


threads = [threading.Thread(target=writer, args=(n,)) for n in ("a", "b")]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("errors", errors, flush=True)

txid = setup.execute("SELECT replica_sync(10000)").fetchone()[0]
print("txid", txid, flush=True)
print("status", setup.execute("SELECT state, local_txid - replicated_txid, pending_txns, last_error FROM replica_status()").fetchall(), flush=True)
print("restored", setup.execute("SELECT replica_restore('app.db', 'restored.db')").fetchone()[0], flush=True)
print("counters", setup.execute("SELECT writer, n FROM counters ORDER BY writer").fetchall(), flush=True)
setup.close()
