#!/usr/bin/env bats
# Files the programs write hold either what was there before or the whole
# new output, never a part (through a temporary beside them and a rename),
# failures say why, and no program writes over one of its own inputs.

load lib

setup() {
    T=$BATS_TEST_TMPDIR
    bagify "$BREAKHIS" | recpass -a darkness > "$T/attended"
    bagify -l 1 "$BREAKHIS" > "$T/labelled"
}

# the files in $T whose names hold ".tmp.": none may be left
no_temporaries() {
    local left
    left=$(find "$T" -name '*.tmp.*')
    [ -z "$left" ] || { echo "left behind: $left"; return 1; }
}

@test "outputs: a failed write keeps the old file whole and says why" {
    printf 'the old picture' > "$T/old.png"
    # at most 4 KiB a file, SIGXFSZ ignored: writes past it fail with EFBIG
    run bash -c 'trap "" XFSZ; ulimit -f 4; stitch -o "$1" < "$2"' _ "$T/old.png" "$T/attended"
    [ "$status" -eq 1 ]
    [[ "$output" == "stitch: <stdin>: record 0: $T/old.png: "*"File too large"* ]] || { echo "$output"; return 1; }
    [ "$(cat "$T/old.png")" = "the old picture" ]
    run bash -c 'trap "" XFSZ; ulimit -f 4; gradcam -m "$1" -o "$2" "$3" < "$4"' _ "$M" \
        "$T/old.png" "$BREAKHIS" "$T/labelled"
    [ "$status" -eq 1 ]
    [[ "$output" == "gradcam: "*"$T/old.png: write error: File too large"* ]] || { echo "$output"; return 1; }
    [ "$(cat "$T/old.png")" = "the old picture" ]
    printf 'the old model' > "$T/model"
    run bash -c 'trap "" XFSZ; ulimit -f 64; train -q -e 1 -o "$1" "$2"' _ "$T/model" "$T/labelled"
    [ "$status" -eq 1 ]
    [[ "$output" == *"File too large"* ]] || { echo "$output"; return 1; }
    [ "$(cat "$T/model")" = "the old model" ]
    no_temporaries
    # a device is written in place, and its error named
    run stitch -o /dev/full < "$T/attended"
    [ "$status" -eq 1 ]
    [[ "$output" == *"/dev/full: "*"No space left on device"* ]] || { echo "$output"; return 1; }
}

@test "outputs: a good write replaces the file whole and leaves nothing else" {
    printf 'old' > "$T/new.png"
    stitch -o "$T/new.png" < "$T/attended"
    [[ "$(pngtopam "$T/new.png" | pamfile)" == *"700 by 460"* ]]
    no_temporaries
}

@test "outputs: no program writes over one of its inputs" {
    cp "$T/labelled" "$T/same.bags"
    run train -q -e 1 -o "$T/same.bags" "$T/same.bags"
    [ "$status" -eq 1 ]
    [[ "$output" == "train: $T/same.bags is also an input ($T/same.bags): it would be overwritten" ]]
    cmp "$T/same.bags" "$T/labelled"
    run bash -c 'train -q -e 1 -o "$1" < "$1"' _ "$T/same.bags"
    [ "$status" -eq 1 ]
    [[ "$output" == *"is also the input (standard input)"* ]]
    run train -q -e 1 -o "$T/m" --test "$T/same.bags" --checkpoint "$T/same.bags" "$T/labelled"
    [ "$status" -eq 1 ]
    cmp "$T/same.bags" "$T/labelled"
    # stitch over the image it draws on, or its standard input
    cp "$BREAKHIS" "$T/x.png"
    bagify "$T/x.png" | recpass -a darkness > "$T/x.att"
    run bash -c 'stitch -o "$1" < "$2"' _ "$T/x.png" "$T/x.att"
    [ "$status" -eq 1 ]
    [[ "$output" == *"$T/x.png is the image drawn on: it would be overwritten"* ]]
    run bash -c 'stitch -d "$1" < "$2"' _ "$T" "$T/x.att"
    [ "$status" -eq 1 ]
    cmp "$T/x.png" "$BREAKHIS"
    run bash -c 'stitch -o "$1" < "$1"' _ "$T/x.att"
    [ "$status" -eq 1 ]
    [[ "$output" == *"is also the input (standard input)"* ]]
    # gradcam over its image or model
    run gradcam -m "$M" -o "$T/x.png" "$T/x.png" < "$T/labelled"
    [ "$status" -eq 1 ]
    [[ "$output" == "gradcam: $T/x.png is also an input: it would be overwritten" ]]
    cmp "$T/x.png" "$BREAKHIS"
    no_temporaries
}

@test "outputs: records and pictures are not written to a terminal unless forced" {
    run script -qec "bagify '$BREAKHIS'" /dev/null
    [ "$status" -eq 1 ]
    [[ "$output" == "bagify: will not write binary to a terminal: redirect it to a file or a program (or give --force)"* ]]
    run script -qec "stitch < '$T/attended'" /dev/null
    [ "$status" -eq 1 ]
    [[ "$output" == "stitch: will not write binary to a terminal: give -o FILE or -d DIR"* ]]
    run script -qec "gradcam -m '$M' '$BREAKHIS' < '$T/labelled'" /dev/null
    [ "$status" -eq 1 ]
    [[ "$output" == "gradcam: will not write binary to a terminal: give -o FILE"* ]]
    # forced, or not a terminal: written
    [ "$(script -qec "bagify --force '$BREAKHIS' | recinfo -j | wc -l" /dev/null | tr -d '\r')" -eq 1 ]
    run script -qec "stitch -o '$T/p.png' < '$T/attended'" /dev/null
    [ "$status" -eq 0 ]
}

@test "outputs: an image where records are expected says so" {
    run featurize -m "$M" < "$BREAKHIS"
    [ "$status" -eq 1 ]
    [ "$output" = "featurize: <stdin>: record 0: this is a PNG image, not a record: cut it into a bag with bagify first" ]
    pngtopam "$BREAKHIS" > "$T/x.pam"
    run attend -m "$M" "$T/x.pam"
    [ "$status" -eq 1 ]
    [[ "$output" == *"this is a netpbm image, not a record"* ]]
}

@test "outputs: a progress line on a terminal, never on a pipe" {
    files=()
    for i in $(seq 200); do files+=("$BREAKHIS"); done
    # about two seconds of work: the line is drawn every half second
    script -qec "bagify ${files[*]} > /dev/null" /dev/null > "$T/tty"
    grep -aq $'\rbagify: [0-9]* records, [0-9]* files/s' "$T/tty" || { cat -v "$T/tty"; return 1; }
    grep -aq $'\r\033\[K' "$T/tty"   # erased at the end
    bagify "${files[@]}" 2> "$T/err" > /dev/null
    assert_empty "$T/err"
    # a message first erases the line, so that it starts a line of its own
    printf 'not an image' > "$T/bad.png"
    run script -qec "bagify -k ${files[*]} $T/bad.png > /dev/null" /dev/null
    [ "$status" -eq 1 ]
    printf '%s' "$output" > "$T/tty"
    grep -aq $'\r\033\[Kbagify: '"$T/bad.png: " "$T/tty" || { cat -v "$T/tty"; return 1; }
}

@test "outputs: stitch's progress line counts records and patches" {
    bagify "$BREAKHIS" | recpass -a darkness > "$T/one"
    for i in $(seq 40); do cat "$T/one"; done > "$T/many"
    script -qec "stitch --no-legend -d $T/out < $T/many" /dev/null > "$T/tty"
    grep -aq $'\rstitch: [0-9]* records, [0-9]* patches/s' "$T/tty" || { cat -v "$T/tty"; return 1; }
    [ "$(ls "$T/out" | wc -l)" -eq 40 ]
    stitch --no-legend -d "$T/out2" < "$T/many" 2> "$T/err"
    assert_empty "$T/err"
}
