#!/usr/bin/env bash
# The suites, run inside the throwaway cluster that test/run_tests.sh made
# (PGHOST, PGPORT and PGUSER point at it).  Writes "N passed, N failed" to
# test/results/summary for test/run_tests.sh to print last.
set -uo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
. test/lib.sh

passed=0
failed=0
count() {
    # count PASSED FAILED: add one suite's tallies
    passed=$((passed + $1))
    failed=$((failed + $2))
}

start_suite_mock
trap stop_mock EXIT

createdb ghl_test

echo "== pg_regress"
rm -rf test/results
mkdir -p test/results
regress_out=test/results/pg_regress.out
# arguments name pg_regress suites and Python modules (test_*); none: all
suites=()
modules=()
for arg in "$@"; do
    case "$arg" in
        test_*) modules+=("${arg%.py}") ;;
        *) suites+=("$arg") ;;
    esac
done
if [ $# -gt 0 ]; then
    suites=(setup "${suites[@]}")
else
    suites=(--schedule=test/schedule)
fi
run_regress "${suites[@]}" 2>&1 | tee "$regress_out"
# pg_regress ends with "All N tests passed." or "M of N tests failed."
summary=$(grep -E 'tests (passed|failed)' "$regress_out" | tail -1)
if [[ $summary =~ All\ ([0-9]+)\ tests\ passed ]]; then
    count "${BASH_REMATCH[1]}" 0
elif [[ $summary =~ ([0-9]+)\ of\ ([0-9]+)\ tests\ failed ]]; then
    count $((BASH_REMATCH[2] - BASH_REMATCH[1])) "${BASH_REMATCH[1]}"
else
    count 0 1    # pg_regress itself broke
fi
if grep -qE 'FAILED|not ok' "$regress_out" && [ -f test/results/regression.diffs ]; then
    head -c 20000 test/results/regression.diffs
fi

if [ $# -gt 0 ] && [ ${#modules[@]} -eq 0 ]; then
    echo "$passed passed, $failed failed" > test/results/summary
    [ "$failed" -eq 0 ]
    exit
fi

echo "== process tests"
py_out=test/results/python.out
"$PYTHON" test/run_python_tests.py "${modules[@]}" 2>&1 | tee "$py_out"
py_status=${PIPESTATUS[0]}
tally=$(sed -n 's/^python: \([0-9][0-9]*\) passed, \([0-9][0-9]*\) failed$/\1 \2/p' "$py_out" | tail -1)
if [ -n "$tally" ]; then
    count $tally
else
    count 0 1    # the runner broke before its tally
fi
# a runner that failed fails the run, whatever its tally says
[ "$py_status" -eq 0 ] || [ "$failed" -gt 0 ] || count 0 1

echo "$passed passed, $failed failed" > test/results/summary
[ "$failed" -eq 0 ]
