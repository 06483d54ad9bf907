#!/usr/bin/env bash
# Agency benchmark: an agency server with a rotating Company refresh token,
# create_location_servers() for the app's installs, then a full contacts
# sync of every location one after the other, and of all of them at once
# (one session each, as their pg_cron jobs would run).  The mock answers
# every request after a latency, so waiting on the API dominates as it
# does on the real service.  Prints both times and the token requests.
# Not part of the test suite.
#
#   bench/agency.sh                                   5 locations, 1000 contacts, 100 ms
#   GHL_BENCH_LOCATIONS=10 GHL_BENCH_LATENCY_MS=100 bench/agency.sh
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
# shellcheck source=test/lib.sh
. test/lib.sh

locations=${GHL_BENCH_LOCATIONS:-5}
contacts=${GHL_BENCH_CONTACTS:-1000}
latency_ms=${GHL_BENCH_LATENCY_MS:-100}

if [ "${1:-}" != "--inner" ]; then
    take_test_lock "$@"
    ensure_packages
    build_and_install >/dev/null
    exec pg_virtualenv -t -o "shared_preload_libraries=pg_cron,ghl_fdw" \
        -o "cron.database_name=ghl_bench" -o "max_worker_processes=32" "$0" --inner
fi

start_mock --contacts "$contacts" --seed 42 --rate-limit 100 --rate-interval-ms 10000 \
    --extra-locations "$((locations - 1))" --latency-ms "$latency_ms"
trap 'stop_mock' EXIT

mock_post() {
    curl -sS -X POST -H 'Content-Type: application/json' --data "$2" "$MOCK_URL$1"
}
seed=$(mock_post /oauth/token '{"grant_type": "authorization_code", "code": "bench",
    "client_id": "mock-client", "client_secret": "mock-secret", "user_type": "Company"}' |
    "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["refresh_token"])')

createdb ghl_bench
psql -X -q -A -t -d ghl_bench -v ON_ERROR_STOP=1 <<SQL
SET client_min_messages = warning;
CREATE EXTENSION ghl_fdw;
CREATE SERVER agency FOREIGN DATA WRAPPER ghl_fdw
    OPTIONS (location_id 've9EPM428h8vShlRW1KT', base_url '$MOCK_URL', app_id 'mock-app',
             max_retries '5', page_size '100', sync_schema 'bench_rankr');
CREATE USER MAPPING FOR CURRENT_USER SERVER agency OPTIONS (client_id 'mock-client',
    client_secret 'mock-secret', refresh_token '$seed', user_type 'Company');
SELECT count(*) || ' location servers created'
FROM ghl_fdw.create_location_servers('agency') WHERE action = 'created';
SQL
servers=$(psql -X -A -t -d ghl_bench -c \
    "SELECT srvname FROM pg_foreign_server WHERE srvname LIKE 'agency\\_%' ORDER BY 1")

# the rate window of 100 per 10 s per location: each run starts with a fresh one
sync_sql() {
    echo "SELECT string_agg(status, ',') FROM ghl_fdw.sync('$1', '{contacts}', true);"
}
now() { "$PYTHON" -c 'import time; print(time.monotonic())'; }
since() { "$PYTHON" -c "import time; print(round(time.monotonic() - $1, 2))"; }

echo "== full contacts sync of $locations locations x $contacts contacts, $latency_ms ms per request"
sleep 11
curl -sS -X DELETE "$MOCK_URL/_mock/stats" >/dev/null
start=$(now)
for s in $servers; do
    psql -X -q -A -t -d ghl_bench -v ON_ERROR_STOP=1 -c "$(sync_sql "$s")" >/dev/null
done
serial=$(since "$start")

sleep 11
start=$(now)
pids=()
for s in $servers; do
    psql -X -q -A -t -d ghl_bench -v ON_ERROR_STOP=1 -c "$(sync_sql "$s")" >/dev/null &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
concurrent=$(since "$start")

curl -sS "$MOCK_URL/_mock/stats" | "$PYTHON" -c '
import json, sys
s = json.load(sys.stdin)
print("token requests %(token_requests)d, location token requests %(location_token_requests)d, "
      "429s %(rate_limited)d, requests %(requests)d" % s)'
printf 'one after the other: %6.2f s\n' "$serial"
printf 'all at once:         %6.2f s\n' "$concurrent"
