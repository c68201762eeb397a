# apsw (from PyPI, with a SQLite of its own): open the app's database, then load the
# extension into that connection.
import apsw
from hostlib import SO, out, report, write_rows

db = apsw.Connection("app.db")
db.enable_load_extension(True)
db.load_extension(SO)
out("sqlite_version", apsw.sqlite_lib_version())


def execute(sql, params=()):
    return list(db.execute(sql, params))


write_rows(execute, "apsw")
report(execute)
