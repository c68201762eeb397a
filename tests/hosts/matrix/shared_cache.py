# A shared-cache in-memory database opened before the load and again after it (datasette
# 0.65.5 keeps its internal catalog in one): both connections must see the same tables and
# rows, whichever wrote them. The extension is loaded into both, as datasette does.
import sqlite3
from hostlib import SO, out

URI = "file:matrix_shared?mode=memory&cache=shared"


def load(conn):
    conn.enable_load_extension(True)
    conn.load_extension(SO)


before = sqlite3.connect(URI, uri=True, isolation_level=None)
before.execute("CREATE TABLE catalog(name TEXT)")
before.execute("INSERT INTO catalog VALUES ('written before the load')")
load(before)
after = sqlite3.connect(URI, uri=True, isolation_level=None)
load(after)


def show(key, conn, sql):
    try:
        out(key, conn.execute(sql).fetchall())
    except sqlite3.Error as e:
        out(key, f"error: {type(e).__name__}: {e}")


show("tables_after", after, "SELECT name FROM sqlite_master")
show("rows_after", after, "SELECT name FROM catalog")
try:
    after.execute("INSERT INTO catalog VALUES ('written after the load')")
except sqlite3.Error as e:
    out("insert_after", f"error: {type(e).__name__}: {e}")
show("rows_before", before, "SELECT name FROM catalog ORDER BY rowid")
