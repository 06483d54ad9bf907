#!/usr/bin/env bash
# What a packager does on a fresh Debian 12 machine: build the Debian
# package from a git export of HEAD (dpkg-buildpackage, which also runs the
# suites against the built files), install it, check that the installed
# files are the package's, and run the installcheck against the installed
# package in a new cluster.  Run as root, or as a user with sudo: the build
# dependencies and the package are installed with apt.  The package is
# removed again at the end unless it was installed before; the files of an
# earlier "make install" are replaced by the package's, so run make install
# again afterwards to test a work tree.  The last line says passed or
# FAILED, and at which step.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
. test/lib.sh
take_test_lock "$@"

package=postgresql-15-ghl-fdw
scratch=$(mktemp -d /tmp/ghl_fdw-package.XXXXXX)
chmod 755 "$scratch"    # the test clusters' server reads the built files
log=$scratch/log
src=$scratch/src
was_installed=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -c "ok installed" || true)
step="exporting HEAD"

finish() {
    local status=$?
    if [ "$was_installed" -eq 0 ] && dpkg-query -W "$package" >/dev/null 2>&1; then
        as_root env DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq "$package" >/dev/null 2>&1 || true
    fi
    if [ "$status" -ne 0 ]; then
        [ -s "$log" ] && tail -n 60 "$log"
        echo "package test: FAILED while $step (the build is kept in $scratch)"
    else
        rm -rf "$scratch"
    fi
}
trap finish EXIT

# run a step's command with its output in $log, printing how long it took
run() {
    local started=$SECONDS
    echo "== $step"
    : > "$log"
    "$@" >> "$log" 2>&1
    echo "   $((SECONDS - started)) s"
}

# how many suites the step just run passed, from pg_regress's summary
passed_suites() {
    sed -n 's/.*All \([0-9]*\) tests passed.*/\1/p' "$log" | tail -1
}

git diff --quiet HEAD -- || echo "package test: warning: uncommitted changes are not tested"
mkdir "$src"
run sh -c "git archive HEAD | tar -x -C '$src'"
cd "$src"
version=$(dpkg-parsechangelog -S Version)

step="installing the build dependencies"
if ! dpkg-checkbuilddeps >/dev/null 2>&1; then
    run as_root sh -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get build-dep -y -qq '$src'"
fi

step="building the package (dpkg-buildpackage, with the suites against the built files)"
run dpkg-buildpackage -us -uc -b
built_suites=$(passed_suites)
deb=$(ls "$scratch/${package}_${version}_"*.deb)

step="installing $(basename "$deb")"
run as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$deb"

step="checking the installed files"
installed=$(dpkg -L "$package")
if [ -n "$(dpkg -V "$package")" ]; then
    echo "files differ from the package: $(dpkg -V "$package")" > "$log"
    false
fi
expected=(/usr/lib/postgresql/15/lib/ghl_fdw.so /usr/share/postgresql/15/extension/ghl_fdw.control)
for script in sql/ghl_fdw--*.sql; do
    expected+=("/usr/share/postgresql/15/extension/${script#sql/}")
done
for file in "${expected[@]}"; do
    grep -qxF "$file" <<< "$installed" || { echo "not in the package: $file" > "$log"; false; }
done
# the webhook receiver, wherever make install puts it, once there is one
if [ -d src/webhookd ]; then
    expected+=(ghl_fdw_webhookd)
    grep -q '/ghl_fdw_webhookd$' <<< "$installed" || { echo "not in the package: ghl_fdw_webhookd" > "$log"; false; }
fi
echo "   ${#expected[@]} expected files in the package, all as packaged"

step="running the installcheck against the installed package"
run debian/tests/installcheck

echo "package test: passed ($package $version: $built_suites suites passed against" \
     "the built files, $(passed_suites) against the installed package)"
