# Debian's python3: the app opens its database, then loads the extension into that same
# connection (the idiom of Python apps and of datasette's --load-extension).
import sqlite3
from hostlib import SO, report, write_rows

db = sqlite3.connect("app.db", isolation_level=None)
db.enable_load_extension(True)
db.load_extension(SO)
db.enable_load_extension(False)


def execute(sql, params=()):
    return db.execute(sql, params).fetchall()


write_rows(execute, "python3")
report(execute)
