#!/usr/bin/env python3
"""The table of bench/run.sh: one row per scenario, ghl_fdw's number, its
peer's, their ratio, the target and whether it is met, from the "KEY VALUE"
lines run.sh wrote.  Exits 1 when a row misses its target or a run failed.
Not part of the test suite.

    bench/report.py RESULTS LIMIT INTERVAL_MS
"""
import math
import sys

PAGE_LIMIT = 500


def load(path):
    values = {}
    with open(path) as f:
        for line in f:
            key, _, value = line.rstrip("\n").partition(" ")
            values[key] = value
    return values


def number(values, key):
    """A measurement, or NaN when the run that should have made it failed."""
    try:
        return float(values.get(key, ""))
    except ValueError:
        return math.nan


def main():
    values = load(sys.argv[1])
    limit, interval_ms = int(sys.argv[2]), int(sys.argv[3])
    allowed_per_s = limit * 1000 / interval_ms
    v = lambda key: number(values, key)
    rows = []

    def row(scenario, fdw, peer, ratio, target, ok, unit=""):
        rows.append((scenario, f"{fdw:.2f}{unit}", f"{peer:.2f}{unit}", f"{ratio:.2f}",
                     target, "yes" if ok else "NO"))

    contacts = int(v("count_rows")) if not math.isnan(v("count_rows")) else 0
    same = values.get("same_rows") == "yes" and values.get("sync_status") == "succeeded"
    ratio = v("count") / v("fetch_only")
    row(f"count(*), {contacts} contacts vs fetch-only client", v("count"), v("fetch_only"),
        ratio, "<= 1.30", ratio <= 1.3, " s")
    ratio = v("select_all") / v("count")
    row("SELECT * (raw included) vs count(*)", v("select_all"), v("count"), ratio, "<= 1.30",
        ratio <= 1.3 and v("select_all_rows") == contacts, " s")
    ratio = v("sync") / v("plpgsql")
    row("full contacts sync vs PL/pgSQL http_post loop", v("sync"), v("plpgsql"), ratio,
        "<= 0.70", ratio <= 0.7 and same, " s")
    ratio = v("sync") / v("etl")
    row("full contacts sync vs Python requests+psycopg2 ETL", v("sync"), v("etl"), ratio,
        "<= 0.25", ratio <= 0.25 and same, " s")
    large, small = v("rss_large") / 1024, v("rss_small") / 1024
    row(f"peak RSS, SELECT * of {int(v('rss_large_rows'))} vs {int(v('rss_small_rows'))} contacts",
        large, small, large - small, "<= +10 MB", large - small <= 10, " MB")

    pages = math.ceil(v("throttled_sync_rows") / PAGE_LIMIT) if v("throttled_sync_rows") > 0 else 0
    ceiling = pages / allowed_per_s
    ratio = v("throttled_sync") / ceiling if ceiling else math.nan
    sync_ok = values.get("throttled_sync_status") == "succeeded"
    row(f"throttled full sync, {pages} pages vs the limit's time", v("throttled_sync"), ceiling,
        ratio, "<= 1.20", ratio <= 1.2 and sync_ok, " s")
    rate = v("fanout_requests") / v("fanout")
    fanout_ok = values.get("fanout_status") == "ok"
    row(f"throttled fan-out, notes of {values.get('fanout_contacts')} contacts vs the limit",
        rate, allowed_per_s, rate / allowed_per_s, ">= 0.90",
        rate / allowed_per_s >= 0.9 and fanout_ok, "/s")
    if "webhooks" in values:
        rate = v("webhooks")
        row("webhook replay vs the goal", rate, 1000, rate / 1000, ">= 1.00",
            values.get("webhooks_pass") == "PASS", "/s")

    header = ("scenario", "ghl_fdw", "peer", "ratio", "target", "ok")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
    for r in [header, tuple("-" * w for w in widths)] + rows:
        print(" | ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                         for i, (cell, w) in enumerate(zip(r, widths))))
    print()
    print(f"peers: PL/pgSQL loop over a PL/Python http_post() (pgsql-http's shape; Debian 12 has "
          f"no pgsql-http), one transaction; ETL commits every page; "
          f"same rows and values as the sync: {values.get('same_rows')}")
    print(f"throttled sync: {int(v('throttled_sync_requests'))} requests, "
          f"{int(v('throttled_sync_429'))} answered 429 by the mock, "
          f"run status {values.get('throttled_sync_status')}")
    print(f"throttled fan-out: {int(v('fanout_requests'))} requests in {v('fanout'):.2f} s, "
          f"{int(v('fanout_429'))} answered 429 by the mock, {values.get('fanout_notes')} notes, "
          f"client {values.get('fanout_status')}")
    return 0 if all(r[5] == "yes" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
