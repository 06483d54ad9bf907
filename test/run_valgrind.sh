#!/usr/bin/env bash
# Run pg_regress suites with the whole server under valgrind memcheck and
# report the errors and definite leaks whose stack passes through ghl_fdw.
#
#   test/run_valgrind.sh                 a representative subset of suites
#   test/run_valgrind.sh faults cancel   just those (setup is implied)
#
# Debian's PostgreSQL is built without USE_VALGRIND, so memcheck sees
# malloc'd memory (libcurl, json-c, the response buffer) exactly but palloc
# chunks only as whole blocks.  Valgrind makes everything 20-50 times
# slower: suites with timing assertions (cancel) may fail for that reason
# alone, which is why the default subset leaves them out.  The last line is
# "valgrind: N ghl_fdw errors, M other errors".
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
# shellcheck source=test/lib.sh
. test/lib.sh

take_test_lock "$@"

GHL_PACKAGES="$GHL_PACKAGES valgrind"
ensure_packages
build_and_install

if [ $# -gt 0 ]; then
    suites=("$@")
else
    suites=(options contacts_scan http_errors explain children faults)
fi

pgbin=/usr/lib/postgresql/15/bin
work=$(mktemp -d /tmp/ghl_valgrind.XXXXXX)
as_server() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
[ "$(id -u)" -eq 0 ] && chown postgres: "$work"
as_server "$pgbin/initdb" -D "$work/data" -A trust -U postgres >/dev/null
port=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

# Each process (the postmaster's forks included) logs to its own file;
# programs the server starts (curl, sh in the suites' helpers) are not
# traced.
as_server valgrind --quiet --trace-children=yes \
    --trace-children-skip='/bin/*,/usr/bin/*,/usr/local/bin/*' \
    --leak-check=full --show-leak-kinds=definite --errors-for-leak-kinds=definite \
    --num-callers=40 --gen-suppressions=all \
    --suppressions="$top/test/valgrind.supp" \
    --log-file="$work/vg.%p.log" \
    "$pgbin/postgres" -D "$work/data" -k "$work" -p "$port" -c listen_addresses= \
    -c shared_preload_libraries=pg_cron,ghl_fdw -c cron.database_name=ghl_test \
    -c max_worker_processes=32 -c fsync=off -c log_min_messages=warning \
    >"$work/server.log" 2>&1 &
server=$!
stop_server() {
    as_server "$pgbin/pg_ctl" -D "$work/data" stop -m fast -t 600 >/dev/null 2>&1 || true
    wait "$server" 2>/dev/null || true
}
trap stop_server EXIT
for _ in $(seq 1 600); do
    "$pgbin/pg_isready" -q -h "$work" -p "$port" && break
    sleep 0.5
done

export PGHOST="$work" PGPORT="$port" PGUSER=postgres
status=0
test/run_suites.sh "${suites[@]}" || status=$?
stop_server
trap - EXIT

# an error record is the lines of one process log between blank ones
"$PYTHON" - "$work" <<'PY' | tee test/results/valgrind.out
import glob, re, sys
ours = other = 0
for path in sorted(glob.glob(sys.argv[1] + "/vg.*.log")):
    text = re.sub(r"^==\d+== ?", "", open(path, errors="replace").read(), flags=re.M)
    for record in re.split(r"\n\s*\n", text):
        head = record.strip().splitlines()[0] if record.strip() else ""
        if not re.match(r"(Invalid|Conditional|Use of|Syscall|Mismatched|Source and"
                        r"|Argument|\d[\d,]* .*bytes in .*definitely lost)", head):
            continue
        if "ghl_fdw" in record:
            ours += 1
            print(f"--- {path}\n{record.strip()}\n")
        else:
            other += 1
print(f"valgrind logs: {sys.argv[1]}")
print(f"valgrind: {ours} ghl_fdw errors, {other} other errors")
PY
grep -q "valgrind: 0 ghl_fdw errors" test/results/valgrind.out || status=1
exit "$status"
