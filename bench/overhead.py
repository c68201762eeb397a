#!/usr/bin/python3
"""Commit overhead of libreplica against plain SQLite, in the same run.

Each measurement runs in its own process (the extension's VFS is process-global), and the
variants are interleaved (plain, libreplica, plain, libreplica, ...) so machine noise hits
both alike. Prints medians and the ratio; writes JSON to bench/results/.

Workloads: N single-row autocommit inserts (~200 bytes, WAL, synchronous=NORMAL), and a bulk
load (one transaction of ~64 MiB). The replica is a local directory (file://); the S3
comparison with Litestream is the benchmark issue's job.
"""
import argparse, json, os, statistics, subprocess, sys, tempfile, time

CHILD = r'''
import os, sqlite3, sys, time, json
mode, work, n, bulk_mb, so = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
if mode == "libreplica":
    boot = sqlite3.connect(":memory:")
    boot.enable_load_extension(True)
    boot.load_extension(so)
db = sqlite3.connect(os.path.join(work, "bench.db"), isolation_level=None)
db.execute("PRAGMA journal_mode=WAL")
db.execute("PRAGMA synchronous=NORMAL")
db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, payload TEXT)")
payload = "x" * 200
t0 = time.perf_counter()
for i in range(n):
    db.execute("INSERT INTO t(payload) VALUES (?)", (payload,))
t1 = time.perf_counter()
db.execute("CREATE TABLE b(id INTEGER PRIMARY KEY, payload BLOB)")
blob = os.urandom(4000)
rows = bulk_mb * 1024 * 1024 // 4000
t2 = time.perf_counter()
db.execute("BEGIN")
for i in range(rows):
    db.execute("INSERT INTO b(payload) VALUES (?)", (blob,))
db.execute("COMMIT")
t3 = time.perf_counter()
out = {"autocommit_tps": n / (t1 - t0), "bulk_mb_s": bulk_mb / (t3 - t2)}
if mode == "libreplica":
    s0 = time.perf_counter()
    db.execute("SELECT replica_sync(120000)").fetchone()
    out["final_sync_s"] = time.perf_counter() - s0
    row = db.execute("SELECT uploads, snapshots, captured_txns FROM replica_status()").fetchone()
    out["uploads"], out["snapshots"], out["captured_txns"] = row
print(json.dumps(out))
'''


def run(mode, n, bulk_mb, so):
    with tempfile.TemporaryDirectory(prefix="replica-bench-") as work:
        env = dict(os.environ)
        env["REPLICA_URL"] = "file://" + os.path.join(work, "replicas")
        env["REPLICA_CONFIG"] = "off"
        out = subprocess.run(["/usr/bin/python3", "-c", CHILD, mode, work, str(n), str(bulk_mb), so],
                             env=env, capture_output=True, text=True, timeout=600)
        if out.returncode != 0:
            sys.exit(f"{mode} run failed:\n{out.stderr}")
        return json.loads(out.stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--so", default="target/release/libreplica.so")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("-n", type=int, default=20000)
    ap.add_argument("--bulk-mb", type=int, default=64)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.n, args.bulk_mb = 3, 5000, 16
    so = os.path.abspath(args.so)
    if so.endswith(".so"):
        so = so[:-3]
    results = {"plain": [], "libreplica": []}
    for r in range(args.rounds):
        for mode in ("plain", "libreplica"):
            res = run(mode, args.n, args.bulk_mb, so)
            results[mode].append(res)
            print(f"round {r + 1} {mode:10s} " + " ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in res.items()), flush=True)
    med = lambda mode, key: statistics.median(x[key] for x in results[mode])
    summary = {
        "autocommit_tps_plain": med("plain", "autocommit_tps"),
        "autocommit_tps_libreplica": med("libreplica", "autocommit_tps"),
        "bulk_mb_s_plain": med("plain", "bulk_mb_s"),
        "bulk_mb_s_libreplica": med("libreplica", "bulk_mb_s"),
    }
    summary["autocommit_ratio"] = summary["autocommit_tps_libreplica"] / summary["autocommit_tps_plain"]
    summary["bulk_ratio"] = summary["bulk_mb_s_libreplica"] / summary["bulk_mb_s_plain"]
    print()
    print(f"{args.n} autocommit inserts: plain {summary['autocommit_tps_plain']:.0f} tx/s, "
          f"libreplica {summary['autocommit_tps_libreplica']:.0f} tx/s, ratio {summary['autocommit_ratio']:.3f} (target >= 0.97)")
    print(f"bulk load {args.bulk_mb} MiB in one transaction: plain {summary['bulk_mb_s_plain']:.1f} MB/s, "
          f"libreplica {summary['bulk_mb_s_libreplica']:.1f} MB/s, ratio {summary['bulk_ratio']:.3f} (target >= 0.95)")
    for key, target in (("autocommit_ratio", 0.97), ("bulk_ratio", 0.95)):
        if summary[key] < target:
            print(f"TARGET NOT MET: {key} = {summary[key]:.3f} < {target}")
    sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip() or "unknown"
    os.makedirs("bench/results", exist_ok=True)
    path = f"bench/results/{time.strftime('%Y-%m-%d')}-{sha}-overhead.json"
    with open(path, "w") as f:
        json.dump({"args": vars(args), "summary": summary, "runs": results, "machine": os.uname()._asdict() if hasattr(os.uname(), "_asdict") else list(os.uname())}, f, indent=1)
    print("results:", path)


if __name__ == "__main__":
    main()
