#!/usr/bin/env bash
# The release benchmark (make bench): ghl_fdw side by side with its peers,
# in one throwaway cluster against one mock GHL API, ending in one table
# (scenario | ghl_fdw | peer | ratio | target | ok).  Not part of the test
# suite; the scenarios and what each row means are in doc/ghl_fdw.md,
# "Benchmarks".
#
# The mock serves four locations: the main one (GHL_BENCH_CONTACTS), two
# for the memory rows (GHL_BENCH_MEM_SMALL, GHL_BENCH_MEM_LARGE) and one for
# the fan-out (GHL_BENCH_FANOUT_CONTACTS).  It answers without limits first;
# then it is switched to 100 requests per 10 s and 300 ms of latency on
# every request for the throttled rows.
#
#   bench/run.sh                                       the issue's sizes
#   GHL_BENCH_CONTACTS=20000 GHL_BENCH_MEM_LARGE=50000 GHL_BENCH_FANOUT_CONTACTS=300 bench/run.sh
#   GHL_BENCH_REPEAT=1 GHL_BENCH_WEBHOOKS=0 bench/run.sh
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
# shellcheck source=test/lib.sh
. test/lib.sh

# what only the peers need: PL/Python for http_post(), the ETL's libraries
GHL_PACKAGES="$GHL_PACKAGES postgresql-plpython3-15 python3-requests python3-psycopg2"

contacts=${GHL_BENCH_CONTACTS:-100000}
mem_small=${GHL_BENCH_MEM_SMALL:-10000}
mem_large=${GHL_BENCH_MEM_LARGE:-200000}
fanout_contacts=${GHL_BENCH_FANOUT_CONTACTS:-2000}
repeat=${GHL_BENCH_REPEAT:-3}
webhooks=${GHL_BENCH_WEBHOOKS:-1}
limit=100
interval_ms=10000
latency_ms=300

main_location=ve9EPM428h8vShlRW1KT
small_location=benchMemorySmall
large_location=benchMemoryLarge
fanout_location=benchFanOut

if [ "${1:-}" != "--inner" ]; then
    take_test_lock "$@"
    ensure_packages
    build_and_install >/dev/null
    # a missed target is the verdict, not a failure of the cluster: keep
    # pg_virtualenv from dumping the server log over the table
    verdict=$(mktemp)
    GHL_BENCH_VERDICT=$verdict pg_virtualenv -t -o "shared_preload_libraries=pg_cron,ghl_fdw" \
        -o "cron.database_name=ghl_bench" -o "max_worker_processes=32" "$0" --inner
    status=$(cat "$verdict")
    rm -f "$verdict"
    exit "${status:-1}"
fi

work=$(mktemp -d)
trap 'stop_mock; rm -rf "$work"' EXIT
results=$work/results

# note KEY VALUE: one measurement for the table
note() {
    echo "$1 $2" >>"$results"
}

bench_sql() {
    psql -X -q -A -t -d ghl_bench -v ON_ERROR_STOP=1 "$@"
}

# The seconds one statement takes, as psql's \timing sees it (its output
# goes to $work/out); fails when the statement does.
timed_sql() {
    bench_sql -c '\timing on' -c "$1" >"$work/out" || return 1
    sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' "$work/out" | awk '{ printf "%.3f\n", $1 / 1000 }'
}

# The fastest of $repeat runs of a command printing seconds first.
best_of() {
    local i
    for i in $(seq 1 "$repeat"); do
        "$@" | awk '{ print $1 }'
    done | sort -g | head -1
}

# A server on one of the mock's locations, its foreign tables in a schema
# of the same name and its sync tables in sync_schema <name>_sync.
add_server() {
    local name=$1 location=$2
    bench_sql <<SQL
CREATE SERVER $name FOREIGN DATA WRAPPER ghl_fdw
    OPTIONS (location_id '$location', base_url '$MOCK_URL', max_retries '5',
             sync_schema '${name}_sync');
CREATE USER MAPPING FOR CURRENT_USER SERVER $name OPTIONS (access_token 'pit-$location');
CREATE SCHEMA $name;
IMPORT FOREIGN SCHEMA ghl FROM SERVER $name INTO $name;
SQL
}

# until no sync worker (one refreshing statistics after its answer) is left
wait_for_sync_workers() {
    while [ "$(bench_sql -c "SELECT count(*) FROM pg_stat_activity
                             WHERE backend_type = 'ghl_fdw sync'")" != 0 ]; do
        sleep 0.1
    done
}

mock_stats() {
    curl -sS "$MOCK_URL/_mock/stats?location=$1"
}

json_field() {
    "$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"
}

# count, checksum of the ids and checksum of every synced value of a
# contacts table of the sync's shape
table_digest() {
    bench_sql -c "SELECT count(*), md5(string_agg(id, ',' ORDER BY id)),
        md5(string_agg(concat_ws('|', id, location_id, first_name, last_name, name, email,
            phone, company_name, source, type, assigned_to, address1, city, state,
            postal_code, country, website, timezone, dnd, tags, custom_fields, business_id,
            date_added, date_updated), ',' ORDER BY id))
        FROM $1 WHERE deleted_at IS NULL"
}

echo "== starting the mock: $contacts contacts, $mem_small and $mem_large for memory," \
     "$fanout_contacts for the fan-out"
start_mock --contacts "$contacts" --seed 42 --rate-limit 100000000 --rate-interval-ms "$interval_ms" \
    --daily-limit 100000000 \
    --locations "$small_location:$mem_small,$large_location:$mem_large,$fanout_location:$fanout_contacts"
create_bench_database
add_server mem_small "$small_location"
add_server mem_large "$large_location"
add_server fanout "$fanout_location"
add_server throttled "$main_location"
add_server warm "$main_location"
bench_sql -c "ALTER FOREIGN TABLE fanout.notes OPTIONS (ADD fan_out 'true')"

echo "== unthrottled: $contacts contacts, best of $repeat"
# the mock's first scan sorts and encodes every contact: not counted
"$PYTHON" bench/fetch_only.py "$MOCK_URL" >/dev/null
note fetch_only "$(best_of "$PYTHON" bench/fetch_only.py "$MOCK_URL")"
note count "$(best_of timed_sql 'SELECT count(*) FROM ghl.contacts')"
note count_rows "$(head -1 "$work/out")"
# EXPLAIN ANALYZE runs the scan, every column built, and discards the rows
select_all='EXPLAIN (ANALYZE, TIMING OFF, COSTS OFF) SELECT * FROM ghl.contacts'
note select_all "$(best_of timed_sql "$select_all")"
note select_all_rows "$(sed -n 's/.*actual rows=\([0-9]*\).*/\1/p' "$work/out" | head -1)"

echo "== full contacts sync vs the PL/pgSQL loop and the Python ETL"
# A full pass reads dateAdded slices, each a search of its own that the
# mock filters and sorts once on first sight: a sync into a scratch
# schema first, not counted (the peers read the view warmed above).
bench_sql -c "SELECT status FROM ghl_fdw.sync('warm', '{contacts}')" >/dev/null
note sync "$(timed_sql "SELECT status, rows_upserted, error FROM ghl_fdw.sync('ghl', '{contacts}')")"
echo "sync: $(head -1 "$work/out")"
note sync_status "$(head -1 "$work/out" | cut -d'|' -f1)"
# sync() answers before its worker analyzes the new table: the peers
# start only once that is done, so that it takes none of their time
wait_for_sync_workers
note plpgsql "$(bench_sql -v url="$MOCK_URL" -v location="$main_location" -v token=pit-mock-token \
    -f bench/plpgsql_loop.sql | tail -1)"
note etl "$(PGDATABASE=ghl_bench "$PYTHON" bench/etl.py "$MOCK_URL" | awk '{ print $1 }')"
for t in rankr.contacts bench_plpgsql.contacts bench_etl.contacts; do
    echo "$t: $(table_digest "$t")"
    table_digest "$t" >>"$work/digests"
done
note same_rows "$([ "$(sort -u "$work/digests" | wc -l)" -eq 1 ] && echo yes || echo no)"
note synced_rows "$(head -1 "$work/digests" | cut -d'|' -f1)"

echo "== backend peak RSS of SELECT * over $mem_small and $mem_large contacts"
for size in small large; do
    # a fresh backend for each
    bench_sql >"$work/mem" <<SQL
$(echo "$select_all" | sed "s/ghl\.contacts/mem_$size.contacts/");
SELECT substring(pg_read_file('/proc/self/status') FROM 'VmHWM:\\s+(\\d+)');
SQL
    note "rss_$size" "$(tail -1 "$work/mem")"
    note "rss_${size}_rows" "$(sed -n 's/.*actual rows=\([0-9]*\).*/\1/p' "$work/mem" | head -1)"
done

echo "== throttled: $limit requests per $interval_ms ms, $latency_ms ms per request"
curl -sS -X POST -H 'Content-Type: application/json' \
    --data "{\"rate_limit\": $limit, \"rate_interval_ms\": $interval_ms, \"latency_ms\": $latency_ms}" \
    "$MOCK_URL/_mock/config" >/dev/null
# a fresh rate window for each run
sleep $((interval_ms / 1000 + 1))
curl -sS -X DELETE "$MOCK_URL/_mock/stats" >/dev/null
note throttled_sync "$(timed_sql "SELECT status, rows_upserted, error FROM ghl_fdw.sync('throttled', '{contacts}')")"
echo "sync: $(head -1 "$work/out")"
note throttled_sync_status "$(head -1 "$work/out" | cut -d'|' -f1)"
note throttled_sync_rows "$(head -1 "$work/out" | cut -d'|' -f2)"
mock_stats "$main_location" >"$work/stats"
note throttled_sync_requests "$(json_field requests <"$work/stats")"
note throttled_sync_429 "$(json_field rate_limited <"$work/stats")"

sleep $((interval_ms / 1000 + 1))
curl -sS -X DELETE "$MOCK_URL/_mock/stats" >/dev/null
fanout_status=ok
timed_sql 'SELECT count(*) FROM fanout.notes' >"$work/seconds" || fanout_status=error
note fanout "$(cat "$work/seconds")"
note fanout_status "$fanout_status"
note fanout_contacts "$fanout_contacts"
note fanout_notes "$(head -1 "$work/out")"
mock_stats "$fanout_location" >"$work/stats"
note fanout_requests "$(json_field requests <"$work/stats")"
note fanout_429 "$(json_field rate_limited <"$work/stats")"
stop_mock

if [ "$webhooks" = 1 ]; then
    echo "== webhook replay (bench/webhook_replay.py)"
    createdb ghl_webhooks
    GHL_BENCH_DB=ghl_webhooks "$PYTHON" bench/webhook_replay.py | tee "$work/webhooks" || true
    note webhooks "$(sed -n 's/^throughput \([0-9]*\) deliveries.*/\1/p' "$work/webhooks")"
    note webhooks_pass "$(tail -1 "$work/webhooks")"
fi

echo
verdict=0
"$PYTHON" bench/report.py "$results" "$limit" "$interval_ms" || verdict=1
echo "$verdict" >"$GHL_BENCH_VERDICT"
echo "scenarios took $SECONDS s"
