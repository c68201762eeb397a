# apsw (from PyPI, with a SQLite of its own): a VFS of the app's own, written in Python over
# the default VFS (registered before the load, so it wraps the default the load then wraps in
# place), opens the app's database after the load. apsw hands its own copies of the log and
# journal names down to the default VFS, not SQLite's.
import apsw
from hostlib import SO, out, report, write_rows


class AppVfs(apsw.VFS):
    def __init__(self):
        super().__init__("appvfs", "")

    def xOpen(self, name, flags):
        return AppFile("", name, flags)


class AppFile(apsw.VFSFile):
    def __init__(self, base, name, flags):
        super().__init__(base, name, flags)


vfs = AppVfs()
boot = apsw.Connection(":memory:")
boot.enable_load_extension(True)
boot.load_extension(SO)
db = apsw.Connection("app.db", vfs="appvfs")
db.execute("PRAGMA journal_mode=WAL")
out("sqlite_version", apsw.sqlite_lib_version())


def execute(sql, params=()):
    return list(db.execute(sql, params))


write_rows(execute, "apsw-vfs")
report(execute)
