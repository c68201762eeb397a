# Replicate and restore from Debian's python3 sqlite3 module: load on a throwaway :memory:
# connection, then open the real database. Prints key=value lines for tests/hosts.rs.
import datetime
import os
import sqlite3
import time

LIB = os.environ["REPLICA_TEST_LIB"]


def out(key, value):
    print(f"{key}={value}", flush=True)


def now_ms():
    return time.time_ns() // 1_000_000


boot = sqlite3.connect(":memory:")
boot.enable_load_extension(True)
boot.load_extension(LIB)
boot.enable_load_extension(False)

db = sqlite3.connect("app.db", isolation_level=None)
out("journal_mode", db.execute("PRAGMA journal_mode").fetchone()[0])
# The first upload is a snapshot of the new database; syncing before the first write makes
# the txids below independent of when the uploader takes it.
out("initial", db.execute("SELECT replica_sync(10000)").fetchone()[0])
db.execute("BEGIN")
db.execute("CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT NOT NULL, qty INTEGER, data BLOB)")
db.executemany(
    "INSERT INTO items(name, qty, data) VALUES (?, ?, ?)",
    [(f"item-{i}", i * 3, bytes([i % 256]) * (i % 50)) for i in range(1, 1001)],
)
db.execute("COMMIT")
out("sync1", db.execute("SELECT replica_sync(10000)").fetchone()[0])

db.execute("UPDATE items SET qty = qty + 1 WHERE id % 10 = 0")
out("sync2", db.execute("SELECT replica_sync(10000)").fetchone()[0])

# A point in time between txid 3 and txid 4: every commit of txid 3 was captured before
# `point`, and the clock moves past it (a wait on the clock, not on the extension) before
# txid 4 commits.
point = now_ms()
while now_ms() <= point:
    pass
db.execute("DELETE FROM items WHERE id > 900")
out("sync3", db.execute("SELECT replica_sync(10000)").fetchone()[0])

status = db.execute(
    "SELECT name, state, local_txid, replicated_txid, pending_txns, last_error FROM replica_status()"
).fetchall()
out("status", status)

stamp = datetime.datetime.fromtimestamp(point / 1000, tz=datetime.timezone.utc)
stamp = stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{point % 1000:03d}Z"
out("restored", db.execute("SELECT replica_restore('app.db', 'restored.db')").fetchone()[0])
out("restored_at_2", db.execute("SELECT replica_restore('app.db', 'at2.db', 2)").fetchone()[0])
out("restored_at_time", db.execute("SELECT replica_restore('app.db', 'at_time.db', ?)", (stamp,)).fetchone()[0])

try:
    db.execute("SELECT replica_restore('app.db', 'restored.db')").fetchone()
    out("second_restore", "succeeded")
except sqlite3.Error as e:
    out("second_restore", e)

COUNT = "SELECT count(*) || ' ' || sum(qty) FROM items"
out("rows app.db", db.execute(COUNT).fetchone()[0])
db.close()
for name in ["restored.db", "at2.db", "at_time.db"]:
    c = sqlite3.connect(f"file:{name}?replica=off", uri=True)
    out(f"rows {name}", c.execute(COUNT).fetchone()[0])
    c.close()
