# Two connections in one process: A, the app's connection, opened before the load (the
# extension is loaded into it), and B opened after the load. A commits right after B opens,
# then they take turns; both write every other transaction.
import sqlite3
from hostlib import PER_TXN, ROWS, SCHEMA, SO, out, report, write_txn

a = sqlite3.connect("app.db", isolation_level=None, timeout=30)
a.enable_load_extension(True)
a.load_extension(SO)
a.execute(SCHEMA)
b = sqlite3.connect("app.db", isolation_level=None, timeout=30)


def on(conn):
    return lambda sql, params=(): conn.execute(sql, params).fetchall()


for i, first in enumerate(range(0, ROWS, PER_TXN)):
    write_txn(on(a if i % 2 == 0 else b), "pair-" + "ab"[i % 2], first, PER_TXN)
out("journal_mode_b", b.execute("PRAGMA journal_mode").fetchone()[0])
report(on(a))
