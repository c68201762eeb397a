# A bank-transfer writer for tests/multiprocess.rs: moves money between accounts (the total
# is invariant) and records each transfer in a ledger. Usage:
#   bank.py setup
#   bank.py write NAME SEED sync|async [fork]
# A writer in sync mode appends the id of every transfer whose COMMIT returned to
# acks-NAME.txt (only then: a COMMIT that failed or was not confirmed is not acknowledged).
# With `fork`, the process forks two children after its first transfers; they write too,
# and stop when their parent is gone. Writers run until killed.
import os, random, sqlite3, sys

boot = sqlite3.connect(":memory:")
boot.enable_load_extension(True)
boot.load_extension(os.environ["REPLICA_TEST_LIB"])

ACCOUNTS = 50

if sys.argv[1] == "setup":
    db = sqlite3.connect("app.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=wal")
    db.execute("CREATE TABLE accounts(id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)")
    db.execute("CREATE TABLE ledger(id TEXT PRIMARY KEY, src INTEGER, dst INTEGER, amount INTEGER)")
    db.execute("BEGIN")
    for i in range(ACCOUNTS):
        db.execute("INSERT INTO accounts VALUES (?, 1000)", (i,))
    db.execute("COMMIT")
    print("setup", db.execute("SELECT replica_sync(10000)").fetchone()[0], flush=True)
    sys.exit(0)

name, seed, mode = sys.argv[2], int(sys.argv[3]), sys.argv[4]
forking = len(sys.argv) > 5 and sys.argv[5] == "fork"

# Dies with the test that started it (SIGKILL when its parent goes, however the test
# ends); forked children do not inherit this, and stop by themselves once their parent
# is gone (see run).
import ctypes, signal
started_by = os.getppid()
ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
if os.getppid() != started_by:
    os._exit(0)


def connect():
    uri = "file:app.db?replica_sync=commit&replica_sync_timeout=10000" if mode == "sync" else "file:app.db"
    c = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=30)
    c.execute("PRAGMA busy_timeout=30000")
    return c


def run(tag, rng, parent=None):
    c = connect()
    acks = open(f"acks-{name}.txt", "a") if mode == "sync" else None
    n = 0
    while True:
        if parent is not None and os.getppid() != parent:
            os._exit(0)  # the parent was killed: stop with it
        n += 1
        tid = f"{tag}-{os.getpid()}-{n}"
        a, b = rng.sample(range(ACCOUNTS), 2)
        amount = rng.randint(1, 50)
        try:
            c.execute("BEGIN IMMEDIATE")
            c.execute("UPDATE accounts SET balance = balance - ? WHERE id = ?", (amount, a))
            c.execute("UPDATE accounts SET balance = balance + ? WHERE id = ?", (amount, b))
            c.execute("INSERT INTO ledger VALUES (?, ?, ?, ?)", (tid, a, b, amount))
            c.execute("COMMIT")
        except sqlite3.Error:
            if c.in_transaction:
                try:
                    c.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            continue
        if acks is not None:
            acks.write(tid + "\n")
            acks.flush()  # in the kernel before the next transfer: survives kill -9


rng = random.Random(seed)
if forking:
    c = connect()
    c.execute("BEGIN IMMEDIATE")  # write before forking, as a preloading app server does
    c.execute("UPDATE accounts SET balance = balance - 1 WHERE id = 0")
    c.execute("UPDATE accounts SET balance = balance + 1 WHERE id = 1")
    c.execute("COMMIT")
    c.close()
    children = []
    for k in range(2):
        pid = os.fork()
        if pid == 0:
            run(f"{name}c{k}", random.Random(seed * 10 + k), parent=os.getppid())
        children.append(pid)
    print("children", *children, flush=True)
print("writing", flush=True)
run(name, rng)
