#!/usr/bin/env bash
# The demo: build and install ghl_fdw, start a throwaway cluster, point a
# server at the bundled mock GHL API (or at HighLevel itself when
# GHL_ACCESS_TOKEN and GHL_LOCATION_ID are set) and run a few queries.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
. test/lib.sh

# it installs system-wide, like the tests: one at a time
take_test_lock "$@"
ensure_packages
build_and_install
pg_virtualenv -t -o "shared_preload_libraries=pg_cron" test/demo_queries.sh
