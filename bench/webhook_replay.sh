#!/usr/bin/env bash
# Webhook receiver benchmark: 10,000 signed deliveries (a tenth of them
# redeliveries) posted through ghl_fdw_webhookd by 16 concurrent senders,
# in a throwaway cluster.  Reports deliveries per second and latency
# percentiles; passes at 1,000 deliveries/s with every delivery answered
# 200, none lost and none applied twice.  Not part of the test suite.
#
#   bench/webhook_replay.sh                          (make bench-webhooks)
#   GHL_BENCH_SENDERS=4 GHL_BENCH_POOL=2 bench/webhook_replay.sh
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
# shellcheck source=test/lib.sh
. test/lib.sh

if [ "${1:-}" != "--inner" ]; then
    take_test_lock "$@"
    ensure_packages
    build_and_install >/dev/null
    exec pg_virtualenv -t -o "shared_preload_libraries=ghl_fdw" "$0" --inner
fi

createdb ghl_bench
GHL_BENCH_DB=ghl_bench "$PYTHON" bench/webhook_replay.py
