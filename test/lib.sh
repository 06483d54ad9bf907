# Shared shell helpers of the test and demo scripts.

# Debian packages the build, the tests and the demo need.
GHL_PACKAGES="make gcc pkg-config curl python3 postgresql-15 postgresql-client-15 \
postgresql-server-dev-15 postgresql-15-cron libcurl4-openssl-dev libjson-c-dev \
libssl-dev libmicrohttpd-dev libpq-dev python3-cryptography"

# Debian's Python: its modules (python3-cryptography) come from apt
PYTHON=/usr/bin/python3
export PYTHON

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Install the packages that are not installed yet (apt needs root).
ensure_packages() {
    local missing=()
    local p
    for p in $GHL_PACKAGES; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "== installing: ${missing[*]}"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

# The extension is installed system-wide: scripts that install it take
# turns on one machine.  Re-executes the calling script under the lock.
take_test_lock() {
    if [ -z "${GHL_TEST_LOCKED:-}" ] && command -v flock >/dev/null; then
        export GHL_TEST_LOCKED=1
        exec flock /tmp/ghl_fdw-tests.lock "$0" "$@"
    fi
}

build_and_install() {
    echo "== building ghl_fdw"
    make -s clean >/dev/null
    make -s PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
    as_root make -s install PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config >/dev/null
}

# Start the mock GHL API on a free loopback port; sets MOCK_URL and MOCK_PID.
start_mock() {
    local portfile
    portfile=$(mktemp)
    rm -f "$portfile"
    "$PYTHON" test/mock_ghl.py --port 0 --port-file "$portfile" "$@" >/dev/null &
    MOCK_PID=$!
    local i
    for i in $(seq 1 300); do
        [ -s "$portfile" ] && break
        kill -0 "$MOCK_PID" 2>/dev/null || { echo "mock failed to start" >&2; return 1; }
        sleep 0.1
    done
    MOCK_URL="http://127.0.0.1:$(cat "$portfile")"
    rm -f "$portfile"
    export MOCK_URL MOCK_PID
}

stop_mock() {
    if [ -n "${MOCK_PID:-}" ]; then
        kill "$MOCK_PID" 2>/dev/null || true
        wait "$MOCK_PID" 2>/dev/null || true
        MOCK_PID=
    fi
}

# A benchmark's database ghl_bench: ghl_fdw, server ghl on the mock
# (MOCK_URL, from start_mock) and its foreign tables in schema ghl.
create_bench_database() {
    createdb ghl_bench
    psql -X -q -d ghl_bench -v ON_ERROR_STOP=1 <<SQL
SET client_min_messages = warning;
CREATE EXTENSION ghl_fdw;
CREATE SERVER ghl FOREIGN DATA WRAPPER ghl_fdw
    OPTIONS (location_id 've9EPM428h8vShlRW1KT', base_url '$MOCK_URL', max_retries '5');
CREATE USER MAPPING FOR CURRENT_USER SERVER ghl OPTIONS (access_token 'pit-mock-token');
CREATE SCHEMA ghl;
IMPORT FOREIGN SCHEMA ghl FROM SERVER ghl INTO ghl;
SQL
}

# what make dist needs: git's archive of HEAD, unpacked to be checked
GHL_PACKAGES="$GHL_PACKAGES git unzip"

# The cluster the suites need: pg_cron and ghl_fdw preloaded, pg_cron
# working in the suites' database.  Options of pg_virtualenv and of
# pg_buildext alike.
GHL_CLUSTER_OPTS=(
    -o "shared_preload_libraries=pg_cron,ghl_fdw"
    -o "cron.database_name=ghl_test"
    -o "cron.use_background_workers=on"
    -o "logging_collector=on"
    -o "log_min_messages=debug1"
    -o "max_worker_processes=32"
)

# The mock as the suites expect it: seeded data and a generous rate limit
# (suites that test limiting lower it themselves).
start_suite_mock() {
    start_mock --contacts 100 --seed 42 --rate-limit 100000 --rate-interval-ms 10000
}

# Run pg_regress suites (names, or --schedule=FILE) against the installed
# extension in database ghl_test of the cluster PGHOST/PGPORT point at;
# results and diffs go to test/results.
run_regress() {
    local pg_config=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
    "$(dirname "$("$pg_config" --pgxs)")/../test/regress/pg_regress" \
        --bindir="$("$pg_config" --bindir)" --inputdir=. --outputdir=test/results \
        --use-existing --dbname=ghl_test "$@"
}
