#!/usr/bin/env bats
# stainnorm against a NumPy transcription of Macenko et al. 2009 and
# Reinhard et al. 2001 (tests/stains.py, written from the papers): on
# torchstain's H&E pair (a crop of each), and the IHC and BreakHis images
# to each other, as images and as records; the stains file; tissue-only
# fits; and the refusals.

load lib

SOURCE=$DATA/torchstain-source.png
TARGET=$DATA/torchstain-target.png

setup() {
    T=$BATS_TEST_TMPDIR
    PY=$(numpy_python)
}

ppm() { pngtopnm "$1" > "$2"; }

@test "stainnorm: usage" {
    run stainnorm -h
    [ "$status" -eq 0 ]
    [[ "${lines[0]}" == "usage: stainnorm "* ]]
    run stainnorm < /dev/null
    [ "$status" -eq 2 ]
    [[ "$output" == "stainnorm: give the reference: -r IMAGE or -s STAINS, one of them"* ]]
    for bad in "-r a -s b" "-s b --save-stains c" "-s b --io 200" "-m reinhard -r a --beta 0.2" \
               "-r a -o x -d y" "-r a -m lab" "-r a --alpha 60" "-r a --io 0" "-r a -f jpeg" \
               "-r a --bogus"; do
        run stainnorm $bad < /dev/null
        [ "$status" -eq 2 ] || { echo "stainnorm $bad: $status"; return 1; }
        [[ "$output" == *"usage: stainnorm "* ]] || { echo "stainnorm $bad: $output"; return 1; }
    done
}

@test "stainnorm: Macenko and Reinhard are the papers' methods, as NumPy computes them" {
    ppm "$SOURCE" "$T/source.ppm"
    ppm "$TARGET" "$T/target.ppm"
    ppm "$BREAKHIS" "$T/breakhis.ppm"
    ppm "$IHC" "$T/ihc.ppm"
    for m in macenko reinhard; do
        for pair in "target source" "breakhis ihc" "ihc breakhis" "target breakhis"; do
            set -- $pair
            stainnorm -m $m -r "$T/$1.ppm" --save-stains "$T/$1.st" -o "$T/out.pam" "$T/$2.ppm"
            run "$PY" "$BATS_TEST_DIRNAME/stains.py" compare $m "$T/$1.ppm" "$T/$2.ppm" "$T/out.pam"
            echo "$output"
            [ "$status" -eq 0 ]
            run "$PY" "$BATS_TEST_DIRNAME/stains.py" fit $m "$T/$1.ppm" "$T/$1.st"
            echo "$output"
            [ "$status" -eq 0 ]
        done
    done
    # the image changed, and a PNG is the same picture
    stainnorm -r "$TARGET" -o "$T/out.png" "$SOURCE"
    stainnorm -r "$TARGET" -f pam "$SOURCE" > "$T/out.pam"
    ! cmp -s <(pngtopnm "$SOURCE") <(pamtopnm "$T/out.pam")
    cmp <(pngtopnm "$T/out.png") <(pamtopnm "$T/out.pam")
}

@test "stainnorm: a bag's patches are normalized as one image, the rest passed on" {
    ppm "$TARGET" "$T/target.ppm"
    bagify -l 1 "$BREAKHIS" > "$T/bag"
    for m in macenko reinhard; do
        stainnorm -m $m -r "$TARGET" < "$T/bag" > "$T/out"
        run "$PY" "$BATS_TEST_DIRNAME/stains.py" bag $m "$T/target.ppm" "$T/bag" "$T/out"
        echo "$output"
        [ "$status" -eq 0 ]
    done
    run recinfo "$T/out"
    [[ "$output" == *"label = 1"* && "$output" == *"stain_method = reinhard"* &&
       "$output" == *"stain_reference = $TARGET"* && "$output" == *"tensor patches U8 [400, 28, 28, 3]"* ]]
    # an image record's image is the image's pixels normalized
    bagify -w "$BREAKHIS" | stainnorm -r "$TARGET" | recinfo -t image > "$T/ours"
    stainnorm -r "$TARGET" -f pam "$BREAKHIS" | pamtopnm -plain | tail -n +4 | tr -s ' \n' '\n' |
        grep . > "$T/theirs"
    [ "$(wc -l < "$T/theirs")" = $((700 * 460 * 3)) ]
    tr -s '\t\n' '\n' < "$T/ours" | grep . | cmp - "$T/theirs"
    # a stream of records, and -o
    cat "$T/bag" "$T/bag" | stainnorm -r "$TARGET" -o "$T/two"
    [ "$(recinfo "$T/two" | grep -c 'stain_method = macenko')" = 2 ]
}

@test "stainnorm: --save-stains, then -s, gives the bytes of -r" {
    stainnorm -r "$TARGET" --save-stains "$T/m.st" -o "$T/a.png" "$BREAKHIS"
    stainnorm -s "$T/m.st" -o "$T/b.png" "$BREAKHIS"
    cmp "$T/a.png" "$T/b.png"
    run recinfo "$T/m.st"
    [[ "$output" == *"kind = stains"* && "$output" == *"method = macenko"* &&
       "$output" == *"io = 240"* && "$output" == *"beta = 0.15"* &&
       "$output" == *"tensor stains F32 [2, 3]"* && "$output" == *"tensor max_concentrations F32 [2]"* ]]
    stainnorm -m reinhard -r "$TARGET" --save-stains "$T/r.st" -o "$T/c.png" "$BREAKHIS"
    stainnorm -s "$T/r.st" -o "$T/d.png" "$BREAKHIS"
    cmp "$T/c.png" "$T/d.png"
    ! cmp -s "$T/a.png" "$T/c.png"
    run stainnorm -m macenko -s "$T/r.st" -o "$T/e.png" "$BREAKHIS"
    [ "$status" -eq 1 ]
    [ "$output" = "stainnorm: $T/r.st: stains fitted by reinhard, not by --method macenko" ]
    # --io, --alpha, --beta travel with the stains
    stainnorm -r "$TARGET" --io 250 --alpha 2 --beta 0.2 --save-stains "$T/k.st" -o "$T/f.png" "$BREAKHIS"
    stainnorm -s "$T/k.st" -o "$T/g.png" "$BREAKHIS"
    cmp "$T/f.png" "$T/g.png"
    ! cmp -s "$T/a.png" "$T/f.png"
}

@test "stainnorm --tissue: glass around the tissue changes nothing" {
    ppm "$BREAKHIS" "$T/b.ppm"
    pnmpad -white -left 200 -right 200 -top 100 "$T/b.ppm" > "$T/padded.ppm"
    for m in macenko reinhard; do
        stainnorm -m $m -t -r "$T/b.ppm" --save-stains "$T/alone.st" < /dev/null > /dev/null
        stainnorm -m $m -t -r "$T/padded.ppm" --save-stains "$T/padded.st" < /dev/null > /dev/null
        for t in $([ $m = macenko ] && echo stains max_concentrations || echo lab_mean lab_sd); do
            cmp <(recinfo -t $t "$T/alone.st") <(recinfo -t $t "$T/padded.st")
        done
    done
    # without it, the glass is fitted too
    stainnorm -m reinhard -r "$T/b.ppm" --save-stains "$T/a.st" < /dev/null > /dev/null
    stainnorm -m reinhard -r "$T/padded.ppm" --save-stains "$T/p.st" < /dev/null > /dev/null
    ! cmp -s <(recinfo -t lab_mean "$T/a.st") <(recinfo -t lab_mean "$T/p.st")
}

@test "stainnorm: images from standard input, and -d DIR for several" {
    stainnorm -r "$TARGET" -o "$T/a.png" "$BREAKHIS"
    stainnorm -r "$TARGET" < "$BREAKHIS" > "$T/b.png"
    cmp "$T/a.png" "$T/b.png"
    stainnorm -r "$TARGET" -d "$T/out" -f pam "$BREAKHIS" "$IHC"
    [ -s "$T/out/SOB_B_A-14-22549G-40-001.pam" ]
    [ -s "$T/out/ihc.pam" ]
    cmp <(pamtopnm "$T/out/SOB_B_A-14-22549G-40-001.pam") <(pngtopnm "$T/a.png")
}

@test "stainnorm: a file of several images, a TGA, a pipe; no output over an input" {
    pngtopam "$BREAKHIS" > "$T/a.pam"
    pngtopam "$IHC" > "$T/b.pam"
    cat "$T/a.pam" "$T/b.pam" > "$T/two.pam"
    stainnorm -r "$TARGET" -d "$T/out" -f pam "$T/two.pam"
    stainnorm -r "$TARGET" -f pam "$T/b.pam" > "$T/b.out"
    cmp "$T/out/two-1.pam" "$T/b.out"
    [ -s "$T/out/two.pam" ]
    run bash -c "stainnorm -r '$TARGET' -f pam '$T/two.pam' > '$T/x'"
    [ "$status" -eq 1 ]
    [ "$output" = "stainnorm: $T/two.pam: a second image: give -d DIR for several" ]
    # a TGA has no signature: what is not a record is taken as an image
    ppmtotga -rgb "$T/a.pam" > "$T/a.tga" 2> /dev/null || pamtotga "$T/a.pam" > "$T/a.tga"
    stainnorm -r "$TARGET" -f pam "$T/a.tga" | cmp - <(stainnorm -r "$TARGET" -f pam "$T/a.pam")
    # a pipe is read once, alone
    bagify -l 1 "$BREAKHIS" > "$T/bag"
    stainnorm -r "$TARGET" <(cat "$T/bag") | cmp - <(stainnorm -r "$TARGET" "$T/bag")
    run stainnorm -r "$TARGET" "$T/bag" <(cat "$T/bag")
    [ "$status" -eq 1 ]
    [[ "$output" == *"a pipe or device is read alone, not with other inputs" ]]
    # --save-stains and -d never write over an input, not even a later one
    cp "$T/bag" "$T/keep"
    run stainnorm -r "$TARGET" --save-stains "$T/keep" -o "$T/o" "$T/keep"
    [ "$status" -eq 1 ]
    [ "$output" = "stainnorm: $T/keep is also an input: it would be overwritten" ]
    cmp "$T/bag" "$T/keep"
    mkdir -p "$T/d"
    cp "$SOURCE" "$T/d/s.png"
    cp "$IHC" "$T/s.png"
    run stainnorm -r "$TARGET" -d "$T/d" "$T/s.png" "$T/d/s.png"
    [ "$status" -eq 1 ]
    [[ "$output" == *"$T/d/s.png is also an input: it would be overwritten" ]]
    cmp "$SOURCE" "$T/d/s.png"
}

@test "stainnorm: bad input exits 1 with a message and writes nothing" {
    ppmmake white 64 64 > "$T/white.ppm"
    pgmramp -lr 64 64 | ppmtoppm > "$T/gray.ppm"
    ppmmake '#c08090' 64 64 > "$T/flat.ppm"
    bagify -l 1 "$BREAKHIS" > "$T/bag"
    bagify -l 1 "$BREAKHIS" | featurize -m "$M" > "$T/features"
    bagify -g "$BREAKHIS" > "$T/graybag"
    stainnorm -r "$TARGET" --save-stains "$T/s.st" < /dev/null
    recpass -m io=0 "$T/s.st" > "$T/io.st"
    pngtopnm "$BREAKHIS" | ppmtopgm | bagify - > "$T/grays"   # grey, in three channels
    for case in "-r $T/white.ppm $BREAKHIS|$T/white.ppm: the reference: 0 of the 4096 pixels have an optical density of 0.15 or more in every channel; a fit needs 100" \
                "-r $TARGET $T/white.ppm|$T/white.ppm: 0 of the 4096 pixels have an optical density of 0.15 or more in every channel; a fit needs 100" \
                "-r $T/gray.ppm $BREAKHIS|$T/gray.ppm: the reference: not an H&E image: its optical densities lie on a line" \
                "-m reinhard -r $T/flat.ppm $BREAKHIS|$T/flat.ppm: the reference: one colour: its L*a*b* channel L* does not vary" \
                "-t -r $T/white.ppm $BREAKHIS|$T/white.ppm: the reference: 0 pixels to fit on; a fit needs 100" \
                "-s $T/bag $BREAKHIS|$T/bag: a record of kind 'bag', not stains (stainnorm --save-stains)" \
                "-s $T/io.st $BREAKHIS|$T/io.st: metadata io: 0 is out of range [1, 255]" \
                "-r $TARGET $T/features|$T/features: record 0: no patches or image to normalize" \
                "-r $TARGET $T/graybag|$T/graybag: record 0: patches of 1 channel: stains are normalized in colour (RGB)" \
                "-r $TARGET $T/grays|$T/grays: record 0: not an H&E image: its optical densities lie on a line" \
                "-r $TARGET -d $T/dir $T/bag|$T/bag: -d DIR is for images; records go to -o FILE or standard output" \
                "-r $TARGET $BREAKHIS $IHC|$IHC: a second image: give -d DIR for several" \
                "-r $TARGET $T/bag $BREAKHIS|$BREAKHIS: an image among records: give them apart" \
                "-r $TARGET $T/bag -|-: standard input is read alone, not with other inputs" \
                "-r $TARGET $T/none.png|$T/none.png: No such file or directory" \
                "-r $T/none.png $BREAKHIS|$T/none.png: No such file or directory"; do
        run bash -c "stainnorm ${case%%|*} > '$T/out'"
        [ "$status" -eq 1 ] || { echo "$case: status $status"; return 1; }
        [[ "$output" == "stainnorm: ${case#*|}"* ]] || { echo "$case: $output"; return 1; }
        assert_empty "$T/out"
    done
    run stainnorm -r "$TARGET" -o "$T/x.png" "$T/x.png"
    [ "$status" -eq 1 ]
}
