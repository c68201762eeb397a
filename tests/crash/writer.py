# Commits rows forever (bounded) until killed; prints "committed N" after each commit so the
# test can kill it at a chosen point. Seeded by argv[1].
import os, random, sqlite3, sys
rng = random.Random(int(sys.argv[1]))
boot = sqlite3.connect(":memory:")
boot.enable_load_extension(True)
boot.load_extension(os.environ["REPLICA_TEST_LIB"])
db = sqlite3.connect("app.db", isolation_level=None, timeout=30)
db.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v BLOB)")
db.execute("PRAGMA cache_size=20")
n = 0
for i in range(100000):
    big = rng.random() < 0.05
    db.execute("BEGIN")
    for _ in range(rng.randrange(1, 200 if big else 5)):
        db.execute("INSERT INTO t(v) VALUES (?)", (rng.randbytes(rng.randrange(10, 3000)),))
    if rng.random() < 0.2:
        db.execute("DELETE FROM t WHERE id % 7 = ?", (rng.randrange(7),))
    db.execute("COMMIT")
    if rng.random() < 0.03:
        db.execute("PRAGMA wal_checkpoint(" + rng.choice(["PASSIVE", "RESTART", "TRUNCATE"]) + ")")
    n += 1
    print("committed", n, flush=True)
