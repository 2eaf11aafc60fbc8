#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine, as root:
#   installs packages, builds and installs the extension and the simulator,
#   runs the policy unit tests, the simulator's self-test, the pg_regress
#   suite against a throwaway cluster (pg_virtualenv, with the extension in
#   shared_preload_libraries) and the TAP tests of test/t (prove, as the
#   postgres user), then prints one "N passed, M failed" line.  Exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/../.."
top=$(pwd)

bash test/scripts/install-deps.sh || exit 1

# one build-install-test at a time on a machine: the extension is installed
# into the one PostgreSQL library directory
exec 9>/tmp/pg_ai_resilience.lock
flock 9

make -s clean >/dev/null
make -s >/dev/null || { echo "build failed"; exit 1; }
make -s install >/dev/null || { echo "install failed"; exit 1; }
make -s -C test/gateway >/dev/null || { echo "simulator build failed"; exit 1; }

passed=0
failed=0
count() {   # count "ok N"/"not ok N" lines of a log; $2: the step's exit code
    local ok bad
    ok=$(grep -c '^ok ' "$1"); bad=$(grep -c '^not ok ' "$1")
    # a step that failed without saying which check failed is one failure
    [ "$2" -ne 0 ] && [ "$bad" -eq 0 ] && bad=1
    passed=$((passed + ok)); failed=$((failed + bad))
}
mkdir -p test/results

echo "== policy unit tests"
make -s unitcheck > test/results/unit.log 2>&1
rc=$?
tail -1 test/results/unit.log
count test/results/unit.log $rc

echo "== simulator self-test"
test/gateway/selftest.sh > test/results/selftest.log 2>&1
rc=$?
tail -1 test/results/selftest.log
count test/results/selftest.log $rc

echo "== pg_regress suite"
source test/scripts/sim.sh
start_sim || exit 1
pg_virtualenv -c '--locale=C.UTF-8' -o 'shared_preload_libraries=pg_ai_resilience' \
    make -s installcheck > test/results/regress.log 2>&1
sed -n '/^test /p;/^ok /p;/^not ok /p' test/results/regress.log
regress_ok=$(grep -cE '^test .* \.\.\. ok' test/results/regress.log)
regress_failed=$(grep -cE '^test .* \.\.\. FAILED' test/results/regress.log)
if [ "$regress_ok" -eq 0 ] && [ "$regress_failed" -eq 0 ]; then
    echo "pg_regress did not run:"; tail -30 test/results/regress.log
    regress_failed=1
fi
[ -s test/results/regression.diffs ] && head -200 test/results/regression.diffs
passed=$((passed + regress_ok)); failed=$((failed + regress_failed))

echo "== TAP tests (log writer)"
# PostgreSQL refuses to run as root: the TAP tests run as postgres, from a
# copy of test/t in a directory postgres owns (the checkout is root's).
tapdir=$(mktemp -d /tmp/pg_ai_resilience_tap.XXXXXX)
cp -r test/t "$tapdir/t"
chown -R postgres: "$tapdir"
pgbin=$(pg_config --bindir)
pgxs=$(pg_config --pkglibdir)/pgxs
# prove DIR [WRAPPER...]: the TAP tests of DIR, as postgres, run by WRAPPER
prove_dir() {
    local dir=$1
    shift
    (cd "$tapdir" && "$@" runuser -u postgres -- env PATH="$pgbin:$PATH" \
        PERL5LIB="$pgxs/src/test/perl" PG_REGRESS="$pgxs/src/test/regress/pg_regress" \
        PG_TEST_TIMEOUT_DEFAULT=60 TESTDIR="$tapdir" AI_SIM_URL="$AI_SIM_URL" \
        prove -v --ext .pl "$dir")
}
(
    prove_dir t/
    rc=$?
    # name resolution against a name server that never answers
    prove_dir t/dns/ "$top/test/scripts/blackhole_dns.sh" || rc=1
    exit $rc
) > test/results/tap.log 2>&1
tap_status=$?
grep -E '^(ok|not ok) ' test/results/tap.log
tail -3 test/results/tap.log
tap_ok=$(grep -c '^ok ' test/results/tap.log)
tap_failed=$(grep -c '^not ok ' test/results/tap.log)
if [ "$tap_status" -ne 0 ] && [ "$tap_failed" -eq 0 ]; then
    echo "prove failed:"; tail -30 test/results/tap.log
    find "$tapdir" -name '*.log' -path '*log*' -exec tail -20 {} + 2>/dev/null | tail -60
    tap_failed=1
fi
passed=$((passed + tap_ok)); failed=$((failed + tap_failed))
[ "$tap_status" -eq 0 ] && rm -rf "$tapdir"

echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
