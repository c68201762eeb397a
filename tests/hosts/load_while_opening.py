# Threads keep opening, writing and closing their own databases while the main thread loads
# the extension: the load wraps the default VFS in place, under opens in flight. Nothing may
# fail or crash; the databases opened after the load replicate.
import os
import sqlite3
import threading

LIB = os.environ["REPLICA_TEST_LIB"]
WRITERS = 3
done = [0] * WRITERS
errors = []
stop = threading.Event()
progress = threading.Condition()


def writer(i):
    try:
        while not stop.is_set():
            db = sqlite3.connect(f"t{i}.db", isolation_level=None)
            db.execute("CREATE TABLE IF NOT EXISTS t(n INTEGER, v TEXT)")
            db.execute("BEGIN")
            db.execute("INSERT INTO t VALUES (?, ?)", (done[i], "x" * 300))
            db.execute("COMMIT")
            db.close()
            with progress:
                done[i] += 1
                progress.notify_all()
    except Exception as e:  # reported below; the test fails on any
        errors.append(f"writer {i}: {e!r}")
        with progress:
            progress.notify_all()


def wait_for_each(n):
    with progress:
        ok = progress.wait_for(lambda: errors or min(done) >= n, timeout=60)
    if not ok:
        errors.append(f"the writers did not reach {n} commits each within 60 s: {done}")


threads = [threading.Thread(target=writer, args=(i,)) for i in range(WRITERS)]
for t in threads:
    t.start()
wait_for_each(20)
boot = sqlite3.connect(":memory:")
boot.enable_load_extension(True)
boot.load_extension(LIB)
loaded_at = list(done)
wait_for_each(max(loaded_at) + 40)
stop.set()
for t in threads:
    t.join()
print("errors", errors, flush=True)
print("commits", all(d > a for d, a in zip(done, loaded_at)), flush=True)
for i in range(WRITERS):
    db = sqlite3.connect(f"t{i}.db")
    print(f"integrity{i}", db.execute("PRAGMA integrity_check").fetchone()[0], flush=True)
    print(f"rows{i}", db.execute("SELECT count(*) = ? FROM t", (done[i],)).fetchone()[0], flush=True)
    db.close()
boot.execute("SELECT replica_sync(20000)").fetchone()
print("status", sorted(boot.execute("SELECT name, state FROM replica_status()").fetchall()), flush=True)
