"""Workload 10 of bench/bench.py (`--only 10` or `--only follow`): followers (read replicas).

One libreplica writer commits a row at a time at RATE tx/s, each row carrying its own
wall-clock time (taken just before its COMMIT), to the bench's S3 server. A second process
reads the replica: either a libreplica follower (`file:/abs/follower.db?replica_follow=URL
&replica_follow_interval=MS`, a local copy the extension restores and then keeps current) or
litestream-vfs (the `litestream` VFS of the PyPI package litestream-vfs, which reads pages from
the bucket through its own poll, `poll_interval`). In that process a reader thread polls
`SELECT max(id) FROM t` every millisecond; for every row that has become visible it records
now - the row's commit time: the lag from the writer's COMMIT to a reader on another machine.

Each commit also writes `SEQ<i>` into a one-row table on page 2 (as workload 2 does), so the
S3 server's PUT log tells when row i reached the bucket: the lag splits into the writer's part
(COMMIT to PUT completed) and the reader's part (PUT completed to visible).

Settings, in pairs: the writer's REPLICA_SYNC_INTERVAL is the reader's poll interval (1 s:
the defaults of the writer, the follower and litestream-vfs; 100 ms). Requests are counted over
the writer's window: the libreplica follower counts its own (replica_status(): get_requests,
list_requests), and the server's counts of the same window (GET + HEAD, LIST; the writer makes
only PUTs in the steady state) check them; litestream-vfs's come from the server. The R2 bill
per follower and month: GET and HEAD are class B, LIST class A. A libreplica follower LISTs once
a minute: full mode's window is 60 s so that one such LIST falls in it; quick mode's does not
hold one.

litestream-vfs is optional: without it (LITESTREAM_VFS=path of its litestream-vfs.so, or the
package installed into /opt/litestream-vfs-venv by `make bench-deps`) its runs are skipped with
a message and libreplica's figures are still reported.
"""
import glob, json, os, random, statistics, subprocess, threading, time

MONTH_MIN = 60 * 24 * 30  # bench.py's month, for its R2 prices (h.PRICE_CLASS_A, h.PRICE_CLASS_B)
RATE = 10
VFS_CANDIDATES = ["/opt/litestream-vfs-venv/lib/python3*/site-packages/litestream_vfs/litestream-vfs.so"]
INTERVALS_MS = [1000, 100]
WATCHDOG_EXTRA_S = 180  # a writer or reader still running this long past its window is killed

# The writer: creates the database (marker first: page 2), makes its first snapshot durable,
# "ready"; at "go" commits `n` rows at `rate` per second, "done"; at "exit", leaves (no final
# replica_sync: the last rows ship on the writer's own schedule, as all the others did).
WRITER = r'''
import json, os, sqlite3, sys, time
cfg = json.loads(sys.argv[1])
boot = sqlite3.connect(":memory:")
boot.enable_load_extension(True)
boot.load_extension(cfg["so"])
db = sqlite3.connect(cfg["db"], isolation_level=None)
db.execute("PRAGMA journal_mode=WAL")
db.execute("PRAGMA synchronous=NORMAL")
create_marker(db)  # bench.MARKER_PY, prepended
db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, ts REAL NOT NULL, payload TEXT)")
db.execute("SELECT replica_sync(60000)").fetchone()
print("ready", flush=True)
assert sys.stdin.readline().strip() == "go"
payload = "x" * 100
commits = []
start = time.time()
for i in range(1, cfg["n"] + 1):
    delay = start + i / cfg["rate"] - time.time()
    if delay > 0:
        time.sleep(delay)
    db.execute("BEGIN")
    ts = time.time()
    db.execute("INSERT INTO t(id, ts, payload) VALUES (?, ?, ?)", (i, ts, payload))
    db.execute("UPDATE marker SET v = 'SEQ' || printf('%012d', ?)", (i,))
    db.execute("COMMIT")
    commits.append(ts)
with open(cfg["commits_out"], "w") as f:
    json.dump(commits, f)
print("done " + json.dumps({"seconds": time.time() - start, "commits": len(commits)}), flush=True)
sys.stdin.readline()
'''

# The reader, on "another machine": `kind` libreplica (a follower's copy) or vfs
# (litestream-vfs). Protocol: "opened <seconds>"; "go" starts the reader thread ("going
# <status>"); "mark" answers "mark <status>" (the libreplica follower's replica_status() row);
# "stop N SECS" waits until row N is visible or SECS pass, stops the thread and answers
# "stopped <json>"; then stdin closes.
READER = r'''
import json, os, sqlite3, sys, threading, time, urllib.parse
cfg = json.loads(sys.argv[1])
boot = sqlite3.connect(":memory:")
boot.enable_load_extension(True)
boot.load_extension(cfg["ext"])
t0 = time.time()
if cfg["kind"] == "libreplica":
    uri = "file:%s?replica_follow=%s&replica_follow_interval=%d" % (
        urllib.parse.quote(cfg["path"]), urllib.parse.quote(cfg["url"], safe=""), cfg["interval_ms"])
    main = sqlite3.connect(uri, uri=True, timeout=10, isolation_level=None)
    # The reader's own connection: a plain one to the copy (read-only for the application).
    reader_con = sqlite3.connect(cfg["path"], timeout=10, isolation_level=None, check_same_thread=False)
else:
    # One connection only: litestream-vfs polls the bucket per open file.
    uri = "file:%s?vfs=litestream&poll_interval=%dms" % (cfg["name"], cfg["interval_ms"])
    main = sqlite3.connect(uri, uri=True, timeout=10, isolation_level=None, check_same_thread=False)
    reader_con = main
reader_con.execute("SELECT count(*) FROM t").fetchone()
print("opened %.3f" % (time.time() - t0), flush=True)
# Status from a connection of its own, not one to the copy (whose schema read would wait for
# the follower's exclusive lock). Not with litestream-vfs: once it is loaded, opening any
# other database fails ("automatic extension loading failed").
ctl = sqlite3.connect(":memory:") if cfg["kind"] == "libreplica" else None
COLS = ("local_txid", "replicated_txid", "lag_ms", "get_requests", "list_requests", "last_error")

def status():
    if cfg["kind"] != "libreplica":
        return {}
    row = ctl.execute("SELECT %s FROM replica_status() WHERE state = 'following'" % ", ".join(COLS)).fetchone()
    return dict(zip(COLS, row)) if row else {}

stop = threading.Event()
seen, errors, queries, last = [], [], [0], [0]

def reader():
    con = reader_con
    while not stop.is_set():
        try:
            m = con.execute("SELECT max(id) FROM t").fetchone()[0] or 0
            now = time.time()
            queries[0] += 1
            if m > last[0]:
                for i, ts in con.execute("SELECT id, ts FROM t WHERE id > ? AND id <= ? ORDER BY id", (last[0], m)):
                    seen.append((i, now, ts))
                last[0] = m
        except sqlite3.Error as e:
            if len(errors) < 20:
                errors.append("%s: %s" % (type(e).__name__, e))
        time.sleep(cfg["poll_s"])

th = threading.Thread(target=reader)
for line in sys.stdin:
    cmd = line.split()
    if cmd[0] == "go":
        th.start()
        print("going " + json.dumps(status()), flush=True)
    elif cmd[0] == "mark":
        print("mark " + json.dumps(status()), flush=True)
    elif cmd[0] == "stop":
        n, deadline = int(cmd[1]), time.time() + float(cmd[2])
        while last[0] < n and time.time() < deadline:
            time.sleep(0.01)
        stop.set()
        th.join()
        print("stopped " + json.dumps({"seen": seen, "errors": errors, "queries": queries[0],
                                       "status": status()}), flush=True)
        break
'''


def find_vfs(a):
    """The litestream-vfs loadable extension (path without .so) and its version, or (None, why)."""
    cands = [getattr(a, "litestream_vfs", None), os.environ.get("LITESTREAM_VFS")]
    for pat in VFS_CANDIDATES:
        cands += sorted(glob.glob(pat))
    for c in cands:
        if c and os.path.exists(c):
            version = "unknown"
            for meta in glob.glob(os.path.join(os.path.dirname(os.path.dirname(c)), "litestream_vfs-*.dist-info", "METADATA")):
                with open(meta) as f:
                    version = next((l.split(":", 1)[1].strip() for l in f if l.startswith("Version:")), version)
            return (c[:-3] if c.endswith(".so") else c), version
    return None, ("litestream-vfs is not installed (`make bench-deps`: pip install litestream-vfs into "
                  "/opt/litestream-vfs-venv; or LITESTREAM_VFS=path/to/litestream-vfs.so)")


def watchdog(proc, secs):
    t = threading.Timer(secs, proc.kill)
    t.daemon = True
    t.start()
    return t


def expect(proc, prefix, errfile):
    line = proc.stdout.readline()
    if not line.startswith(prefix):
        with open(errfile) as f:
            err = f.read()[-3000:]
        try:
            rc = proc.wait(5)
        except subprocess.TimeoutExpired:
            rc = "still running"
        raise RuntimeError(f"expected {prefix!r}, got {line!r} (exit status {rc})\n{err}")
    return line[len(prefix):].strip()


def one_run(b, a, h, kind, interval_ms, vfs_ext):
    """One writer and one reader of its replica; the per-row lags and the reader's requests."""
    b.run_no += 1
    variant = f"{'follower' if kind == 'libreplica' else 'litestream-vfs'}-{interval_ms}ms"
    prefix = f"r{b.run_no:04d}-{variant}"
    rundir = os.path.join(b.work, prefix)
    os.makedirs(rundir)
    db = os.path.join(rundir, "app0.db")
    n = int(RATE * a.follow_window)
    wenv = b.env("libreplica")
    wenv["REPLICA_URL"] = b.server.s3_url(prefix)
    if interval_ms != 1000:
        wenv["REPLICA_SYNC_INTERVAL"] = f"{interval_ms}ms"
    wcfg = {"so": a.so, "db": db, "n": n, "rate": RATE, "commits_out": os.path.join(rundir, "commits.json")}
    werr = os.path.join(rundir, "writer.err")
    offset = b.server.log_size()
    writer = subprocess.Popen(["/usr/bin/python3", "-c", h.MARKER_PY + WRITER, json.dumps(wcfg)], env=wenv, cwd=rundir,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(werr, "w"), text=True)
    reader = None
    wd = [watchdog(writer, a.follow_window + WATCHDOG_EXTRA_S)]
    # The reader's own directory, as on another machine (litestream-vfs's name is relative).
    readdir = os.path.join(rundir, "reader")
    os.makedirs(readdir)
    replica_url = b.server.s3_url(f"{prefix}/app0.db")
    renv = b.env("reader")  # no REPLICA_* (REPLICA_CONFIG=off), no AWS_CA_BUNDLE
    if kind == "libreplica":
        rcfg = {"kind": kind, "ext": a.so, "path": os.path.join(readdir, "follower.db"), "url": replica_url}
    else:
        renv["LITESTREAM_REPLICA_URL"] = replica_url
        renv["LITESTREAM_LOG_FILE"] = os.path.join(readdir, "litestream-vfs.log")
        renv["LITESTREAM_LOG_LEVEL"] = "INFO"
        rcfg = {"kind": kind, "ext": vfs_ext, "name": "app0.db"}
    rcfg.update({"interval_ms": interval_ms, "poll_s": 0.001})
    rerr = os.path.join(readdir, "reader.err")
    res = {"kind": kind, "variant": variant, "interval_ms": interval_ms, "rate": RATE}
    try:
        expect(writer, "ready", werr)
        t_open = time.time()
        reader = subprocess.Popen(["/usr/bin/python3", "-c", READER, json.dumps(rcfg)], env=renv, cwd=readdir,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(rerr, "w"), text=True)
        wd.append(watchdog(reader, a.follow_window + WATCHDOG_EXTRA_S))
        res["open_s"] = float(expect(reader, "opened ", rerr))
        # The writer's first commit at a random point of the reader's poll cycle: both poll on
        # fixed periods, so a fixed start would fix where the writer's uploads fall in it (and
        # with it the reader's share of the lag) for the whole run.
        res["phase_s"] = random.Random(f"{a.seed}-{b.run_no}").uniform(0, interval_ms / 1000)
        time.sleep(a.settle + res["phase_s"])
        before = b.server.stats()
        t_go = time.time()
        p0 = h.proc_stats(reader.pid)
        reader.stdin.write("go\n")
        reader.stdin.flush()
        st0 = json.loads(expect(reader, "going ", rerr))
        writer.stdin.write("go\n")
        writer.stdin.flush()
        done = json.loads(expect(writer, "done ", werr))
        reader.stdin.write("mark\n")
        reader.stdin.flush()
        st1 = json.loads(expect(reader, "mark ", rerr))
        after = b.server.stats()
        t_done = time.time()
        p1 = h.proc_stats(reader.pid)
        # Until the last row is visible (the writer ships it on its own schedule), bounded.
        reader.stdin.write(f"stop {n} {2 * interval_ms / 1000 + 10}\n")
        reader.stdin.flush()
        out = json.loads(expect(reader, "stopped ", rerr))
        writer.stdin.write("exit\n")
        writer.stdin.flush()
        writer.wait(30)
        reader.stdin.close()
        reader.wait(30)
    finally:
        for t in wd:
            t.cancel()
        for p in (writer, reader):
            if p:
                h.stop(p)
    with open(wcfg["commits_out"]) as f:
        commits = json.load(f)
    entries, _ = b.server.puts_since(offset)
    events = h.durable_events(b.server, entries, f"{prefix}/app0.db")
    durable = h.lags(commits, events)  # per row: PUT completed - commit (s), None if never seen
    vis = {i: now for i, now, _ in out["seen"]}
    e2e, upload, reader_part = [], [], []
    for i, tc in enumerate(commits, start=1):
        if i in vis:
            e2e.append((vis[i] - tc) * 1000)
            if durable[i - 1] is not None:
                upload.append(durable[i - 1] * 1000)
                reader_part.append((vis[i] - tc - durable[i - 1]) * 1000)
    mins = (t_done - t_go) / 60
    req = h.diff(after, before)
    server = {"get": req["get"] + req["head"], "list": req["list"], "put": req["put"]}
    res.update({"window_s": t_done - t_go, "commits": len(commits), "visible": len(e2e),
                "not_visible": len(commits) - len(e2e), "reader_errors": out["errors"], "queries": out["queries"],
                "lag_ms": sorted(e2e), "upload_ms": sorted(upload), "reader_ms": sorted(reader_part),
                "server_per_min": {k: v / mins for k, v in server.items()},
                "reader_cpu_pct": (p1["cpu_s"] - p0["cpu_s"]) / (t_done - t_go) * 100 if p0 and p1 else None,
                "reader_rss_mib": p1["hwm_mib"] if p1 else None, "writer_seconds": done["seconds"]})
    if kind == "libreplica":
        own = {"get": st1["get_requests"] - st0["get_requests"], "list": st1["list_requests"] - st0["list_requests"]}
        res["self_per_min"] = {k: v / mins for k, v in own.items()}
        res["status_end"] = out["status"]
        res["since_open"] = {"get": out["status"].get("get_requests"), "list": out["status"].get("list_requests"),
                             "s": time.time() - t_open}
        # What the server saw beyond the follower's own count: the writer's non-PUT requests.
        res["writer_nonput_per_min"] = {k: server[k] / mins - res["self_per_min"][k] for k in ("get", "list")}
        res["per_min"] = res["self_per_min"]
    else:
        res["per_min"] = {"get": server["get"] / mins, "list": server["list"] / mins}
        res["errors"] = vfs_errors(renv["LITESTREAM_LOG_FILE"])
    if kind == "libreplica" and out["status"].get("last_error"):
        res["errors"] = [out["status"]["last_error"]]
    # A reader that left rows unseen stopped following: its figures are not a steady state.
    res["stalled"] = res["not_visible"] > 0
    res["usd_month"] = usd_month(h, res["per_min"])
    b.discard(prefix, rundir)
    return res


def vfs_errors(path):
    """litestream-vfs's logged errors (distinct messages, first 3) and how many there were."""
    msgs, n = [], 0
    try:
        with open(path) as f:
            for line in f:
                if "level=ERROR" in line:
                    n += 1
                    m = line.split("level=ERROR", 1)[1].strip()
                    if m not in msgs and len(msgs) < 3:
                        msgs.append(m)
    except OSError:
        pass
    return msgs + ([f"({n} errors logged)"] if n else [])


def usd_month(h, per_min):
    """R2's bill a month for one reader making `per_min` requests a minute (LIST class A,
    GET and HEAD class B), at bench.py's prices."""
    return MONTH_MIN * (per_min["list"] * h.PRICE_CLASS_A + per_min["get"] * h.PRICE_CLASS_B)


def summarize(all_runs, h):
    """Pooled figures of the runs that kept following (all of them, flagged, if none did)."""
    steady = [r for r in all_runs if not r["stalled"]]
    runs = steady or all_runs
    lag = sorted(x for r in runs for x in r["lag_ms"])
    up = sorted(x for r in runs for x in r["upload_ms"])
    rd = sorted(x for r in runs for x in r["reader_ms"])
    mins = sum(r["window_s"] for r in runs) / 60
    per_min = {k: sum(r["per_min"][k] * r["window_s"] / 60 for r in runs) / mins for k in ("get", "list")}
    server = {k: sum(r["server_per_min"][k] * r["window_s"] / 60 for r in runs) / mins for k in ("get", "list", "put")}
    p = lambda v, q: _pct(v, q)
    out = {"runs": len(all_runs), "stalled": len(all_runs) - len(steady), "all_stalled": not steady,
           "stall_errors": [e for r in all_runs if r["stalled"] for e in r.get("errors", [])][:4],
           "window_s": sum(r["window_s"] for r in runs), "commits": sum(r["commits"] for r in runs),
           "not_visible": sum(r["not_visible"] for r in runs),
           "lag_p50_ms": p(lag, 50), "lag_p99_ms": p(lag, 99), "lag_max_ms": lag[-1] if lag else None,
           "upload_p50_ms": p(up, 50), "upload_p99_ms": p(up, 99),
           "reader_p50_ms": p(rd, 50), "reader_p99_ms": p(rd, 99), "reader_max_ms": rd[-1] if rd else None,
           "per_min": per_min, "server_per_min": server,
           "usd_month": usd_month(h, per_min),
           "reader_cpu_pct": statistics.median(r["reader_cpu_pct"] for r in runs if r["reader_cpu_pct"] is not None),
           "reader_rss_mib": max(r["reader_rss_mib"] or 0 for r in runs),
           "reader_errors": [e for r in runs for e in r["reader_errors"]][:5],
           "lag_cdf_ms": [lag[min(len(lag) - 1, int(q / 100 * len(lag)))] for q in range(0, 101)] if lag else []}
    if "self_per_min" in runs[0]:
        out["writer_nonput_per_min"] = {k: sum(r["writer_nonput_per_min"][k] * r["window_s"] / 60 for r in runs) / mins
                                        for k in ("get", "list")}
    return out


def _pct(values, p):
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, max(0, int(round(p / 100 * (len(v) - 1)))))]


def run(b, a, h):
    """Interleaved rounds of (follower, litestream-vfs) at 1 s and 100 ms."""
    vfs_ext, vfs_version = find_vfs(a)
    out = {"rate": RATE, "window_s": a.follow_window, "rounds": a.follow_rounds, "intervals_ms": INTERVALS_MS,
           "litestream_vfs": vfs_version if vfs_ext else None, "by_variant": {}}
    if not vfs_ext:
        out["litestream_vfs_skipped"] = vfs_version
        h.log(f"  litestream-vfs comparison skipped: {vfs_version}")
    kinds = ["libreplica"] + (["vfs"] if vfs_ext else [])
    runs = {}
    for r in range(a.follow_rounds):
        for ms in INTERVALS_MS:
            for kind in kinds:
                try:
                    res = one_run(b, a, h, kind, ms, vfs_ext)
                except Exception as e:  # litestream-vfs may fail: report it, keep libreplica's figures
                    if kind != "vfs":
                        raise
                    msg = str(e)[-1500:]
                    h.log(f"  litestream-vfs at {ms} ms failed: {msg}")
                    out.setdefault("litestream_vfs_errors", []).append(msg)
                    continue
                runs.setdefault(res["variant"], []).append(res)
                pm = res["per_min"]
                lag = res["lag_ms"]
                extra = ""
                if kind == "libreplica":
                    extra = f" (server saw GET {res['server_per_min']['get']:.1f} LIST {res['server_per_min']['list']:.1f})"
                h.log(f"  round {r + 1} {res['variant']:26s} lag p50 {_pct(lag, 50) or 0:6.0f} p99 {_pct(lag, 99) or 0:6.0f} "
                    f"max {(lag[-1] if lag else 0):6.0f} ms (bucket to visible p50 {_pct(res['reader_ms'], 50) or 0:.0f} ms), "
                    f"{res['not_visible']} of {res['commits']} not visible; GET {pm['get']:.1f} LIST {pm['list']:.1f} /min{extra}, "
                    f"${res['usd_month']:.2f}/month; reader CPU {res['reader_cpu_pct'] or 0:.1f}%, open {res['open_s']:.2f} s"
                    + (f"; STALLED: {res.get('errors', [])[:2]}" if res["stalled"] else ""))
    for v, rs in runs.items():
        s = summarize(rs, h)
        s["runs_detail"] = [{k: x[k] for k in x if k not in ("lag_ms", "upload_ms", "reader_ms")} for x in rs]
        out["by_variant"][v] = s
        if v.startswith("follower") and s["stalled"]:
            b.missed.append(f"follower {v}: {s['stalled']} of {s['runs']} run(s) left rows never visible: {s['stall_errors'][:1]}")
    return out


def markdown(res):
    fo = res.get("follow")
    if not fo:
        return []
    vfs = fo.get("litestream_vfs")
    out = ["", f"Followers (workload 10): a libreplica writer at {fo['rate']} tx/s for {fo['window_s']} s per run "
           f"({fo['rounds']} round(s)), read on the same machine through a libreplica follower "
           f"(`?replica_follow=`, a local copy) and through litestream-vfs "
           f"({vfs if vfs else 'not run: ' + fo.get('litestream_vfs_skipped', 'failed')}); the writer's sync interval "
           f"equals the reader's poll interval. Lag: the writer's COMMIT to the row visible to a reader polling every 1 ms "
           f"(split: COMMIT to PUT, PUT to visible). Requests of the reader alone; R2 per follower and month "
           f"(LIST class A, GET/HEAD class B). Runs in which the reader stopped following are left out of the figures "
           f"and counted as stalled:", "",
           "| interval | reader | lag p50 / p99 / max (ms) | COMMIT→PUT p50 / PUT→visible p50, p99 (ms) | GET / LIST per min | R2 $/month per follower | reader CPU | stalled runs |",
           "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    f0 = lambda x: "–" if x is None else f"{x:.0f}"
    for v, s in fo["by_variant"].items():
        ms = v.rsplit("-", 1)[1]
        who = "libreplica follower" if v.startswith("follower") else "litestream-vfs"
        pm = s["per_min"]
        nv = f" ({s['not_visible']} not visible)" if s["not_visible"] else ""
        stalled = f"{s['stalled']} of {s['runs']}" + (" (figures from those)" if s["all_stalled"] else "")
        out.append(f"| {ms} | {who} | {f0(s['lag_p50_ms'])} / {f0(s['lag_p99_ms'])} / {f0(s['lag_max_ms'])}{nv} | "
                   f"{f0(s['upload_p50_ms'])} / {f0(s['reader_p50_ms'])}, {f0(s['reader_p99_ms'])} | "
                   f"{pm['get']:.1f} / {pm['list']:.1f} | {s['usd_month']:.2f} | {s['reader_cpu_pct']:.1f}% | {stalled} |")
    if fo["window_s"] < 60:
        out.append("")
        out.append(f"A libreplica follower LISTs once a minute: a {fo['window_s']} s window holds none of those (full mode's 60 s holds one).")
    for v, s in fo["by_variant"].items():
        if s["stalled"]:
            out += ["", f"{v} stalled in {s['stalled']} run(s): " + "; ".join(f"`{e[:300]}`" for e in s["stall_errors"][:2])]
    for e in fo.get("litestream_vfs_errors", [])[:2]:
        out += ["", f"litestream-vfs failed: `{e.splitlines()[0] if e else e}`"]
    return out
