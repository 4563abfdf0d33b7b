#!/usr/bin/env bash
# tests/fuzz/run.sh SECONDS TARGET...: libFuzzer on each target for SECONDS
# (make fuzz builds build-fuzz/fuzz_TARGET and calls this).  New inputs are
# kept in build-fuzz/corpus/TARGET, the committed seeds read from
# tests/fuzz/corpus/TARGET; a crash, timeout (10 s) or out-of-memory (2 GB)
# is written to build-fuzz/crashes/ and fails the run: add it to the
# committed corpus as regression-NAME once fixed.  Leaks inside the
# libraries amil uses, which it cannot free, are in tests/fuzz/lsan.supp.
#
# The targets that run a program's reader (evaluate, localize) jump out of
# amil_die() and leave what the reader had allocated, as the program would
# on exit: they run with leak detection off, in rounds of 50,000 inputs
# (about 500 MB left behind), each round a fresh process, so that what is
# left behind never adds up to the memory limit.  Prints, per target: inputs run, coverage, corpus.
set -u
cd "$(dirname "$0")/../.."
seconds=$1
shift
failed=0
for t in "$@"; do
    mkdir -p "build-fuzz/corpus/$t" build-fuzz/crashes
    case $t in evaluate | localize) leaks=0 rounds=50000 ;; *) leaks=1 rounds=0 ;; esac
    # records: room for a slide's many parts joined (1025 parts of 238
    # bytes once overflowed a shape) and for the model seeds (340 KB)
    case $t in stream | model) max_len=1048576 ;; *) max_len=65536 ;; esac
    end=$((SECONDS + seconds)) runs=0 last='' status=0
    while [ $SECONDS -lt $end ]; do
        log=$(ASAN_OPTIONS=detect_leaks=$leaks \
            LSAN_OPTIONS=suppressions=tests/fuzz/lsan.supp:print_suppressions=0 \
            "build-fuzz/fuzz_$t" \
            -max_total_time=$((end - SECONDS)) -runs=$((rounds > 0 ? rounds : -1)) \
            -max_len=$max_len -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
            -artifact_prefix="build-fuzz/crashes/$t-" \
            "build-fuzz/corpus/$t" "tests/fuzz/corpus/$t" 2>&1)
        status=$?
        n=$(printf '%s\n' "$log" | sed -n 's/^stat::number_of_executed_units: *//p')
        runs=$((runs + ${n:-0}))
        last=$(printf '%s\n' "$log" | grep -E '(DONE|pulse|NEW|REDUCE) +cov:' | tail -n 1)
        if [ $status -ne 0 ]; then
            printf '%s\n' "$log" | grep -E '^(==|SUMMARY|artifact_prefix|Test unit written)' >&2
            echo "$t: FAILED after $runs inputs (exit status $status)"
            failed=1
            break
        fi
    done
    [ $status -eq 0 ] &&
        echo "$t: $runs inputs in $seconds s, no crash; ${last#*cov:}" | sed 's/  */ /g'
done
exit $failed
