# What the Python hosts of tests/host_matrix.rs share: the workload (1,000 rows in ten
# transactions of 100), the wait for the replica and the key=value report the test reads.
# Each host passes `execute(sql, params) -> list of rows` for its own connection.
import os

SO = os.environ["REPLICA_TEST_SO"]
ROWS, PER_TXN = 1000, 100
SCHEMA = "CREATE TABLE items(id INTEGER PRIMARY KEY, body TEXT NOT NULL)"


def out(key, value):
    print(f"{key}={value}", flush=True)


def body(host, n):
    # About 100 bytes a row: the ten transactions touch many pages, not one.
    return f"{host} row {n:04d} " + "x" * 80


def write_txn(execute, host, first, count):
    execute("BEGIN")
    for n in range(first, first + count):
        execute("INSERT INTO items(body) VALUES (?)", (body(host, n),))
    execute("COMMIT")


def write_rows(execute, host):
    execute(SCHEMA)
    for first in range(0, ROWS, PER_TXN):
        write_txn(execute, host, first, PER_TXN)


def report(execute):
    """Waits for the replica (replica_sync with a 30 s deadline) and prints what the test
    checks; an error is printed, never raised, so the test can say which step failed."""
    def show(key, sql, fmt=lambda rows: rows[0][0]):
        try:
            out(key, fmt(execute(sql)))
        except Exception as e:  # the host's own exception type: apsw, sqlite3, ...
            out(key, f"error: {type(e).__name__}: {e}")

    show("sync", "SELECT replica_sync(30000)")
    show("journal_mode", "PRAGMA journal_mode")
    show("status", "SELECT name, state, replicated_txid FROM replica_status()", repr)
    show("rows", "SELECT count(*) FROM items")
