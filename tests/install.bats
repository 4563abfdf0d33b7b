#!/usr/bin/env bats
# make install puts every program and man page under PREFIX, and they run.

@test "make install PREFIX=..." {
    T=$BATS_TEST_TMPDIR
    run make -s -C "$BATS_TEST_DIRNAME/.." install PREFIX="$T/prefix" BUILD="${BUILD:-build}"
    [ "$status" -eq 0 ]
    for p in bagify stitch reorg-breakhis recinfo; do
        [ -x "$T/prefix/bin/$p" ] || { echo "no $p"; return 1; }
        [ -f "$T/prefix/share/man/man1/$p.1" ] || { echo "no $p.1"; return 1; }
    done
    [ -f "$T/prefix/share/man/man5/amil-stream.5" ]
    run "$T/prefix/bin/bagify" -h
    [ "$status" -eq 0 ]
    run mandoc -Tascii "$T/prefix/share/man/man1/bagify.1"
    [[ "$output" == *"bagify"* ]]
}
