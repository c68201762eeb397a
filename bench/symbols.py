#!/usr/bin/python3
"""The committing thread's self time in chosen symbols, run by run, across variants.

`/usr/bin/python3 bench/symbols.py --so libreplica=target/release/libreplica.so --rounds 5`
(as root, or with `kernel.perf_event_paranoid` ≤ 1). Each round runs bench.py's autocommit
writer (one database, a 200-byte row per INSERT) as `plain-thread`, `plain-reader` and each
build once, in a rotating order, under `perf record` on cpu-clock (a sample every 100 µs of
CPU time, no call graphs, enabled only between "go" and "done"), and counts the samples whose
leaf is each symbol on the committing thread. Every run's figure is printed, not only a
median: one run of a symbol varies by tens of ns per commit. ns per commit are samples ×
period / commits; perf's own cost inflates them all alike. Stdlib only.
"""
import argparse, json, os, statistics, subprocess, sys, tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402
from profile import PERF, Perf  # noqa: E402

PERIOD_NS = 100_000
SYMBOLS = ["mark_buffer_dirty", "copy_folio_from_iter_atomic", "filemap_get_entry",
           "pthread_mutex_lock@@GLIBC_2.2.5", "__GI___pthread_mutex_unlock_usercnt"]


def self_samples(data):
    """Samples per leaf symbol on the writer's main thread (the threads of libreplica and of
    the log reader carry names of their own)."""
    out = subprocess.run([PERF, "report", "-q", "-i", data, "--sort", "comm,sym", "--stdio", "-n"],
                         capture_output=True, text=True, timeout=600).stdout
    counts = {}
    for line in out.splitlines():
        f = line.split()
        if len(f) > 4 and f[2] == "python3":
            counts[" ".join(f[4:])] = counts.get(" ".join(f[4:]), 0) + int(f[1])
    return counts


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--so", action="append", default=[], metavar="NAME=PATH")
    ap.add_argument("--server", default="target/release/examples/s3_server")
    ap.add_argument("--n", type=int, default=200000, help="commits per run")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--symbol", action="append", help="a symbol to count (default: the kernel's write path and glibc's mutex)")
    ap.add_argument("--json", help="write every run's figures here")
    a = ap.parse_args()
    builds = bench.named_builds(a.so)
    symbols = a.symbol or SYMBOLS
    a.server = os.path.abspath(a.server)
    a.so = next(iter(builds.values()), os.path.abspath("target/release/libreplica"))
    a.quick, a.settle, a.litestream = True, 0.5, None
    b = bench.Bench(a)
    work = tempfile.mkdtemp(prefix="replica-symbols-")
    variants = ["plain-thread", "plain-reader"] + list(builds)
    runs = {v: [] for v in variants}
    try:
        for r in range(a.rounds):
            for v in variants[r % len(variants):] + variants[:r % len(variants)]:
                if v in builds:
                    b.args.so = builds[v]
                data = os.path.join(work, f"{v}-{r}.data")
                p = Perf(work, f"rec-{v}-{r}", ["record", "-e", "cpu-clock", "-c", str(PERIOD_NS), "-o", data])
                b.run("libreplica" if v in builds else v, "autocommit", n=a.n, wrap=p.wrap, around=p.around())
                counts = self_samples(data)
                os.remove(data)
                ns = lambda k: counts.get(k, 0) * PERIOD_NS / a.n
                runs[v].append({"total": sum(counts.values()) * PERIOD_NS / a.n} | {s: ns(s) for s in symbols})
                bench.log(f"  round {r + 1} {v:12s} " + "  ".join(f"{s} {runs[v][-1][s]:.0f}" for s in ["total"] + symbols))
    finally:
        b.close()
        bench.shutil.rmtree(work, ignore_errors=True)
    print(f"\nthe committing thread's self time, ns per commit, each of {a.rounds} runs (median):")
    for s in ["total"] + symbols:
        print(s)
        for v in variants:
            xs = [x[s] for x in runs[v]]
            print(f"  {v:12s} {statistics.median(xs):6.0f}  (" + ", ".join(f"{x:.0f}" for x in xs) + ")")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"n": a.n, "rounds": a.rounds, "period_ns": PERIOD_NS, "builds": builds, "runs": runs}, f, indent=1)


if __name__ == "__main__":
    main()
