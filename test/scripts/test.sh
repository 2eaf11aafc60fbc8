#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine, as root.  Installs
# packages, then runs two stages, each after building (with -Werror) and
# installing the extension:
#   sanitize: the extension and the policy unit tests built with
#             AddressSanitizer and UBSan; the unit tests, then pg_regress and
#             the TAP tests against servers running with libasan preloaded.
#             Every sanitizer report is a failure.
#   plain:    the ordinary build; the unit tests, the simulator's self-test,
#             pg_regress (make installcheck, in a throwaway cluster made by
#             pg_virtualenv with the extension in shared_preload_libraries),
#             the examples of docs/*.md (test/docs/run.sh) and the TAP
#             tests of test/t (make prove_installcheck, as the postgres
#             user); then the interop tests of test/t/interop against real
#             gateways, installed with npm ci at the versions
#             test/interop/package-lock.json pins.
# With no argument both run; "test.sh sanitize" or "test.sh plain" runs one.
# The plain build is what stays installed.  Prints one "N passed, M failed"
# line; exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/../.."
top=$(pwd)
stages=("$@")
[ $# -eq 0 ] && stages=(sanitize plain)
for stage in "${stages[@]}"; do
    case $stage in
        sanitize|plain) ;;
        *) echo "usage: $0 [sanitize|plain]..." >&2; exit 2 ;;
    esac
done

bash test/scripts/install-deps.sh || exit 1

# one build-install-test at a time on a machine: the extension is installed
# into the one PostgreSQL library directory
exec 9>/tmp/pg_ai_resilience.lock
flock 9
# (the servers and simulators started below get "9>&-": one left running
# must not keep holding the lock)

werror=-Werror
# no recovery: a UBSan finding aborts its process, as an ASan one does
sanitize="$werror -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
make -s -C test/gateway COPT=$werror >/dev/null || { echo "simulator build failed"; exit 1; }

rm -rf test/results
mkdir -p test/results
passed=0
failed=0
count() {   # count "ok N"/"not ok N" lines of a log; $2: the step's exit code
    local ok bad
    ok=$(grep -c '^ok ' "$1"); bad=$(grep -c '^not ok ' "$1")
    # a step that failed without saying which check failed is one failure
    [ "$2" -ne 0 ] && [ "$bad" -eq 0 ] && bad=1
    passed=$((passed + ok)); failed=$((failed + bad))
}

# Build and install the extension with COPT=$1; stop the run if that fails.
# The logs of test/results stay for the whole run.
build_install() {
    make -s clean "EXTRA_CLEAN=test/unit/test_policy test/unit/test_breaker" >/dev/null
    { make -s COPT="$1" >/dev/null && make -s COPT="$1" install >/dev/null; } ||
        { echo "build failed"; exit 1; }
}

# The policy unit tests, built with COPT=$1; $2 names the log.
unit_tests() {
    echo "== policy unit tests"
    make -s COPT="$1" unitcheck > "test/results/$2.log" 2>&1
    local rc=$?
    tail -1 "test/results/$2.log"
    count "test/results/$2.log" $rc
}

# make installcheck in a throwaway cluster; $1 names the log, $2 adds
# options for pg_createcluster.
regress() {
    local log=test/results/$1.log ok bad
    echo "== pg_regress suite"
    # -t: the cluster's files in a temporary directory even as root, so a
    # cluster left behind by a run that was killed never blocks the next
    pg_virtualenv -t -c "--locale=C.UTF-8 ${2:-}" -o 'shared_preload_libraries=pg_ai_resilience' \
        make -s installcheck > "$log" 2>&1 9>&-
    sed -n '/^test /p;/^ok /p;/^not ok /p' "$log"
    ok=$(grep -cE '^test .* \.\.\. ok' "$log")
    bad=$(grep -cE '^test .* \.\.\. FAILED' "$log")
    if [ "$ok" -eq 0 ] && [ "$bad" -eq 0 ]; then
        echo "pg_regress did not run:"; tail -30 "$log"
        bad=1
    fi
    [ -s test/results/regression.diffs ] && head -200 test/results/regression.diffs
    passed=$((passed + ok)); failed=$((failed + bad))
}

# Every ```sql block of docs/*.md run, and its shown output compared, by
# test/docs/check_docs.pl (after the checker's own test on
# test/docs/fixtures/), in a throwaway cluster that preloads pg_cron too for
# the cookbook's scheduled job; $1 names the log.
docs_check() {
    local log=test/results/$1.log rc
    echo "== docs examples"
    pg_virtualenv -t -c "--locale=C.UTF-8" -o 'shared_preload_libraries=pg_ai_resilience,pg_cron' \
        -o 'cron.database_name=docs_cookbook' bash test/docs/run.sh > "$log" 2>&1 9>&-
    rc=$?
    grep -E '^(ok|not ok|#) ' "$log"
    count "$log" $rc
}

# Run a TAP step as postgres (PostgreSQL refuses root) from a copy of the
# checkout postgres owns; show and count its results, and show the known
# upstream bugs its tests print ("# KNOWN UPSTREAM BUG").  $1 names the
# log, $2 is the function run in the copy, the rest are environment
# settings for the run and the clusters it starts.
tap_step() {
    local log=test/results/$1.log step=$2 tapdir status ok bad
    shift 2
    tapdir=$(mktemp -d /tmp/pg_ai_resilience_tap.XXXXXX)
    tar -c --exclude=./.git --exclude=./test/results . | tar -x -C "$tapdir"
    chown -R postgres: "$tapdir"
    ( cd "$tapdir" && "$step" "$@" ) > "$log" 2>&1 9>&-
    status=$?
    grep -E '^(ok|not ok) |^# KNOWN UPSTREAM BUG' "$log"
    tail -3 "$log"
    ok=$(grep -c '^ok ' "$log")
    bad=$(grep -c '^not ok ' "$log")
    if [ "$status" -ne 0 ] && [ "$bad" -eq 0 ]; then
        echo "prove failed:"; tail -30 "$log"
        find "$tapdir/tmp_check/log" -name '*.log' -exec tail -20 {} + 2>/dev/null | tail -60
        bad=1
    fi
    passed=$((passed + ok)); failed=$((failed + bad))
    [ "$status" -eq 0 ] && rm -rf "$tapdir"
}

# make prove_installcheck as postgres, through the command $1 ("command" or a
# wrapper); $2 is the make argument that names the tests, the rest are
# environment settings.
prove_as_postgres() {
    local wrapper=$1 tests=$2
    shift 2
    $wrapper runuser -u postgres -- env PG_TEST_TIMEOUT_DEFAULT=60 "$@" \
        make -s prove_installcheck PROVE_FLAGS=-v "$tests"
}

# The TAP tests of test/t, then those of test/t/dns, which resolve names
# against a name server that never answers.
tap_tests() {
    local rc=0
    prove_as_postgres command 'PROVE_TESTS=test/t/*.pl' "$@" || rc=1
    prove_as_postgres "$top/test/scripts/blackhole_dns.sh" 'PROVE_TESTS=test/t/dns/*.pl' "$@" || rc=1
    return $rc
}

# The TAP tests of test/t and test/t/dns; $1 names the log, the rest are
# environment settings.
tap() {
    echo "== TAP tests"
    tap_step "$1" tap_tests "${@:2}"
}

# The interop stage: the TAP tests of test/t/interop against real gateways
# from npm, installed at the exact versions of test/interop/package-lock.json
# (npm ci: no newer version slips in).  An npm registry out of reach fails
# the stage: it is never skipped.
interop() {
    local log=test/results/interop-npm.log start=$SECONDS
    echo "== interop tests (real gateways from npm)"
    if ! npm ci --prefix test/interop --ignore-scripts --no-audit --no-fund > "$log" 2>&1 9>&-; then
        echo "not ok - npm ci in test/interop failed (is the npm registry reachable?):"
        tail -20 "$log"
        failed=$((failed + 1))
        return
    fi
    tap_step interop prove_as_postgres command 'PROVE_TESTS=test/t/interop/*.pl'
    echo "interop tests: $((SECONDS - start)) s"
}

# The sanitizer stage.  PostgreSQL itself is not instrumented, so its
# servers start with the sanitizer runtime preloaded (and asan_preload.c, see
# there why).  A finding aborts its process, so the test that caused it
# fails; ASan's reports also go to files in $sandir, each one a failure
# (UBSan's go to the server log).  Leaks are not checked: backends free by
# exiting.
stage_sanitize() {
    local sandir envfile reports
    echo "=== sanitizer stage (AddressSanitizer, UBSan)"
    build_install "$sanitize"
    unit_tests "$sanitize" sanitize-unit

    sandir=$(mktemp -d /tmp/pg_ai_resilience_san.XXXXXX)
    chmod 1777 "$sandir"
    gcc -shared -fPIC -O2 -Wall -Wextra -Werror -o "$sandir/asan_preload.so" test/scripts/asan_preload.c ||
        { echo "asan_preload build failed"; exit 1; }
    local env=(
        LD_PRELOAD="$(gcc -print-file-name=libasan.so):$sandir/asan_preload.so"
        ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:log_path=$sandir/asan"
        UBSAN_OPTIONS="print_stacktrace=1"
    )
    # pg_ctlcluster gives the server only the cluster's environment file
    envfile=$sandir/environment
    printf "%s\n" "${env[@]}" | sed "s/=\(.*\)/ = '\1'/" > "$envfile"
    regress sanitize-regress "--environment=$envfile"
    tap sanitize-tap "${env[@]}"

    reports=$(find "$sandir" -name 'asan.*' | sort)
    if [ -n "$reports" ]; then
        for r in $reports; do
            echo "not ok - sanitizer report $r:"; head -40 "$r"
        done
        failed=$((failed + $(echo "$reports" | wc -l)))
    else
        echo "ok - no sanitizer reports"
        passed=$((passed + 1))
        rm -rf "$sandir"
    fi
}

stage_plain() {
    echo "=== plain stage"
    build_install "$werror"
    unit_tests "$werror" unit

    echo "== simulator self-test"
    test/gateway/selftest.sh > test/results/selftest.log 2>&1 9>&-
    local rc=$?
    tail -1 test/results/selftest.log
    count test/results/selftest.log $rc

    docs_check docs
    regress regress
    tap tap
    interop
}

for stage in "${stages[@]}"; do
    start=$SECONDS
    "stage_$stage"
    echo "=== $stage stage: $((SECONDS - start)) s"
done
# leave the ordinary build installed
[ "$stage" = plain ] || build_install "$werror"

echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
