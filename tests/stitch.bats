#!/usr/bin/env bats
# stitch on bags of the real BreakHis image, with attention from recpass -a
# (darkness: tissue gets the weight) until attend exists.  Pixel-exact
# checks against NumPy references of the paper's picture and of the heat map.

load lib

setup() {
    T=$BATS_TEST_TMPDIR
    py=$(numpy_python) || py=
    st=$BATS_TEST_DIRNAME/safetensors.py
}

need_numpy() { [ -n "$py" ] || skip "python3-numpy is missing"; }

# attended [bagify options]: a bag of the BreakHis image with attention
attended() { bagify "$@" "$BREAKHIS" | recpass -a darkness; }

@test "stitch: usage" {
    run stitch -h
    [ "$status" -eq 0 ]
    [[ "${lines[0]}" == "usage: stitch "* ]]
    for bad in "--style fancy" "--cmap rainbow" "--alpha 2" "--norm z" "-f gif" \
               "-o a.png -d dir" "--style paper --cmap jet" "--style paper --top 3" \
               "a.png b.png"; do
        run stitch $bad < /dev/null
        [ "$status" -eq 2 ] || { echo "stitch $bad: $status"; return 1; }
    done
}

@test "stitch: a heat map the size of the image, PNG or PAM" {
    attended > "$T/bag"
    stitch < "$T/bag" > "$T/heat.png"
    [[ "$(pngtopam "$T/heat.png" | pamfile)" == *"PPM raw, 700 by 460 "* ]]
    stitch -o "$T/heat.pam" < "$T/bag"
    [ "$(head -c 2 "$T/heat.pam")" = P7 ]
    stitch -f pam < "$T/bag" | cmp - "$T/heat.pam"
    pngtopam "$T/heat.png" | pamtopnm | cmp - <(pamtopnm "$T/heat.pam")
}

@test "stitch: the heat map is NumPy's, pixel for pixel, with overlapping patches averaged" {
    need_numpy
    pngtopam "$BREAKHIS" > "$T/image.pam"
    for stride in 28 14; do
        attended -s $stride > "$T/bag"
        stitch --cmap gray --alpha 0.6 --no-legend -o "$T/heat.pam" "$BREAKHIS" < "$T/bag"
        run "$py" "$st" heat "$T/image.pam" "$T/heat.pam" 0.6 < "$T/bag"
        echo "$output"
        [ "$status" -eq 0 ]
    done
}

@test "stitch: pixels of no patch keep the image's colour (crop and background)" {
    need_numpy
    pngtopam "$BREAKHIS" > "$T/image.pam"
    for opts in "" "-b 0.5"; do
        attended $opts > "$T/bag"
        stitch --no-legend -f pam < "$T/bag" > "$T/heat.pam"
        run "$py" "$st" untouched "$T/image.pam" "$T/heat.pam" < "$T/bag"
        echo "$output"
        [ "$status" -eq 0 ]
    done
    # with -b 0.5 there are more untouched pixels than the 6+6 cropped rows
    [[ "$output" != "8400 uncovered"* ]]
}

@test "stitch: alpha 0 is the image; alpha 1 the colour map's ends" {
    attended > "$T/bag"
    stitch -a 0 --no-legend -f pam < "$T/bag" | pamtopnm > "$T/a0.ppm"
    pngtopam "$BREAKHIS" | pamtopnm | cmp - "$T/a0.ppm"
    # the patch of most attention is jet's top, (128, 0, 0); of least, (0, 0, 128)
    stitch -a 1 --no-legend -f pam < "$T/bag" | pamtopnm > "$T/a1.ppm"
    top=$(recinfo -t attention "$T/bag" | tr '\t' '\n' | awk '{ print NR - 1, $1 }' | sort -k2 -g | tail -n 1 | cut -d' ' -f1)
    low=$(recinfo -t attention "$T/bag" | tr '\t' '\n' | awk '{ print NR - 1, $1 }' | sort -k2 -g | head -n 1 | cut -d' ' -f1)
    for pair in "$top:128 0 0" "$low:0 0 128"; do
        yx=($(recinfo -t coords "$T/bag" | sed -n "$(( ${pair%%:*} + 1 ))p"))
        got=$(pamcut -left $((yx[1] + 5)) -top $((yx[0] + 5)) -width 1 -height 1 "$T/a1.ppm" | pnmnoraw | tail -n 1 | xargs)
        [ "$got" = "${pair#*:}" ] || { echo "patch ${pair%%:*}: $got"; return 1; }
    done
}

@test "stitch: the paper's picture is the paper's code, byte for byte" {
    need_numpy
    attended > "$T/bag"
    stitch --style paper -f pam < "$T/bag" > "$T/paper.pam"
    [[ "$(pamfile "$T/paper.pam")" == *"700 by 448 by 3"* ]]
    run "$py" "$st" paper "$T/paper.pam" < "$T/bag"
    echo "$output"
    [ "$status" -eq 0 ]
    # from the image instead of the record's patches: the same picture
    recpass -r patches < "$T/bag" | stitch --style paper -f pam | cmp - "$T/paper.pam"
}

@test "stitch: normalizations and colour maps change the picture" {
    attended > "$T/bag"
    for o in "" "--norm max" "--norm rank" "--cmap viridis" "--cmap gray" "--top 3"; do
        stitch $o -f pam < "$T/bag" | md5sum
    done > "$T/sums"
    [ "$(sort -u "$T/sums" | wc -l)" -eq 6 ]
}

@test "stitch: --top outlines exactly K patches" {
    need_numpy
    attended > "$T/bag"
    stitch -a 0 -f pam < "$T/bag" > "$T/plain.pam"
    stitch -a 0 --top 2 -f pam < "$T/bag" > "$T/top.pam"
    run "$py" -c "
import sys; sys.path.insert(0, '$BATS_TEST_DIRNAME')
from safetensors import read_pnm
import numpy as np
a, b = read_pnm('$T/plain.pam'), read_pnm('$T/top.pam')
print(int(np.any(a != b, axis=2).sum()))"
    # two frames of two rings: (27 + 25) * 4 pixels each, less any pixel
    # that already had the frame's colour
    [ "$output" -le 416 ]
    [ "$output" -gt 400 ]
}

@test "stitch: attention branches" {
    bagify "$BREAKHIS" | recpass -a darkness -K 2 > "$T/bag2"
    stitch -b 0 -f pam < "$T/bag2" > "$T/b0"
    stitch -b 1 -f pam < "$T/bag2" > "$T/b1"
    ! cmp -s "$T/b0" "$T/b1" || false
    run bash -c "stitch -b 2 < '$T/bag2' > '$T/out'"
    [ "$status" -eq 1 ]
    [[ "$output" == *"record 0: --branch 2: the attention has 2 branches"* ]]
    assert_empty "$T/out"
}

@test "stitch: -d writes one picture per record, named after its source" {
    mkdir -p "$T/a" "$T/b"
    cp "$BREAKHIS" "$T/a/x.png"
    cp "$BREAKHIS" "$T/b/x.png"
    bagify "$BREAKHIS" "$IHC" "$T/a/x.png" "$T/b/x.png" | recpass -a darkness | stitch -d "$T/out"
    [ "$(cd "$T/out" && ls | xargs)" = "SOB_B_A-14-22549G-40-001.png ihc.png x-3.png x.png" ]
    [[ "$(pngtopam "$T/out/ihc.png" | pamfile)" == *"512 by 512"* ]]
}

@test "stitch: -d never lets one picture overwrite another" {
    mkdir -p "$T/x" "$T/y"
    cp "$BREAKHIS" "$T/x/a.png"; cp "$BREAKHIS" "$T/x/a-2.png"; cp "$BREAKHIS" "$T/y/a.png"
    bagify "$T/x/a.png" "$T/x/a-2.png" "$T/y/a.png" | recpass -a darkness | stitch -d "$T/out"
    [ "$(cd "$T/out" && ls | xargs)" = "a-2-2.png a-2.png a.png" ]
}

@test "stitch: bad input exits 1 with a message and writes nothing" {
    attended > "$T/bag"
    cat "$T/bag" "$T/bag" > "$T/two"
    pngtopam "$BREAKHIS" | pamcut -height 456 > "$T/short.pam"
    bagify "$BREAKHIS" > "$T/plain"
    bagify < "$BREAKHIS" | recpass -a darkness > "$T/nosource"
    head -c 1000 "$T/bag" > "$T/cut"
    for case in "two:more than one record; use -d DIR" \
                "plain:record 0: no tensor 'attention' (run attend first)" \
                "nosource:no image to draw on: give IMAGE" \
                "cut:record 0: truncated" ; do
        run bash -c "stitch < '$T/${case%%:*}' > '$T/out'"
        [ "$status" -eq 1 ] || { echo "$case: status $status"; return 1; }
        [[ "$output" == *"${case#*:}"* ]] || { echo "$case: $output"; return 1; }
        assert_empty "$T/out"
    done
    run bash -c "stitch '$T/short.pam' < '$T/bag' > '$T/out'"
    [ "$status" -eq 1 ]
    [[ "$output" == *"is 700×456, but the record was cut from a 700×460 image"* ]]
    assert_empty "$T/out"
    # malformed metadata
    record '{"__metadata__":{"source":"'"$BREAKHIS"'","patch":"28","image_height":"4x"},"attention":{"dtype":"F32","shape":[1,1],"data_offsets":[0,4]},"coords":{"dtype":"I32","shape":[1,2],"data_offsets":[4,12]}}' 12 > "$T/badmeta"
    run bash -c "stitch < '$T/badmeta' > '$T/out'"
    [ "$status" -eq 1 ]
    [ "$output" = "stitch: <stdin>: record 0: metadata image_height: '4x' is not an integer" ]
    assert_empty "$T/out"
    # attention is a softmax: a negative weight is refused
    recpass -f attention=-1 < "$T/bag" > "$T/negative"
    run bash -c "stitch --top 2 < '$T/negative' > '$T/out'"
    [ "$status" -eq 1 ]
    [[ "$output" == *"record 0: attention of patch 0 is -1, not a weight" ]]
    assert_empty "$T/out"
    run bash -c "stitch < /dev/null > '$T/out'"
    [ "$status" -eq 1 ]
    [ "$output" = "stitch: <stdin>: no records" ]
}

# bagify records the folder it ran in (source_dir) beside a relative
# source, and stitch and gradcam look there when the source is not found
# from where they run.
@test "stitch, gradcam: a relative source is found from another folder" {
    mkdir -p "$T/a" "$T/b"
    cp "$BREAKHIS" "$T/a/x.png"
    (cd "$T/a" && bagify x.png > ../x.bag)
    [ "$(recinfo "$T/x.bag" | sed -n 's/^  source_dir = //p')" = "$T/a" ]
    recpass -a darkness < "$T/x.bag" > "$T/x.att"
    (cd "$T/b" && stitch -o heat.png < ../x.att)
    [[ "$(pngtopam "$T/b/heat.png" | pamfile)" == *"700 by 460"* ]]
    (cd "$T/b" && gradcam -m "$M" -o cam.png < ../x.bag)
    [[ "$(pngtopam "$T/b/cam.png" | pamfile)" == *"700 by 460"* ]]
    # gone from both places: the message names the source as given
    mv "$T/a/x.png" "$T/a/y.png"
    run bash -c "cd '$T/b' && stitch -o heat2.png < ../x.att"
    [ "$status" -eq 1 ]
    [[ "$output" == *"x.png: No such file or directory"* ]] || { echo "$output"; return 1; }
    # an absolute source has no source_dir
    bagify "$T/a/y.png" | recinfo | grep -vq source_dir
    ! bagify "$T/a/y.png" | recinfo | grep -q source_dir || false
}

# The heat style draws a legend, the colour bar and the attention at its
# ends (not with --no-legend, nor in the paper's style), sized with the
# picture and put where it hides least (common/media/legend.h), and warns,
# naming the file, when min-max stretches a nearly uniform attention.
# safetensors.py legend finds the box (the pixels --no-legend leaves
# alone) and reads its labels back from the font.
@test "stitch: a legend gives the colours' values; nearly uniform attention is said" {
    need_numpy
    attended > "$T/bag"
    legend() {   # legend BAG [options]: the box and the labels
        local bag=$1
        shift
        stitch -a 1 "$@" -f pam < "$bag" > "$T/with.pam" 2> /dev/null
        stitch -a 1 --no-legend "$@" -f pam < "$bag" > "$T/without.pam" 2> /dev/null
        "$py" "$st" legend "$T/with.pam" "$T/without.pam"
    }
    # 700 x 460: font pixels of 2, the bar a quarter of the width, at the
    # bottom right, 4 pixels in; the bar is jet from end to end
    run legend "$T/bag"
    [ "${lines[0]}" = "box 513 424 183 32" ] || { echo "$output"; return 1; }
    pixel() { pamcut -left "$1" -top "$2" -width 1 -height 1 "$T/with.pam" | pamtopnm | pnmnoraw | tail -n 1 | xargs; }
    [ "$(pixel 517 428)" = "0 0 128" ]
    [ "$(pixel 691 437)" = "128 0 0" ]
    [ "$(pixel 514 425)" = "255 255 255" ]
    # a narrow range gets the digits that tell its ends apart ("%.2g" drew
    # 0.02 at both)
    recpass -f attention=0.0204056 < "$T/bag" | recpass -f attention@5=0.0204153 > "$T/narrow"
    run legend "$T/narrow"
    [ "${lines[1]}" = "labels 0.02041 0.02042" ] || { echo "$output"; return 1; }
    # the top K's outlines stay visible: with the most attention at the
    # bottom right (-a index), the legend goes to the bottom left
    bagify "$BREAKHIS" | recpass -a index > "$T/index"
    run legend "$T/index" --top 3
    [ "${lines[0]}" = "box 4 424 183 32" ] || { echo "$output"; return 1; }
    # no legend in a picture too small to hold one
    stitch -a 1 -W 40 -f pam < "$T/bag" | cmp - <(stitch -a 1 -W 40 --no-legend -f pam < "$T/bag")
    # nearly uniform attention: a warning with the range and the file,
    # each record's own under -d; a wide range, none
    bagify "$BREAKHIS" "$IHC" | recpass -a flat > "$T/flat"
    run bash -c "stitch -d '$T/flat.d' < '$T/flat'"
    [ "$status" -eq 0 ]
    [ "${lines[0]}" = "stitch: warning: $BREAKHIS: attention from 0.00235 to 0.00266, nearly uniform: min-max stretches it over the whole colour map (the legend gives the values)" ] ||
        { echo "$output"; return 1; }
    [[ "${lines[1]}" == "stitch: warning: $IHC: attention from "* ]] || { echo "$output"; return 1; }
    run bash -c "stitch -o '$T/wide.png' < '$T/bag'"
    [ "$status" -eq 0 ]
    [ -z "$output" ]
}

# The legend's size follows the picture's: on the slide at level 0
# (2220 x 2967) the fixed 168 x 32 box was a speck, at downsample 16
# (139 x 186) it took a fifth of the picture.  Both times the corner is
# the top right, glass.
@test "stitch: the legend grows and shrinks with the picture" {
    need_numpy
    bagify "$DATA/CMU-1-Small-Region.svs" | recpass -a darkness > "$T/slide"
    for case in "1:box 1599 22 599 176" "16:box 83 2 54 16"; do
        stitch -a 1 -D "${case%%:*}" -f pam < "$T/slide" > "$T/with.pam"
        stitch -a 1 -D "${case%%:*}" --no-legend -f pam < "$T/slide" > "$T/without.pam"
        run "$py" "$st" legend "$T/with.pam" "$T/without.pam"
        [ "${lines[0]}" = "${case#*:}" ] || { echo "-D ${case%%:*}: $output"; return 1; }
        [ "${lines[1]}" = "labels 9.2e-13 0.075" ] || { echo "$output"; return 1; }
    done
}

@test "stitch, gradcam: a downsample far past the image takes the picture's memory, not D²'s" {
    bagify -l 1 "$BREAKHIS" > "$T/bag"
    recpass -a darkness "$T/bag" > "$T/att"
    # 700 x 460 at D = 10^4 or 10^6 is one pixel, nearly all of it past the
    # image's edge (white); the resampler once read D² source pixels
    for D in 10000 1000000; do
        /usr/bin/time -f "%M" -o "$T/rss" stitch --no-legend -D "$D" -f pam -o "$T/s.pam" < "$T/att"
        [ "$(cat "$T/rss")" -lt $((100 * 1024)) ] || { echo "stitch -D $D: $(cat "$T/rss") KB"; return 1; }
        [[ "$(pamfile "$T/s.pam")" == *"1 by 1"* ]]
        /usr/bin/time -f "%M" -o "$T/rss" gradcam -m "$M" -D "$D" -f pam -o "$T/g.pam" < "$T/bag"
        [ "$(cat "$T/rss")" -lt $((100 * 1024)) ] || { echo "gradcam -D $D: $(cat "$T/rss") KB"; return 1; }
        [[ "$(pamfile "$T/g.pam")" == *"1 by 1"* ]]
    done
    # at D = 1000, one pixel: the image's mean over 1000 x 1000, white past
    # its edge (NumPy), under the heat map's colour at alpha 0
    stitch --no-legend -a 0 -D 1000 -f pam -o "$T/m.pam" < "$T/att"
    PY=$(numpy_python)
    want=$(pngtopnm "$BREAKHIS" | "$PY" -c '
import re, sys, numpy as np
data = sys.stdin.buffer.read()   # P6: magic, width, height, maxval, one space
head = re.match(rb"P6\s+(\d+)\s+(\d+)\s+255\s", data)
w, h = int(head[1]), int(head[2])
px = np.frombuffer(data[head.end():], np.uint8).reshape(h, w, 3).astype(np.float64)
full = np.full((1000, 1000, 3), 255.0); full[:h, :w] = px
print(" ".join(str(int(np.rint(v))) for v in full.mean(axis=(0, 1))))')
    got=$(tail -c 3 "$T/m.pam" | od -An -tu1 | xargs)
    [ "$got" = "$want" ] || { echo "got $got, want $want"; return 1; }
    # a pixel over more than a strip (16 M source pixels) is read in
    # chunks of rows, summed in double: a uniform 5000² image (128, 64,
    # 192) at D = 10^4 is a quarter of it and three of white; at D = 4000
    # the last of 2x2 pixels holds 1/16 of it (float sums once gave 234
    # for 192, and the chunks once read past their buffer)
    ppmmake rgb:80/40/c0 5000 5000 > "$T/u.ppm"
    bagify -b 0 -p 28 -s 4900 "$T/u.ppm" | recpass -a darkness > "$T/u.att"
    stitch --no-legend -a 0 -D 10000 -f pam -o "$T/u.pam" < "$T/u.att"
    [ "$(tail -c 3 "$T/u.pam" | od -An -tu1 | xargs)" = "223 207 239" ]
    stitch --no-legend -a 0 -D 4000 -f pam -o "$T/u.pam" < "$T/u.att"
    [ "$(tail -c 3 "$T/u.pam" | od -An -tu1 | xargs)" = "247 243 251" ]
    stitch --no-legend -a 0 -W 1 -f pam -o "$T/u.pam" < "$T/u.att"
    [ "$(tail -c 3 "$T/u.pam" | od -An -tu1 | xargs)" = "128 64 192" ]
}

@test "stitch: a patch claiming a side of 6.5 * 10^10 pixels is outlined in the picture's time" {
    # one patch of side 65536 at downsample 10^6: --top 1 once walked its
    # whole outline, 6.5 * 10^10 steps, outside the picture
    bagify -p 28 -s 700 "$BREAKHIS" | recpass -a darkness | recpass -r patches |
        recpass -m patch=65536 | recpass -m downsample=1000000 > "$T/big.att"
    run timeout 20 stitch --top 1 -f pam -o "$T/big.pam" < "$T/big.att"
    [ "$status" -eq 0 ] || { echo "$output"; return 1; }
    [[ "$(pamfile "$T/big.pam")" == *"700 by 460"* ]]
}
