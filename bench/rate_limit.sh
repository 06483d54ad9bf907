#!/usr/bin/env bash
# Rate-limit benchmark: 4 backends scan for 60 s against the mock enforcing
# a scaled-down limit of 20 requests per 2 s.  Passes when no error reaches
# a client, 429s are at most 1 % of the requests and successful requests
# reach at least 90 % of the limit.  Not part of the test suite.
#
#   bench/rate_limit.sh                  ghl_fdw preloaded: one shared governor
#   GHL_BENCH_PRELOAD=0 bench/rate_limit.sh   each backend paces alone
#   GHL_BENCH_SECONDS=20 bench/rate_limit.sh  a shorter run
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
# shellcheck source=test/lib.sh
. test/lib.sh

seconds=${GHL_BENCH_SECONDS:-60}
backends=${GHL_BENCH_BACKENDS:-4}
limit=20
interval_ms=2000

if [ "${1:-}" != "--inner" ]; then
    take_test_lock "$@"
    ensure_packages
    build_and_install >/dev/null
    preload=pg_cron,ghl_fdw
    [ "${GHL_BENCH_PRELOAD:-1}" = 0 ] && preload=pg_cron
    exec pg_virtualenv -t -o "shared_preload_libraries=$preload" \
        -o "cron.database_name=ghl_bench" "$0" --inner
fi

start_mock --contacts 100 --seed 42 --rate-limit "$limit" --rate-interval-ms "$interval_ms"
work=$(mktemp -d)
trap 'stop_mock; rm -rf "$work"' EXIT

create_bench_database
curl -sS -X DELETE "$MOCK_URL/_mock/stats" >/dev/null

echo "== $backends backends scanning for $seconds s against $limit requests per $interval_ms ms" \
     "(shared_preload_libraries: $(psql -X -A -t -d ghl_bench -c 'SHOW shared_preload_libraries'))"
started=$(date +%s.%N)
pids=()
for i in $(seq 1 "$backends"); do
    psql -X -q -A -t -d ghl_bench -v ON_ERROR_STOP=1 >"$work/out.$i" 2>"$work/err.$i" <<SQL &
DO \$\$
DECLARE
    scans int := 0;
    stop timestamptz := clock_timestamp() + interval '$seconds seconds';
BEGIN
    WHILE clock_timestamp() < stop LOOP
        PERFORM count(*) FROM ghl.contacts;
        scans := scans + 1;
    END LOOP;
    RAISE NOTICE 'scans: %', scans;
END \$\$;
SQL
    pids+=($!)
done
client_errors=0
for pid in "${pids[@]}"; do
    wait "$pid" || client_errors=$((client_errors + 1))
done
ended=$(date +%s.%N)
grep -h ERROR "$work"/err.* || true

curl -sS "$MOCK_URL/_mock/stats" >"$work/stats.json"
psql -X -A -t -d ghl_bench -F ' ' -c \
    "SELECT requests, retries, rate_limited, throttle_waits, throttle_wait_ms FROM ghl_fdw.request_stats WHERE server_name = 'ghl'" \
    >"$work/fdw_stats" || echo "0 0 0 0 0" >"$work/fdw_stats"
scans=$(sed -n 's/.*scans: \([0-9]*\).*/\1/p' "$work"/err.* | paste -sd+ | bc)

python3 - "$work/stats.json" "$started" "$ended" "$client_errors" "$scans" \
    "$limit" "$interval_ms" "$(cat "$work/fdw_stats")" <<'PY'
import json, sys
stats = json.load(open(sys.argv[1]))
started, ended = float(sys.argv[2]), float(sys.argv[3])
client_errors, scans = int(sys.argv[4]), int(sys.argv[5] or 0)
limit, interval_ms = int(sys.argv[6]), int(sys.argv[7])
fdw = sys.argv[8].split() or ["?"] * 5
elapsed = ended - started
requests, limited = stats["requests"], stats["rate_limited"]
ok = requests - limited
allowed = limit * 1000 / interval_ms
throughput = ok / elapsed
share_429 = 100.0 * limited / requests if requests else 0.0
share_limit = 100.0 * throughput / allowed
print(f"elapsed {elapsed:.1f} s, scans {scans}, client errors {client_errors}")
print(f"mock: {requests} requests, {limited} answered 429 ({share_429:.2f} %)")
print(f"throughput {throughput:.2f} requests/s = {share_limit:.1f} % of the limit ({allowed:.0f}/s)")
print(f"ghl_fdw.request_stats: requests {fdw[0]}, retries {fdw[1]}, 429s {fdw[2]}, "
      f"throttle waits {fdw[3]} ({fdw[4]} ms)")
good = client_errors == 0 and share_429 <= 1.0 and share_limit >= 90.0
print("PASS" if good else "FAIL")
sys.exit(0 if good else 1)
PY
