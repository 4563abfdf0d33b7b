#!/usr/bin/env bats
# tests/run itself: a bats that is missing, stops early or fails without
# saying so must fail the run, never read as "N passed, 0 failed".

setup() {
    T=$(mktemp -d)
    mkdir "$T/bin"
}

teardown() {
    rm -rf "$T"
}

# A fake bats on PATH printing $1 and exiting with status $2.
fake_bats() {
    printf '#!/bin/sh\nprintf "%%b" "%s"\nexit %s\n' "$1" "$2" > "$T/bin/bats"
    chmod +x "$T/bin/bats"
}

run_suite() {
    run env AMIL_SUITES=bats PATH="$T/bin:$PATH" "$BATS_TEST_DIRNAME/run"
}

@test "tests/run: a missing bats (status 127) fails the run" {
    fake_bats 'bats: command not found\n' 127
    run_suite
    [ "$status" -ne 0 ]
    [[ "$output" == *"not ok - bats: 0 of ? tests ran (exit status 127)"* ]]
    [[ "$output" == *"0 passed, 1 failed"* ]]
}

@test "tests/run: bats stopping early fails the run" {
    fake_bats '1..3\nok 1 a\nok 2 b\nbats warning: Executed 2 instead of expected 3 tests\n' 1
    run_suite
    [ "$status" -ne 0 ]
    [[ "$output" == *"not ok - bats: 2 of 3 tests ran (exit status 1)"* ]]
    [[ "$output" == *"2 passed, 1 failed"* ]]
}

@test "tests/run: bats failing with every test passed fails the run" {
    fake_bats '1..1\nok 1 a\n' 1
    run_suite
    [ "$status" -ne 0 ]
    [[ "$output" == *"not ok - bats exited with status 1"* ]]
}

@test "tests/run: a whole, passing bats passes, after another suite" {
    fake_bats '1..2\nok 1 a\nok 2 b\n' 0
    # the man pages' suite first: its variables must not touch bats's
    run env AMIL_SUITES="man bats" PATH="$T/bin:$PATH" "$BATS_TEST_DIRNAME/run"
    [ "$status" -eq 0 ]
    [[ "$output" == *"ok 2 b"* ]]
    [[ "$output" != *"not ok"* ]]
}

@test "tests/run: the lint refuses '[ A ] && [ B ]' as a statement" {
    printf '@test x {\n    [ 1 -eq 2 ] && [ 1 -eq 1 ]\n    [ -e x ] && break\n}\n' > "$T/bad.bats"
    run env AMIL_SUITES=lint AMIL_LINT_FILES="$T/bad.bats" "$BATS_TEST_DIRNAME/run"
    [ "$status" -ne 0 ]
    [[ "$output" == *"# 2:    [ 1 -eq 2 ]"* ]]
    [[ "$output" == *"not ok - lint"* ]]
    [[ "$output" != *"# 3:"* ]]
}

@test "tests/run: the lint passes the tests as they are" {
    run env AMIL_SUITES=lint "$BATS_TEST_DIRNAME/run"
    [ "$status" -eq 0 ]
    [[ "$output" == *"ok - lint"* ]]
}
