#!/usr/bin/python3
"""Interleaved A/B of libreplica builds on the autocommit workload, against plain SQLite.

`/usr/bin/python3 bench/ab.py --server PATH --so before=/tmp/a/libreplica.so --so after=/tmp/b/libreplica.so`
(copy each build somewhere of its own first: cargo overwrites target/). Each round runs plain
SQLite and every build once, in a rotating order, with bench.py's writer (one database, one
200-byte row per autocommit INSERT, uploading to the bench's local S3 server every second).
Per commit it prints the wall time and the committing thread's CPU time (steadier than wall
time on a shared machine), then medians, spreads and each build's ratio to plain SQLite
(median of the per-round ratios: a round's runs share the machine's state). Every round also runs
plain SQLite in a writer with one idle native thread (`plain-thread`): once a process has a
second thread, glibc's mutexes and the kernel's file lookups take their atomic paths, which
every build (with its threads) pays. With `--log-reader`, every round also runs `plain-reader`:
plain SQLite with one native thread that reads the committed frames of the log every 500 µs, as
a capture thread does (bench/log_reader.c, built with cc): what reading the log on another
core costs, apart from what libreplica does. With `--shim`, every round also runs `plain-shim`:
plain SQLite with the first build loaded and no database replicated, so every file goes
through the extension's VFS shim and no thread of the extension's starts: what the shim's
wrappers cost apart from capture and its threads. Stdlib only.
"""
import argparse, json, os, statistics, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--so", action="append", required=True, metavar="NAME=PATH")
    ap.add_argument("--server", default="target/release/examples/s3_server")
    ap.add_argument("--litestream", default=os.environ.get("LITESTREAM_BIN"))
    ap.add_argument("--n", type=int, default=20000, help="commits per run")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--json", help="write every run's figures here")
    ap.add_argument("--log-reader", action="store_true", help="also run plain-reader (needs cc)")
    ap.add_argument("--shim", action="store_true", help="also run plain-shim (the first build loaded, nothing replicated)")
    a = ap.parse_args()
    builds = bench.named_builds(a.so)
    a.server = os.path.abspath(a.server)
    a.so, a.quick, a.settle = next(iter(builds.values())), True, 0.5
    b = bench.Bench(a)
    # plain-thread: plain SQLite with one idle native thread in the writer, the floor of any
    # build (each has threads of its own).
    variants = (["plain", "plain-thread"] + (["plain-reader"] if a.log_reader else [])
                + (["plain-shim"] if a.shim else []) + list(builds))
    runs = {v: [] for v in variants}
    try:
        for r in range(a.rounds):
            order = variants[r % len(variants):] + variants[:r % len(variants)]
            for v in order:
                if v in builds or v == "plain-shim":
                    b.args.so = builds.get(v, next(iter(builds.values())))
                res = b.run(v if v not in builds else "libreplica", "autocommit", n=a.n)
                cpu = res["thread_cpu_s"]
                started = [t for t in cpu if t.startswith("replica-")]
                if v == "plain-shim" and started:
                    sys.exit(f"plain-shim is not the shim alone: the extension started {started}")
                row = {"wall_ns": 1e9 / res["tps"], "commit_cpu_ns": res["commit_thread_cpu_ns"],
                       "capture_thread_ns": cpu.get("replica-capture", 0.0) * 1e9 / a.n,
                       "spool_thread_ns": cpu.get("replica-spool", 0.0) * 1e9 / a.n,
                       "uploader_ns": cpu.get("replica-uploade", 0.0) * 1e9 / a.n,
                       "server_ns": res["server_cpu_s"] * 1e9 / a.n}
                if v in builds:
                    # What a log restart waited for, on the committing thread (replica_status).
                    cf = bench.capture_figures(res)
                    row.update(restarts=cf["restart_waits"], restart_p50_us=cf["restart_wait_p50_us"],
                               restart_p99_us=cf["restart_wait_p99_us"])
                runs[v].append(row)
                bench.log(f"  round {r + 1} {v:12s} wall {row['wall_ns']:7.0f} ns/commit  commit thread CPU "
                          f"{row['commit_cpu_ns']:7.0f}  capture thread {row['capture_thread_ns']:5.0f}  spool thread {row['spool_thread_ns']:5.0f}  uploader {row['uploader_ns']:5.0f}  S3 server {row['server_ns']:5.0f}")
    finally:
        b.close()
    summary(runs, a.rounds)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"n": a.n, "rounds": a.rounds, "builds": builds, "runs": runs}, f, indent=1)


# The variants without libreplica.
FLOORS = ("plain", "plain-thread", "plain-reader", "plain-shim")


def summary(runs, rounds):
    def spread(xs):
        return f"{statistics.median(xs):7.0f} ({min(xs):.0f}-{max(xs):.0f})"
    print(f"\nper commit, median (min-max) of {rounds} rounds:")
    def ratio(base, rs):
        ratios = [p["wall_ns"] / x["wall_ns"] for p, x in zip(runs[base], rs)]
        return f"{statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f})"
    # Off the CPU (wall minus CPU): the committing thread waiting, mostly for SQLite's fsyncs
    # at checkpoints, or ready to run but preempted. Its spread is apart from the CPU's.
    print(f"{'':12s} {'wall ns':>22s} {'commit thread CPU ns':>22s} {'off CPU ns':>22s} {'ratio to plain (tx/s)':>24s} {'to plain-thread':>24s}")
    for v, rs in runs.items():
        wall = [x["wall_ns"] for x in rs]
        cpu = [x["commit_cpu_ns"] for x in rs]
        off = [w - c for w, c in zip(wall, cpu)]
        print(f"{v:12s} {spread(wall):>22s} {spread(cpu):>22s} {spread(off):>22s} {ratio('plain', rs):>24s} {ratio('plain-thread', rs):>24s}")
    # Paired by round (a round's runs share the machine's state): the steadier comparison.
    builds = [v for v in runs if v not in FLOORS]
    for v in builds:
        rs = [x for x in runs[v] if "restarts" in x]
        if rs:
            print(f"{v}: {statistics.median(x['restarts'] for x in rs):.0f} log restarts per run, restart wait "
                  f"p50 {statistics.median(x['restart_p50_us'] for x in rs):.0f} us (median over rounds), "
                  f"p99 {max(x['restart_p99_us'] for x in rs):.0f} us (largest)")
    pairs = [(v, builds[0]) for v in builds[1:]]
    pairs += [(v, "plain-thread") for v in runs if v not in ("plain", "plain-thread")]
    if "plain-shim" in runs:
        # The shim alone against plain SQLite (neither has a second thread), and each build
        # against the shim alone: what capture and its threads add to the wrappers.
        pairs += [("plain-shim", "plain")] + [(v, "plain-shim") for v in builds]
    for v, base in pairs:
        for key in ("commit_cpu_ns", "wall_ns"):
            d = [x[key] - y[key] for x, y in zip(runs[v], runs[base])]
            print(f"{v} - {base}, {key} per round: median {statistics.median(d):+.0f} ({min(d):+.0f} to {max(d):+.0f})")


if __name__ == "__main__":
    main()
