#!/usr/bin/env bash
# Run every ghl_fdw test: install what is missing, build and install the
# extension, start a throwaway cluster with pg_cron preloaded, and run the
# suites against the bundled GHL mock.  The last line is "N passed, N failed".
#
# Arguments, if any, name the pg_regress suites (setup is implied) and the
# Python test modules (test_*) to run instead of all of them:
# "test/run_tests.sh contacts_scan test_upgrade" runs just those two.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

# shellcheck source=test/lib.sh
. test/lib.sh

# The extension is installed system-wide: two test runs on one machine take
# turns, so neither tests the other's build.
if [ -z "${GHL_TEST_LOCKED:-}" ] && command -v flock >/dev/null; then
    export GHL_TEST_LOCKED=1
    exec flock /tmp/ghl_fdw-tests.lock "$0" "$@"
fi

ensure_packages

# A full run in a git checkout also tests the Debian package (built from
# HEAD, installed, installcheck against it): one more test, of a few
# minutes.  It goes first, since installing the package replaces the
# extension's files; build_and_install puts this tree's back.
package=
if [ $# -eq 0 ] && git rev-parse --git-dir >/dev/null 2>&1; then
    if test/package_test.sh; then package=passed; else package=failed; fi
fi
build_and_install

# pg_virtualenv removes the cluster when the suites end, whatever happens.
rm -f test/results/summary
status=0
pg_virtualenv -t "${GHL_CLUSTER_OPTS[@]}" test/run_suites.sh "$@" || status=$?

# the tally is the last line, after the cluster is gone
if [ -f test/results/summary ]; then
    read -r passed _ failed _ < test/results/summary
else
    passed=0 failed=1 status=1
fi
case $package in
    passed) passed=$((passed + 1)) ;;
    failed) failed=$((failed + 1)) status=1 ;;
esac
echo "$passed passed, $failed failed"
exit "$status"
