#!/usr/bin/env bash
# The docs check of the test suite: run inside a throwaway cluster that
# preloads pg_ai_resilience and pg_cron (test.sh: pg_virtualenv ... bash
# test/docs/run.sh), from the top of the checkout.
#
# First the checker's own test: each page of test/docs/fixtures/ says on its
# first line what check_docs.pl must make of it, "<!-- fixture: pass -->" or
# "<!-- fixture: fail: TEXT -->" (it must fail, and say TEXT).  Then every
# page of docs/.  Each page gets a restarted server and two fresh simulators:
# route health lives in shared memory and is keyed by endpoint, so a breaker
# opened (or a model taken down) by one page is not seen by the next.  Prints one
# "ok"/"not ok" line per page; exits non-zero when one fails.  With pages as
# arguments, checks only those (no fixtures): test/docs/run.sh docs/cookbook.md
set -uo pipefail
. test/scripts/sim.sh

failed=0

# Run check_docs.pl on one page with a restarted server and two fresh
# simulators; its output on stdout, its exit code returned.
check_page() {
    local p1 p2 u1 u2 rc
    pg_ctlcluster "$PGVERSION" regress restart || return 2
    launch_sim || return 2
    p1=$SIM_PID u1=$SIM_URL
    launch_sim || { kill "$p1"; return 2; }
    p2=$SIM_PID u2=$SIM_URL
    AI_SIM_URL=$u1 AI_SIM_URL2=$u2 perl test/docs/check_docs.pl "$1"
    rc=$?
    kill "$p1" "$p2"
    wait "$p1" "$p2" 2>/dev/null
    return $rc
}

fixtures=(test/docs/fixtures/*.md)
pages=(docs/*.md)
[ $# -gt 0 ] && fixtures=() pages=("$@")

for f in "${fixtures[@]}"; do
    want=$(sed -n '1s/^<!-- fixture: \(.*\) -->$/\1/p' "$f")
    out=$(check_page "$f")
    rc=$?
    case $want in
        pass)
            verdict=$([ $rc -eq 0 ] && echo ok) ;;
        fail:*)
            text=${want#fail: }
            verdict=$([ $rc -eq 1 ] && grep -qF -- "$text" <<<"$out" && echo ok) ;;
        *)
            verdict= ; want="a first line <!-- fixture: pass|fail: TEXT -->" ;;
    esac
    if [ "$verdict" = ok ]; then
        echo "ok - check_docs.pl: $f: $want"
    else
        echo "not ok - check_docs.pl: $f: wanted $want, got exit $rc:"
        sed 's/^/#   /' <<<"$out"
        failed=$((failed + 1))
    fi
done

for page in "${pages[@]}"; do
    check_page "$page" || failed=$((failed + 1))
done
[ "$failed" -eq 0 ]
