#!/usr/bin/env bats
# The record stream (amil-stream(5)) as programs see it: recinfo describes
# and checks records; recpass (a test helper) reads and rewrites them, as
# every amil filter does.  Each bad input: exit 1, a message naming the
# record, and on stdout only the whole records before it.

load lib

good='{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}'

# refused HEADER DATA_BYTES MESSAGE: a good record, then the bad one.
refused() {
    local t=$BATS_TEST_TMPDIR
    { record "$good" 4; record "$1" "$2"; } > "$t/in"
    record "$good" 4 | recpass > "$t/first"
    run bash -c "recpass '$t/in' > '$t/out'"
    [ "$status" -eq 1 ]
    [[ "$output" == "recpass: $t/in: record 1: "*"$3"* ]] || { echo "got: $output"; return 1; }
    cmp "$t/out" "$t/first"
}

@test "recinfo: usage" {
    run recinfo -h
    [ "$status" -eq 0 ]
    [[ "$output" == usage:* ]]
    run recinfo --nonsense
    [ "$status" -eq 2 ]
}

@test "recinfo: describes a bag" {
    run bash -c "bagify '$BREAKHIS' | recinfo"
    [ "$status" -eq 0 ]
    [[ "$output" == *"tensor patches U8 [400, 28, 28, 3]"* ]]
    [[ "$output" == *"tensor coords I32 [400, 2]"* ]]
    [[ "$output" == *"patient = 14-22549G"* ]]
    run bash -c "bagify '$BREAKHIS' '$BREAKHIS' | recinfo -j"
    [ "${#lines[@]}" -eq 2 ]
    [[ "${lines[1]}" == '{"stream":"<stdin>","index":1,'* ]]
}

@test "stream: an empty stream is an error in every program that reads records" {
    : > "$BATS_TEST_TMPDIR/empty"
    e=$BATS_TEST_TMPDIR/empty
    for cmd in "recinfo" "recinfo $e" "featurize -m $M" "attend -m $M $e" "classify -m $M" \
               "classify -t -m $M $e" "stainnorm -r $BREAKHIS -o $BATS_TEST_TMPDIR/z.bags $e" \
               "stitch" "gradcam -m $M -o $BATS_TEST_TMPDIR/g.png" "train -q -o $BATS_TEST_TMPDIR/m"; do
        run bash -c "$cmd < '$e' > '$BATS_TEST_TMPDIR/out'"
        [ "$status" -eq 1 ] || { echo "$cmd: status $status: $output"; return 1; }
        [[ "$output" == *"no records" ]] || { echo "$cmd: $output"; return 1; }
        assert_empty "$BATS_TEST_TMPDIR/out"
    done
    [ ! -e "$BATS_TEST_TMPDIR/z.bags" ]
    [ ! -e "$BATS_TEST_TMPDIR/m" ]
    # the stains alone from a reference: no records wanted
    stainnorm -r "$BREAKHIS" --save-stains "$BATS_TEST_TMPDIR/s.st" < "$e"
    recinfo "$BATS_TEST_TMPDIR/s.st" | grep -q "kind = stains"
}

@test "stream: truncated length" {
    { record "$good" 4; printf 'abc'; } > "$BATS_TEST_TMPDIR/in"
    run bash -c "recpass '$BATS_TEST_TMPDIR/in' > /dev/null"
    [ "$status" -eq 1 ]
    [[ "$output" == *"record 1: truncated length (3 of 8 bytes)" ]]
}

@test "stream: truncated header" {
    { record "$good" 4; record "$good" 4 | head -c 20; } > "$BATS_TEST_TMPDIR/in"
    run bash -c "recpass '$BATS_TEST_TMPDIR/in' > /dev/null"
    [ "$status" -eq 1 ]
    [[ "$output" == *"record 1: truncated header (12 of ${#good} bytes)" ]]
}

@test "stream: truncated data" { refused "$good" 3 "truncated data (3 of 4 bytes)"; }

@test "stream: header over the limit" {
    { record "$good" 4; printf '\000\000\000\000\001\000\000\000'; } > "$BATS_TEST_TMPDIR/in"
    run bash -c "recpass '$BATS_TEST_TMPDIR/in' > /dev/null"
    [ "$status" -eq 1 ]
    [[ "$output" == *"record 1: header of 4294967296 bytes is over the limit of 100000000"* ]]
}

@test "stream: invalid JSON" { refused '{"a":{"dtype":"U8",' 0 "invalid JSON"; }

@test "stream: missing fields" {
    refused '{"a":{"shape":[4],"data_offsets":[0,4]}}' 4 "tensor 'a': no dtype"
    refused '{"a":{"dtype":"U8","data_offsets":[0,4]}}' 4 "tensor 'a': no shape"
    refused '{"a":{"dtype":"U8","shape":[4]}}' 4 "tensor 'a': no data_offsets"
}

@test "stream: unknown dtype" {
    refused '{"a":{"dtype":"U4","shape":[4],"data_offsets":[0,4]}}' 4 "unknown dtype U4"
}

@test "stream: shape product overflows" {
    refused '{"a":{"dtype":"U8","shape":[65536,65536,65536,65536],"data_offsets":[0,4]}}' 4 \
        "shape product overflows"
}

@test "stream: offsets out of range" {
    refused '{"a":{"dtype":"U8","shape":[4],"data_offsets":[4,0]}}' 4 "out of range"
    refused '{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,-4]}}' 4 "not two non-negative"
}

@test "stream: offsets overlap or leave gaps" {
    refused '{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[3,7]}}' 7 \
        "tensor 'b': data_offsets overlap"
    refused '{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[5,9]}}' 9 \
        "tensor 'b': data_offsets leave a gap of 1 bytes"
}

@test "stream: data length does not match dtype and shape" {
    refused '{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,4]}}' 4 \
        "span 4 bytes, but F32 × shape needs 16"
}

@test "stream: non-string metadata" {
    refused '{"__metadata__":{"label":1},"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}' 4 \
        "metadata value of 'label' is not a string"
}

@test "stream: garbage instead of a record" {
    head -c 4096 /dev/urandom > "$BATS_TEST_TMPDIR/noise"
    run timeout 10 recinfo "$BATS_TEST_TMPDIR/noise"
    [ "$status" -eq 1 ]
    [[ "$output" == *"record 0: "* ]]
}

@test "stream: tensors and metadata a program does not use pass through" {
    bagify -L breakhis "$BREAKHIS" > "$BATS_TEST_TMPDIR/bag"
    recpass -a index < "$BATS_TEST_TMPDIR/bag" > "$BATS_TEST_TMPDIR/more"
    run diff <(recinfo < "$BATS_TEST_TMPDIR/bag") <(recinfo < "$BATS_TEST_TMPDIR/more")
    [ "$status" -eq 1 ]
    [ "${lines[0]}" = "25a26" ]
    [ "${lines[1]}" = ">   tensor attention F32 [1, 400]" ]
    [ "${#lines[@]}" -eq 2 ]
    # and the bytes of what was there before are the same
    recpass < "$BATS_TEST_TMPDIR/bag" | cmp - "$BATS_TEST_TMPDIR/bag"
}

@test "stream: Python's NumPy reads ours and we read NumPy's" {
    py=$(numpy_python) || skip "python3-numpy is missing: the round trip is not checked"
    run bash -c "'$py' '$BATS_TEST_DIRNAME/safetensors.py' make | recpass | '$py' '$BATS_TEST_DIRNAME/safetensors.py' check"
    echo "$output"
    [ "$status" -eq 0 ]
    [ "$output" = "round trip ok" ]
}
