#!/usr/bin/env bash
# Concurrency benchmark: a fan_out scan of the notes of every contact (one
# request per contact) against the mock answering each notes request after
# a latency, at each max_concurrency given, under the API's rate limit.
# Prints the time, the requests, the 429s and the throughput of each run,
# and checks that every run returns the same rows.  Not part of the test
# suite.
#
#   bench/concurrency.sh                              500 contacts, 300 ms, 100 per 10 s, 1 and 8
#   GHL_BENCH_LIMIT=100000 bench/concurrency.sh       no rate limit in the way
#   GHL_BENCH_CONCURRENCY="1 4 8 16" GHL_BENCH_LATENCY_MS=100 bench/concurrency.sh
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
# shellcheck source=test/lib.sh
. test/lib.sh

contacts=${GHL_BENCH_CONTACTS:-500}
latency_ms=${GHL_BENCH_LATENCY_MS:-300}
limit=${GHL_BENCH_LIMIT:-100}
interval_ms=${GHL_BENCH_INTERVAL_MS:-10000}
concurrency=${GHL_BENCH_CONCURRENCY:-1 8}

if [ "${1:-}" != "--inner" ]; then
    take_test_lock "$@"
    ensure_packages
    build_and_install >/dev/null
    exec pg_virtualenv -t -o "shared_preload_libraries=pg_cron,ghl_fdw" \
        -o "cron.database_name=ghl_bench" "$0" --inner
fi

start_mock --contacts "$contacts" --seed 42 --rate-limit "$limit" --rate-interval-ms "$interval_ms"
work=$(mktemp -d)
trap 'stop_mock; rm -rf "$work"' EXIT

create_bench_database
psql -X -q -d ghl_bench -c "ALTER FOREIGN TABLE ghl.notes OPTIONS (ADD fan_out 'true')"
curl -sS -X POST -H 'Content-Type: application/json' \
    --data "{\"path\": \"^/contacts/[^/]+/notes\$\", \"kind\": \"delay\", \"delay_ms\": $latency_ms, \"times\": -1}" \
    "$MOCK_URL/_mock/faults" >/dev/null

echo "== fan_out over $contacts contacts, $latency_ms ms per notes request, limit $limit per $interval_ms ms"
printf '%-16s %9s %9s %6s %11s %9s\n' max_concurrency seconds requests 429s requests/s "% limit"
for c in $concurrency; do
    # a fresh rate window for every run
    sleep $((interval_ms / 1000 + 1))
    curl -sS -X DELETE "$MOCK_URL/_mock/stats" >/dev/null
    psql -X -q -A -t -d ghl_bench -v ON_ERROR_STOP=1 >"$work/run.$c" <<SQL
ALTER SERVER ghl OPTIONS (ADD max_concurrency '$c');
SELECT extract(epoch FROM clock_timestamp()) AS started \gset
SELECT count(*), md5(string_agg(id || coalesce(body, ''), ',')) FROM ghl.notes;
SELECT round((extract(epoch FROM clock_timestamp()) - :started)::numeric, 2);
ALTER SERVER ghl OPTIONS (DROP max_concurrency);
SQL
    curl -sS "$MOCK_URL/_mock/stats" >"$work/stats.$c"
    python3 - "$work/run.$c" "$work/stats.$c" "$c" "$limit" "$interval_ms" <<'PY'
import json, sys
lines = open(sys.argv[1]).read().split()
stats = json.load(open(sys.argv[2]))
seconds, c = float(lines[-1]), sys.argv[3]
limit, interval_ms = int(sys.argv[4]), int(sys.argv[5])
rate = stats["requests"] / seconds
print(f"{c:<16} {seconds:9.2f} {stats['requests']:9d} {stats['rate_limited']:6d} "
      f"{rate:11.2f} {100 * rate / (limit * 1000 / interval_ms):8.1f}%")
PY
    head -1 "$work/run.$c" >"$work/rows.$c"
done
if [ "$(cat "$work"/rows.* | sort -u | wc -l)" -eq 1 ]; then
    echo "every run returned the same rows ($(cut -d'|' -f1 "$work/rows.${concurrency%% *}") notes)"
else
    echo "FAIL: the runs returned different rows"; cat "$work"/rows.*; exit 1
fi
