#!/usr/bin/env bash
# The regression suites (test/schedule) against the installed ghl_fdw, in
# the running cluster that PGHOST, PGPORT and PGUSER point at: what
# "make installcheck" runs.  The cluster must preload pg_cron and ghl_fdw
# with cron.database_name = ghl_test (GHL_CLUSTER_OPTS in test/lib.sh;
# debian/tests/installcheck makes such a cluster).  The suites talk only to
# the bundled mock of the GHL API, started here on a loopback port, so no
# network is needed.  Database ghl_test is dropped and created anew.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
. test/lib.sh

start_suite_mock
trap stop_mock EXIT

dropdb --if-exists --force ghl_test
createdb ghl_test
rm -rf test/results
mkdir -p test/results
status=0
run_regress --schedule=test/schedule || status=$?
if [ "$status" -ne 0 ] && [ -f test/results/regression.diffs ]; then
    head -c 20000 test/results/regression.diffs
fi
exit "$status"
