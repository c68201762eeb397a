#!/usr/bin/python3
"""What the post-restore check costs: `replica_restore` of a database of about 1 GiB with
`quick` (PRAGMA quick_check) and with the default (PRAGMA integrity_check, which also
compares every index with its table), and each PRAGMA alone on the restored file.

Two shapes of database, each replicated by the extension to a file replica first:
  blobs    the bench's restore database: rows of 4000 random bytes, no index
  indexed  rows of about 250 bytes (an e-mail, a timestamp, a text body) with an index on
           the e-mail and one on the timestamp, in random order

Times are wall clock and CPU (user + system of the restoring process), medians of the
rounds. The databases are built once into --work and kept for later runs.

    make build && /usr/bin/python3 bench/restore_check.py [--mib 1024] [--rounds 2]
"""
import argparse, os, resource, sqlite3, statistics, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Per shape: the schema, a statement inserting the rows of `s`, and about what a row takes
# on disk (to insert in steps of a twentieth of the size asked for).
SHAPES = {
    "blobs": (
        "CREATE TABLE b(id INTEGER PRIMARY KEY, payload BLOB)",
        "INSERT INTO b(payload) SELECT randomblob(4000) FROM s",
        4100,
    ),
    "indexed": (
        "CREATE TABLE t(id INTEGER PRIMARY KEY, email TEXT, created INTEGER, body TEXT);"
        "CREATE INDEX t_email ON t(email); CREATE INDEX t_created ON t(created)",
        "INSERT INTO t(email, created, body) SELECT 'user' || abs(random() % 100000000) || "
        "'@example.com', 1700000000 + abs(random() % 100000000), hex(randomblob(90)) FROM s",
        280,
    ),
}

# Runs in a fresh python3 with the extension: restores argv[2] into argv[3] with options
# argv[4] ('' for the default), then runs argv[5] on the result (if given) and prints both
# times.
RESTORER = r'''
import sqlite3, sys, time
boot = sqlite3.connect(":memory:")
boot.enable_load_extension(True)
boot.load_extension(sys.argv[1])
t0 = time.perf_counter()
boot.execute("SELECT replica_restore(?, ?, NULL, ?)", (sys.argv[2], sys.argv[3], sys.argv[4] or None)).fetchone()
print(time.perf_counter() - t0)
'''

PRAGMA = r'''
import sqlite3, sys, time
c = sqlite3.connect("file:" + sys.argv[1] + "?immutable=1", uri=True)
c.execute("PRAGMA mmap_size=1099511627776")
t0 = time.perf_counter()
r = c.execute("PRAGMA " + sys.argv[2]).fetchone()[0]
assert r == "ok", r
print(time.perf_counter() - t0)
'''


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(cmd, env=None):
    """Runs cmd; its printed wall time and its CPU time."""
    before = children_cpu()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        sys.exit(f"{cmd[:3]} failed:\n{out.stdout}\n{out.stderr}")
    return float(out.stdout.strip().splitlines()[-1]), children_cpu() - before


def build(path, shape, mib):
    """A WAL database of about `mib` MiB of `shape`, built without the extension."""
    if os.path.exists(path) and os.path.getsize(path) >= mib * 2**20 * 0.95:
        return
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    schema, insert, row_bytes = SHAPES[shape]
    step = max(100, mib * 2**20 // row_bytes // 20)
    c = sqlite3.connect(path, isolation_level=None)
    c.execute("PRAGMA journal_mode=wal")
    c.execute("PRAGMA synchronous=off")
    c.executescript(schema)
    while os.path.getsize(path) + os.path.getsize(path + "-wal") < mib * 2**20:
        c.execute(f"WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {step}) {insert}")
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    c.close()


def replicate(work, name, so):
    """Ships the database's first snapshot to file://<work>/replicas/<name>."""
    url = f"file://{work}/replicas"
    if os.path.isdir(f"{work}/replicas/{name}"):
        return f"{url}/{name}"
    script = (
        "import sqlite3, sys\n"
        "boot = sqlite3.connect(':memory:'); boot.enable_load_extension(True); boot.load_extension(sys.argv[1])\n"
        f"db = sqlite3.connect({name!r}); print(db.execute('SELECT replica_sync(1800000)').fetchone()[0])\n"
    )
    env = dict(os.environ, REPLICA_URL=url, REPLICA_CONFIG="off")
    subprocess.run(["/usr/bin/python3", "-c", script, so], cwd=work, env=env, check=True,
                   capture_output=True)
    return f"{url}/{name}"


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--so", default=os.path.join(ROOT, "target/release/libreplica"))
    p.add_argument("--work", default="/tmp/libreplica-restore-check")
    p.add_argument("--mib", type=int, default=1024)
    p.add_argument("--rounds", type=int, default=2)
    a = p.parse_args()
    os.makedirs(a.work, exist_ok=True)
    env = dict(os.environ, REPLICA_URL="", REPLICA_CONFIG="off")
    rows = []
    for shape in SHAPES:
        name = f"{shape}-{a.mib}.db"
        db = os.path.join(a.work, name)
        t0 = time.perf_counter()
        build(db, shape, a.mib)
        url = replicate(a.work, name, a.so)
        print(f"{shape}: {os.path.getsize(db) / 2**20:.0f} MiB, replicated ({time.perf_counter() - t0:.0f} s)", flush=True)
        out = os.path.join(a.work, "restored.db")
        for check, option, pragma in (("quick", "quick", "quick_check"), ("default", "", "integrity_check")):
            walls, cpus, alone = [], [], []
            for _ in range(a.rounds):
                if os.path.exists(out):
                    os.remove(out)
                wall, cpu = timed(["/usr/bin/python3", "-c", RESTORER, a.so, url, out, option], env)
                walls.append(wall)
                cpus.append(cpu)
                alone.append(timed(["/usr/bin/python3", "-c", PRAGMA, out, pragma]))
                print(f"  {check:8s} restore {wall:6.2f} s wall {cpu:6.2f} s CPU; {pragma} alone {alone[-1][0]:6.2f} s wall {alone[-1][1]:6.2f} s CPU", flush=True)
            rows.append((shape, check, pragma, statistics.median(walls), statistics.median(cpus),
                         statistics.median(x[0] for x in alone), statistics.median(x[1] for x in alone)))
    print(f"\n| database ({a.mib} MiB) | check | restore wall | restore CPU | the PRAGMA alone, wall | CPU |")
    print("| --- | --- | --- | --- | --- | --- |")
    for shape, check, pragma, w, c, pw, pc in rows:
        print(f"| {shape} | {check} (`{pragma}`) | {w:.2f} s | {c:.2f} s | {pw:.2f} s | {pc:.2f} s |")


if __name__ == "__main__":
    main()
