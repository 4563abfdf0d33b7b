#!/usr/bin/env bats
# Model files are downloaded and shared: whatever a file's header claims,
# loading it must fail with a message, never write outside what was
# allocated, and never allocate what the file's data cannot back.  The files
# are written by tests/hostile/models.py, which says how each was built.

load lib

setup() {
    T=$BATS_TEST_TMPDIR
    python3 "$BATS_TEST_DIRNAME/hostile/models.py" "$T"
    python3 "$BATS_TEST_DIRNAME/hostile/images.py" "$T"
    bagify "$BREAKHIS" > "$T/bag"
}

# run_limited CMD...: CMD with its address space capped at 1 GiB, stdout to
# $T/out, so an allocation the data cannot back fails as "out of memory".
run_limited() {
    run bash -c 'ulimit -v 1048576; "$@" > "$0/out"' "$T" "$@"
}

@test "hostile models: sizes that overflow are refused before anything is copied" {
    for prog in featurize attend classify; do
        run_limited "$prog" -m "$T/overflow.safetensors" "$T/bag"
        [ "$status" -eq 1 ] || { echo "$prog: status $status: $output"; return 1; }
        [[ "$output" == "$prog: $T/overflow.safetensors: the tensors give hidden 44987186551, outside 1..1048576" ]] \
            || { echo "$output"; return 1; }
        assert_empty "$T/out"
    done
    run_limited gradcam -m "$T/overflow.safetensors" -f record "$T/bag"
    [ "$status" -eq 1 ]
    [[ "$output" == *"overflow.safetensors: the tensors give hidden 44987186551"* ]]
    assert_empty "$T/out"
}

@test "hostile models: train --resume refuses a checkpoint whose sizes overflow" {
    bagify -l 1 "$BREAKHIS" > "$T/labelled"
    recpass -m kind=checkpoint "$T/overflow.safetensors" > "$T/overflow.ckpt"
    run_limited train -q -o "$T/model" -e 1 --resume "$T/overflow.ckpt" "$T/labelled"
    [ "$status" -eq 1 ]
    [[ "$output" == *"overflow.ckpt: the tensors give hidden 44987186551, outside 1..1048576"* ]]
    [ ! -e "$T/model" ]
    # and the file as it is: a model, not a checkpoint, said before its sizes
    run_limited train -q -o "$T/model" -e 1 --resume "$T/overflow.safetensors" "$T/labelled"
    [ "$status" -eq 1 ]
    [[ "$output" == *"overflow.safetensors: "*"not a checkpoint"* ]] || { echo "$output"; return 1; }
}

@test "hostile models: sizes with no data behind them allocate nothing" {
    for prog in featurize attend classify; do
        run_limited "$prog" -m "$T/huge.safetensors" "$T/bag"
        [ "$status" -eq 1 ] || { echo "$prog: status $status: $output"; return 1; }
        [[ "$output" == "$prog: $T/huge.safetensors: tensor 'feature_extractor_part1.0.bias' is missing or not F32 of the shape the model needs" ]] \
            || { echo "$output"; return 1; }
        assert_empty "$T/out"
    done
    bagify -w "$BREAKHIS" > "$T/image"
    for prog in featurize classify; do   # the programs that take a CNN
        run_limited "$prog" -m "$T/vgg19.safetensors" "$T/image"
        [ "$status" -eq 1 ]
        [[ "$output" == "$prog: $T/vgg19.safetensors: tensor 'features.0.weight' is missing"* ]] \
            || { echo "$output"; return 1; }
        assert_empty "$T/out"
    done
}

# Images of a few dozen bytes claiming hundreds of megabytes of pixels
# (tests/hostile/images.py): refused as truncated from their headers, with
# the address space capped at 200 MiB (decoding them had taken 657 MB to
# 1.5 GB, and the TGA had become a 680 MB bag, exit 0).
@test "hostile images: a PAM header libnetpbm would misread never reaches it" {
    # fuzzing found AddressSanitizer reporting an overlapping strncpy inside
    # libnetpbm's PAM header reader on a header line of garbage
    { printf 'P7\n'; printf 'n%.0s' $(seq 300); printf '\n'; } > "$T/long.pam"
    printf 'P7\nWIDTH 1\nHEIGHT 1\nDEPTH 3\nMAXVAL 255\nBOGUS 1\nENDHDR\nabc' > "$T/label.pam"
    printf 'P7\nWIDTH 1\nHEIGHT 1\nDEPTH 3\nMAXVAL 255\n' > "$T/noend.pam"
    for case in "long.pam:line 2 is not text of at most 200 bytes" \
                "label.pam:line 6 is not one of WIDTH, HEIGHT, DEPTH, MAXVAL, TUPLTYPE or ENDHDR" \
                "noend.pam:without ENDHDR"; do
        f=${case%%:*}
        run bagify "$T/$f"
        [ "$status" -eq 1 ] || { echo "$f: status $status: $output"; return 1; }
        [ "$output" = "bagify: $T/$f: not a valid netpbm image: PAM header ${case#*:}" ] ||
            { echo "$output"; return 1; }
    done
    # a good header with a comment and a blank line still reads
    printf 'P7\nWIDTH 2\nHEIGHT 1\n# made by hand\n\nDEPTH 3\nMAXVAL 255\nTUPLTYPE RGB\nENDHDR\n\1\2\3\4\5\6' \
        > "$T/good.pam"
    bagify -w "$T/good.pam" > "$T/out"
    recinfo "$T/out" | grep -q 'image_width = 2'
}

@test "hostile images: headers that claim more pixels than the file holds" {
    for case in "bomb.png:truncated PNG: 11 bytes of compressed data cannot hold 16384×16384" \
                "bomb.pam:truncated netpbm image: 16384×16384 needs 805306368 bytes" \
                "bomb.bmp:truncated BMP: 24×9306132 at 24 bits needs 670041504 bytes" \
                "bomb.tga:truncated TGA: 65535×4096 pixels cannot come from 30 bytes" \
                "raw.tga:truncated TGA: 4096×4096 pixels cannot come from 30 bytes"; do
        f=${case%%:*}
        run bash -c 'ulimit -v 204800; bagify "$1" > "$2"' _ "$T/$f" "$T/out"
        [ "$status" -eq 1 ] || { echo "$f: status $status: $output"; return 1; }
        [[ "$output" == "bagify: $T/$f: ${case#*:}"* ]] || { echo "$output"; return 1; }
        assert_empty "$T/out"
    done
}
