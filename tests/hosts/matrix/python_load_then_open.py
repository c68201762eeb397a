# The control of tests/host_matrix.rs: the same workload and checks, with the extension
# loaded on a throwaway connection before the app opens its database (the order that
# replicates today). When this passes and the open-then-load hosts fail, the load order is
# what they are missing, not the harness.
import sqlite3
from hostlib import SO, report, write_rows

boot = sqlite3.connect(":memory:")
boot.enable_load_extension(True)
boot.load_extension(SO)
db = sqlite3.connect("app.db", isolation_level=None)


def execute(sql, params=()):
    return db.execute(sql, params).fetchall()


write_rows(execute, "python3-control")
report(execute)
