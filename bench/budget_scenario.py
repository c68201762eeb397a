"""Workload 8 of bench/bench.py: request budgets (REPLICA_REQUEST_BUDGET).

At 1, 50 and 500 tx/s with budgets of 100k, 500k and 2.6M requests a month, each run is
counted whole, from the writer's start (the start-up listing, lease and snapshot included)
to the end of its window: every request the S3 server saw, of any class, must stay within
the budget pro-rated to the run (budget x run seconds / seconds of this calendar month).
The lag is that of the commits the budget made durable inside the window (the run then
ends with replica_sync(), which goes ahead of any budget, so later commits are counted as
left for it). An idle database under a budget must make no request at all. The default
setting's and Litestream's lag and requests at the same rate come from workload 2 of the
same run, when it ran.
"""
import calendar, time

BUDGETS = [100_000, 500_000, 2_600_000]


def month_seconds(now=None):
    t = time.gmtime(now if now is not None else time.time())
    return calendar.monthrange(t.tm_year, t.tm_mon)[1] * 86400


def first_put_s(budget):
    """How long a fresh replica waits for its first snapshot under `budget`: the boot-time
    check and the uploader's listing put the bucket two requests in debt, and the snapshot
    needs three (the lease read and written, the file), at the budget's rate; plus slack."""
    return 5 * month_seconds() / budget + 60


def pct(values, p):
    v = sorted(values)
    if not v:
        return None
    return v[min(len(v) - 1, max(0, int(round(p / 100 * (len(v) - 1)))))]


def run(b, a, lag_requests):
    quick = a.quick
    rates = [0, 1, 50] if quick else [0, 1, 50, 500]
    budgets = [2_600_000] if quick else BUDGETS
    window = 5 if quick else 45
    out = {"window_s": window, "month_s": month_seconds(), "points": []}
    for rate in rates:
        for budget in (budgets[:1] if rate == 0 else budgets):
            res = b.run("libreplica", "rate", rate=rate, n=int(rate * window), window=window, budget=budget)
            total = sum(res["requests_run"].values())
            allowed = budget * res["run_s"] / out["month_s"]
            lag = res.get("lag_in_window_ms", [])
            point = {"rate": rate, "budget": budget, "run_s": res["run_s"], "requests_run": res["requests_run"],
                     "requests": total, "allowed": allowed, "window_requests": sum(res["requests"].values()),
                     "commits": res.get("commits", 0), "durable_in_window": len(lag),
                     "lag_p50_ms": pct(lag, 50), "lag_p99_ms": pct(lag, 99)}
            by = lag_requests.get(str(rate), {})
            for v in ("libreplica", "litestream"):
                if v in by:
                    point[v] = {k: by[v].get(k) for k in ("lag_p50_ms", "lag_p99_ms", "billed_per_min")}
            out["points"].append(point)
            lagtxt = "" if point["lag_p50_ms"] is None else f", lag p50 {point['lag_p50_ms']:.0f} p99 {point['lag_p99_ms']:.0f} ms"
            b_log(f"  {rate:4d} tx/s budget {budget:>9,}/month: {total} requests in {res['run_s']:.0f} s "
                  f"(allowed {allowed:.1f}); {len(lag)} of {point['commits']} commits durable in the window{lagtxt}")
            if rate == 0 and point["window_requests"] > 0:
                b.missed.append(f"budget, idle: {point['window_requests']} requests in the window (target 0)")
            elif total > allowed:
                b.missed.append(f"budget {budget}/month at {rate} tx/s: {total} requests in {res['run_s']:.0f} s, "
                                f"over the {allowed:.1f} the budget allows")
    return out


def b_log(msg):
    print(msg, flush=True)


def markdown(res):
    bu = res.get("budget")
    if not bu:
        return []
    out = ["", f"Request budgets (REPLICA_REQUEST_BUDGET; {bu['window_s']} s windows; each run counted whole, "
           f"start-up included, against the budget pro-rated to it; lag of the commits durable within the window; "
           f"default and Litestream from workload 2):", "",
           "| rate | budget / month | requests (allowed) | durable in window | lag p50 / p99 (ms) | default: lag p99, billed/min | Litestream: lag p99, billed/min |",
           "| --- | --- | --- | --- | --- | --- | --- |"]

    def other(p, v):
        o = p.get(v)
        if not o or o.get("lag_p99_ms") is None:
            return "–"
        return f"{o['lag_p99_ms']:.0f} ms, {o['billed_per_min']:.1f}"
    for p in bu["points"]:
        lag = "–" if p["lag_p50_ms"] is None else f"{p['lag_p50_ms']:.0f} / {p['lag_p99_ms']:.0f}"
        out.append(f"| {p['rate']} tx/s | {p['budget']:,} | {p['requests']} ({p['allowed']:.1f}) | "
                   f"{p['durable_in_window']} of {p['commits']} | {lag} | {other(p, 'libreplica')} | {other(p, 'litestream')} |")
    return out
