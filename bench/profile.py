#!/usr/bin/python3
"""Where the time per commit goes: the bench's autocommit writer under perf.

`make profile` (or `/usr/bin/python3 bench/profile.py --so target/profiling/libreplica.so
--server target/release/examples/s3_server`). The writer is bench.py's (one process, one
database, one 200-byte row per autocommit INSERT, libreplica uploading to the bench's local
S3 server); perf counts only the measured window (its control FIFO is enabled at "go" and
disabled at "done", so start-up, the first upload and exit are left out).

1. Timing, without perf: `--rounds` interleaved rounds of plain SQLite, plain SQLite with one
   idle native thread (`plain-thread`, the floor of any design with a thread in the app),
   plain SQLite with one native thread that reads the committed frames of the log every
   500 µs (`plain-reader`, bench/log_reader.c: what reading the log on another core costs,
   apart from what libreplica does) and libreplica; ns per commit is the writer's wall time / commits (medians).
2. `perf stat` per variant, `--rounds` interleaved runs of each (medians): CPU time of all
   threads, syscalls and context switches per commit.
3. `perf record --call-graph dwarf` per variant on the cpu-clock event, a sample every 250 µs
   of CPU time (the shares are scaled to perf stat's CPU time per commit): the top symbols by self and children share,
   and the commit thread's libreplica share split by what it does (copying, checksumming,
   locking, spool writes, the wake-up, allocation, the rest).
   What the idle thread alone costs: the commit thread's self time by symbol, plain against
   plain-thread (glibc's mutexes and the kernel's file references take their atomic paths
   once a process has a second thread); what reading the log costs over that, plain-thread
   against plain-reader.
   DWARF unwinding instead of frame pointers: Debian's libsqlite3 and python3 are built
   without frame pointers, and the profiling build keeps the release profile's code.

Writes bench/results/profile-<date>-<commit>.md (and .json). Stdlib only.
"""
import argparse, collections, json, os, re, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

PERF = "/usr/bin/perf"
VARIANTS = ("plain", "plain-thread", "plain-reader", "libreplica")
HASH_RE = re.compile(r"::h[0-9a-f]{16}$")
# What a frame's symbol does, checked on the leaf first, then on the frames up to the
# innermost libreplica frame (the first rule that matches wins).
CATEGORIES = [
    ("checksum", re.compile(r"checksum|crc|hash|FrameChain::accept", re.I)),
    ("copy", re.compile(r"memcpy|memmove|copy_from_slice|extend_from_slice|to_vec|clone_from", re.I)),
    ("wake-up", re.compile(r"wake|notify|futex_wake|try_to_wake_up|crossbeam_channel.*send", re.I)),
    ("locking", re.compile(r"pthread_mutex|futex|lock::|Mutex|RwLock|parking|flock|fcntl|posix_lock", re.I)),
    ("spool writes", re.compile(r"__libc_pwrite|__libc_write|pwrite64|^write$|ksys_write|ksys_pwrite|vfs_write|spool::(writer|segment)|write_at|write_out", re.I)),
    ("allocation", re.compile(r"malloc|free|realloc|alloc::|_int_", re.I)),
]


class Perf:
    """perf started around the writer, held off until "go" through its control FIFOs."""

    def __init__(self, work, name, args):
        self.ctl, self.ack = os.path.join(work, name + ".ctl"), os.path.join(work, name + ".ack")
        for p in (self.ctl, self.ack):
            os.mkfifo(p)
        self.wrap = [PERF] + args + ["--control", f"fifo:{self.ctl},{self.ack}", "-D", "-1", "--"]

    def send(self, cmd):
        # perf opens its FIFOs once the workload started; both opens wait for it.
        with open(self.ctl, "w") as c, open(self.ack) as a:
            c.write(cmd + "\n")
            c.flush()
            a.readline()

    def around(self):
        return (lambda: self.send("enable"), lambda: self.send("disable"))


def timing(b, a):
    per = {v: [] for v in VARIANTS}
    for r in range(a.rounds):
        for v in per:
            res = b.run(v, "autocommit", n=a.n)
            per[v].append(1e9 / res["tps"])
            bench.log(f"  round {r + 1} {v:10s} {res['tps']:8.0f} tx/s  {1e9 / res['tps']:7.0f} ns/commit  WAL high-water {res['wal_hwm_mib']:.1f} MiB")
    return {v: {"runs_ns": x, "median_ns": statistics.median(x)} for v, x in per.items()}


def perf_stats(b, a, work):
    """perf stat of every variant in `--rounds` interleaved rounds, the median of each figure
    (one run alone can be far off: the shares below are scaled to it)."""
    runs = {v: [] for v in VARIANTS}
    for r in range(a.rounds):
        for v in VARIANTS:
            runs[v].append(perf_stat(b, a, work, v, r))
    return {v: {k: statistics.median(x[k] for x in rs) for k in rs[0]} | {"runs_cpu_ns": [x["cpu_ns_per_commit"] for x in rs]}
            for v, rs in runs.items()}


def perf_stat(b, a, work, v, r):
    out = os.path.join(work, f"stat-{v}-{r}.txt")
    p = Perf(work, f"stat-{v}-{r}", ["stat", "-x", ",", "-o", out, "-e", "task-clock,context-switches,raw_syscalls:sys_enter"])
    b.run(v, "autocommit", n=a.n, wrap=p.wrap, around=p.around())
    got = {}
    with open(out) as f:
        for line in f:
            parts = line.strip().split(",")
            if len(parts) > 3 and parts[0] and parts[0][0].isdigit():
                got[parts[2]] = float(parts[0])
    return {"cpu_ns_per_commit": got.get("task-clock", 0) * 1e6 / a.n,  # task-clock is in ms
            "syscalls_per_commit": got.get("raw_syscalls:sys_enter", 0) / a.n,
            "context_switches_per_commit": got.get("context-switches", 0) / a.n}


def perf_record(b, a, work, v):
    data = os.path.join(work, f"perf-{v}.data")
    p = Perf(work, f"rec-{v}", ["record", "-e", "cpu-clock", "-c", str(a.period_ns), "-m", "64M", "--call-graph", "dwarf,16384", "-o", data])
    b.run(v, "autocommit", n=a.profile_n, wrap=p.wrap, around=p.around())
    # --no-inline: perf prints libc's frames as inlined, without their object.
    script = subprocess.run([PERF, "script", "--no-inline", "-i", data, "-F", "comm,pid,tid,period,ip,sym,dso"],
                            capture_output=True, text=True, timeout=1800)
    lost = re.findall(r"lost (\d+) chunks", script.stderr)
    return parse_script(script.stdout), int(lost[0]) if lost else 0


def parse_script(text):
    """Samples as (pid, tid, comm, period ns, [(symbol, dso) leaf first])."""
    samples, cur = [], None
    for line in text.splitlines():
        if not line.strip():
            if cur:
                samples.append(cur)
            cur = None
        elif not line[0].isspace():
            head = line.split()
            # comm may contain spaces: pid/tid and period are the last fields.
            period = int(head[-1])
            pid, tid = (int(x) for x in head[-2].split("/"))
            cur = (pid, tid, " ".join(head[:-2]), period, [])
        elif cur is not None:
            m = re.match(r"\s*[0-9a-f]+\s+(.*?)\s+\((.*)\)\s*$", line)
            if m:
                sym = HASH_RE.sub("", re.sub(r"\+0x[0-9a-f]+$", "", m.group(1)))
                cur[4].append([sym, None if m.group(2) == "inlined" else os.path.basename(m.group(2))])
    if cur:
        samples.append(cur)
    for s in samples:
        # An inlined frame belongs to the object of the frame it was inlined into.
        dso = "?"
        for f in reversed(s[4]):
            if f[1] is None:
                f[1] = dso
            dso = f[1]
        s[4][:] = [tuple(f) for f in s[4]]
    return samples


def is_replica(frame):
    return frame[1].startswith("libreplica")


def analyse(samples, commits, top, cpu_ns):
    """Shares of the sampled CPU time; ns per commit are those shares of `cpu_ns` (perf stat)."""
    total = sum(s[3] for s in samples) or 1
    scale = cpu_ns / total  # sampled ns -> ns per commit
    self_t, child_t, threads = collections.Counter(), collections.Counter(), collections.Counter()
    main_pid = collections.Counter(s[0] for s in samples).most_common(1)[0][0] if samples else 0
    commit_thread = [s for s in samples if s[1] == main_pid]
    cats, replica_inner, replica_ns, base_vfs_ns = collections.Counter(), collections.Counter(), 0, 0
    commit_self = collections.Counter()
    for s in commit_thread:
        if s[4]:
            commit_self[s[4][0][0]] += s[3]
    for pid, tid, comm, period, frames in samples:
        threads["commit thread" if tid == main_pid else f"thread '{comm}'"] += period
        if not frames:
            continue
        self_t[frames[0]] += period
        for f in set(frames):
            child_t[f] += period
    for pid, tid, comm, period, frames in commit_thread:
        k = next((i for i, f in enumerate(frames) if is_replica(f)), None)
        if k is None:
            continue
        if any("sqlite" in f[1] for f in frames[:k]):
            # The shim calling the base VFS: SQLite's own I/O and locking, paid without the
            # extension too.
            base_vfs_ns += period
            continue
        replica_ns += period
        replica_inner[frames[k][0]] += period
        cats[category(frames[:k + 1])] += period
    row = lambda f: {"symbol": f[0], "dso": f[1], "self_pct": 100 * self_t[f] / total, "children_pct": 100 * child_t[f] / total}
    by_self = [row(f) for f, _ in self_t.most_common(top)]
    # The interpreter's and the loader's frames sit above everything: left out of this one.
    ranked = [row(f) for f, _ in child_t.most_common() if not f[1].startswith(("python3", "ld-linux"))
              and f[0] not in ("__libc_start_call_main", "__libc_start_main_impl", "_start", "start_thread", "clone3")]
    by_children = ranked[:top]
    replica_rows = [r for r in ranked if r["dso"].startswith("libreplica")][:top]
    sqlite_rows = [r for r in ranked if "sqlite" in r["dso"]][:top]
    return {"samples": len(samples), "sampled_cpu_ns_per_commit": total / commits, "cpu_ns_per_commit": cpu_ns,
            "threads_ns_per_commit": {t: ns * scale for t, ns in threads.most_common()},
            "commit_thread_replica_ns_per_commit": replica_ns * scale,
            "commit_thread_base_vfs_ns_per_commit": base_vfs_ns * scale,
            "commit_thread_replica_by_category_ns": {c: ns * scale for c, ns in cats.most_common()},
            "commit_thread_replica_by_function_ns": {f: ns * scale for f, ns in replica_inner.most_common(top)},
            "commit_thread_self_ns": {f: ns * scale for f, ns in commit_self.most_common(400)},
            "by_self": by_self, "by_children": by_children, "replica": replica_rows, "sqlite": sqlite_rows}


def category(frames):
    """frames: leaf first, up to and including the innermost libreplica frame."""
    for f in frames:
        for name, rx in CATEGORIES:
            if rx.search(f[0]):
                return name
    return "other libreplica code"


def table(rows):
    out = ["| self % | children % | symbol | object |", "| ---: | ---: | --- | --- |"]
    for r in rows:
        sym = r["symbol"].replace("|", "\\|")
        if len(sym) > 110:
            sym = sym[:107] + "..."
        out.append(f"| {r['self_pct']:.1f} | {r['children_pct']:.1f} | `{sym}` | {r['dso']} |")
    return out


def report(res):
    t, st, pr = res["timing"], res["stat"], res["profile"]
    plain, lib = t["plain"]["median_ns"], t["libreplica"]["median_ns"]
    variants = [v for v in VARIANTS if v in t]
    cell = lambda v, fmt: " | ".join(fmt(x) for x in v)
    out = [f"# Profile of the autocommit writer, {res['date']} at {res['git']}", "",
           f"`{res['command']}` on {res['machine']['summary']} (shared with other jobs; load average at start "
           f"{res['loadavg']}), SQLite {res['sqlite_version']}, {res['n']} autocommit INSERTs of a 200-byte row per run, "
           "one database, `synchronous=NORMAL`, libreplica uploading to the bench's local S3 server every second.", "",
           "## Per commit", "",
           "| | " + " | ".join(variants) + " | libreplica − plain |", "| --- |" + " ---: |" * (len(variants) + 1),
           f"| wall time, median of {res['rounds']} interleaved rounds (ns) | "
           + cell([t[v]["median_ns"] for v in variants], lambda x: f"{x:.0f}") + f" | {lib - plain:+.0f} ({lib / plain:.2f}×) |"]
    medians = ", median of the rounds" if "runs_cpu_ns" in st["plain"] else ""
    for key, label in (("cpu_ns_per_commit", f"CPU time, all threads (ns, perf stat{medians})"),
                       ("syscalls_per_commit", "syscalls (perf stat)"),
                       ("context_switches_per_commit", "context switches (perf stat)")):
        a, b = st["plain"][key], st["libreplica"][key]
        fmt = (lambda x: f"{x:.0f}") if "ns" in key else (lambda x: f"{x:.2f}")
        out.append(f"| {label} | " + cell([st[v][key] for v in variants if v in st], fmt) + f" | {'+' if b >= a else ''}{fmt(b - a)} |")
    out.append("| rounds (ns per commit) | " + " | ".join(", ".join(f"{x:.0f}" for x in t[v]["runs_ns"]) for v in variants) + " | |")
    lp = pr["libreplica"]
    out += ["", f"CPU time per commit by thread in the profiled libreplica run ({res['profile_n']} commits; perf record on cpu-clock, "
            f"{lp['samples']} samples, {lp['lost_chunks']} chunks lost; the samples hold {lp['sampled_cpu_ns_per_commit']:.0f} ns "
            f"per commit of perf stat's {lp['cpu_ns_per_commit']:.0f} (plain: {pr['plain']['sampled_cpu_ns_per_commit']:.0f} of "
            f"{pr['plain']['cpu_ns_per_commit']:.0f}): perf record's own cost inflates the recorded runs, and perf can drop "
            f"samples, so what follows are shares of the sampled time, in ns of perf stat's CPU time per commit, on the "
            f"assumption that both fall evenly):", ""]
    out += [f"- {th}: {ns:.0f}" for th, ns in lp["threads_ns_per_commit"].items()]
    out += ["", f"On the commit thread, {lp['commit_thread_replica_ns_per_commit']:.0f} ns per commit are libreplica's own work "
            f"(under a libreplica frame, not in SQLite's base VFS below it; another {lp['commit_thread_base_vfs_ns_per_commit']:.0f} ns "
            "are SQLite's own I/O and locking passed through the shim); by what the leaf (or a frame up to the innermost "
            "libreplica frame) does:", "",
            "| what | ns per commit |", "| --- | ---: |"]
    out += [f"| {c} | {ns:.0f} |" for c, ns in lp["commit_thread_replica_by_category_ns"].items()]
    out += ["", "By the innermost libreplica function on the commit thread:", "", "| function | ns per commit |", "| --- | ---: |"]
    out += [f"| `{f}` | {ns:.0f} |" for f, ns in lp["commit_thread_replica_by_function_ns"].items()]
    out += floor_section(pr)
    for v in ("libreplica", "plain"):
        p = pr[v]
        out += ["", f"## Top symbols, {v} ({p['samples']} samples, {p['lost_chunks']} chunks lost, all threads; % of the process's sampled CPU time)", "",
                "By children (the time under the symbol; the interpreter's and the loader's frames left out):", ""] + table(p["by_children"])
        out += ["", "By self:", ""] + table(p["by_self"])
    out += ["", "libreplica's symbols (libreplica run):", ""] + table(lp["replica"])
    out += ["", "SQLite's symbols (libreplica run):", ""] + table(lp["sqlite"])
    out += ["", "## Reading it", "", res.get("reading", "(to be written by whoever commits this file)")]
    return "\n".join(out) + "\n"


def floor_section(pr):
    """What one idle thread costs plain SQLite's commit thread, and what a thread that reads
    the log costs over an idle one, by symbol (self time)."""
    out = symbol_growth(pr, "plain", "plain-thread", "What one idle thread costs plain SQLite")
    return out + symbol_growth(pr, "plain-thread", "plain-reader",
                               "What reading the log on another core costs, over an idle thread")


def symbol_growth(pr, before, after, title):
    """The commit thread's symbols whose self time grew most from variant `before` to `after`."""
    if after not in pr or "commit_thread_self_ns" not in pr[before]:
        return []
    a, b = pr[before]["commit_thread_self_ns"], pr[after]["commit_thread_self_ns"]
    ta, tb = (pr[v]["threads_ns_per_commit"].get("commit thread", 0.0) for v in (before, after))
    grew = sorted(set(a) | set(b), key=lambda f: a.get(f, 0) - b.get(f, 0))[:15]
    out = ["", f"## {title}", "",
           f"The commit thread's CPU time per commit: {before} {ta:.0f} ns, {after} {tb:.0f} ns ({tb - ta:+.0f}; its "
           "share of one perf record run, scaled to the process's CPU time in perf stat). The symbols whose self time grew most (ns per commit; shares of each run's sampled "
           "time, as above):", "",
           f"| symbol | {before} | {after} | added |", "| --- | ---: | ---: | ---: |"]
    for f in grew:
        sym = f.replace("|", "\\|")[:100]
        out.append(f"| `{sym}` | {a.get(f, 0):.0f} | {b.get(f, 0):.0f} | {b.get(f, 0) - a.get(f, 0):+.0f} |")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--so", default="target/profiling/libreplica.so")
    ap.add_argument("--server", default="target/release/examples/s3_server")
    ap.add_argument("--litestream", default=os.environ.get("LITESTREAM_BIN"))
    ap.add_argument("--n", type=int, default=20000, help="commits per run")
    ap.add_argument("--profile-n", type=int, default=50000, help="commits in the perf record runs")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    ap.add_argument("--period-ns", type=int, default=250000, help="CPU time between samples")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--out", default="bench/results")
    ap.add_argument("--report", metavar="JSON", help="only write the .md of an earlier run's .json (with its \"reading\")")
    a = ap.parse_args()
    if a.report:
        with open(a.report) as f:
            res = json.load(f)
        with open(a.report[:-len(".json")] + ".md", "w") as f:
            f.write(report(res))
        return
    a.so = os.path.abspath(a.so)
    if a.so.endswith(".so"):
        a.so = a.so[:-3]
    a.server = os.path.abspath(a.server)
    a.quick, a.settle = True, 0.5  # what Bench reads for its rate workloads (not used here)
    b = bench.Bench(a)
    work = tempfile.mkdtemp(prefix="replica-profile-")
    sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip() or "unknown"
    import sqlite3
    res = {"date": time.strftime("%Y-%m-%d", time.gmtime()), "git": sha, "n": a.n, "profile_n": a.profile_n, "rounds": a.rounds,
           "machine": bench.machine(), "sqlite_version": sqlite3.sqlite_version, "loadavg": os.getloadavg()[0],
           "command": " ".join(["bench/profile.py"] + sys.argv[1:])}
    try:
        bench.log(f"== timing ({a.rounds} interleaved rounds of {a.n} commits)")
        res["timing"] = timing(b, a)
        bench.log("== perf stat")
        res["stat"] = perf_stats(b, a, work)
        bench.log(json.dumps(res["stat"]))
        bench.log("== perf record")
        res["profile"] = {}
        for v in VARIANTS:
            samples, lost = perf_record(b, a, work, v)
            # Sampled CPU per commit differs from perf stat's (perf record's own cost inflates
            # the run; perf drops samples under load): the shares are scaled to perf stat's.
            res["profile"][v] = analyse(samples, a.profile_n, a.top, res["stat"][v]["cpu_ns_per_commit"])
            res["profile"][v]["lost_chunks"] = lost
    finally:
        b.close()
        bench.shutil.rmtree(work, ignore_errors=True)
    os.makedirs(a.out, exist_ok=True)
    base = os.path.join(a.out, f"profile-{res['date']}-{sha}")
    with open(base + ".json", "w") as f:
        json.dump(res, f, indent=1)
    with open(base + ".md", "w") as f:
        f.write(report(res))
    bench.log(f"results: {base}.md")


if __name__ == "__main__":
    main()
