# Forks right after committing, as a preforking server's master may while the extension's
# threads (capture, uploader) are still at work on those commits: each child opens the
# database and reads it, and must be done within a deadline. A lock one of those threads
# held at the fork (the extension's database registry, SQLite's allocator mutex) would be
# held for ever in the child, which has only the thread that forked. tests/hosts.rs checks
# that none hung.
import os
import sqlite3
import time

LIB = os.environ["REPLICA_TEST_LIB"]
FORKS = 200
CHILD_DEADLINE_S = 10

boot = sqlite3.connect(":memory:")
boot.enable_load_extension(True)
boot.load_extension(LIB)

db = sqlite3.connect("app.db", isolation_level=None)
db.execute("CREATE TABLE t(x)")


def wait_for(pid):
    """True once the child exited 0; False if it is still running at the deadline."""
    deadline = time.monotonic() + CHILD_DEADLINE_S
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status) == 0
        time.sleep(0.001)  # a step of the deadline loop
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return False


stuck = 0
for i in range(FORKS):
    # Commits wake the capture thread, the first of a batch the uploader.
    for k in range(i % 7):
        db.execute("INSERT INTO t VALUES (?)", (i,))
    pid = os.fork()
    if pid == 0:
        c = sqlite3.connect("app.db", isolation_level=None)
        c.execute("SELECT count(*) FROM t").fetchone()
        os._exit(0)
    if not wait_for(pid):
        stuck += 1
print("forks", FORKS, flush=True)
print("stuck", stuck, flush=True)
