#!/usr/bin/env bats
# bagify on whole-slide images through OpenSlide: OpenSlide's Aperio test
# slide, and pyramidal TIFFs that libvips builds from it in the test.  The
# pixels are checked against OpenSlide's own openslide-write-png and
# libvips' levels, averaged in NumPy (tests/safetensors.py).

load lib

SVS=$DATA/CMU-1-Small-Region.svs

setup() {
    T=$BATS_TEST_TMPDIR
    PY=$(numpy_python)
}

meta() { recinfo | awk -v k="$1" '$1 == k && $2 == "=" { print $3 }'; }

# full.ppm: the slide's level 0 as OpenSlide paints it
level0() {
    [ -s "$T/full.ppm" ] && return 0
    openslide-write-png "$SVS" 0 0 0 2220 2967 "$T/full.png"
    pngtopam "$T/full.png" > "$T/full.ppm"   # the alpha, all opaque, dropped
}

@test "slide: an Aperio slide is read through OpenSlide, level 0 pixel for pixel" {
    level0
    bagify -b 0 "$SVS" > "$T/bag"
    [ "$(meta kind < "$T/bag")" = bag ]
    [ "$(meta slide_vendor < "$T/bag")" = aperio ]
    [ "$(meta level < "$T/bag")" = 0 ]
    [ "$(meta downsample < "$T/bag")" = 1 ]
    [ "$(meta mpp < "$T/bag")" = 0.499 ]
    [ "$(meta magnification < "$T/bag")" = 20 ]
    [ "$(meta image_width < "$T/bag")" = 2220 ]
    [ "$(meta image_height < "$T/bag")" = 2967 ]
    run bash -c "'$PY' '$BATS_TEST_DIRNAME/safetensors.py' slide '$T/full.ppm' 1 1 < '$T/bag'"
    echo "$output"
    [ "$status" -eq 0 ]
    [ "$output" = "8295 patches ok in 1 records" ]
}

@test "slide: --magnification 10 on a 20x scan is the 2x2 box mean, as --mpp 0.998 is" {
    level0
    bagify -b 0 --magnification 10 "$SVS" > "$T/bag"
    [ "$(meta downsample < "$T/bag")" = 2 ]
    [ "$(meta mpp < "$T/bag")" = 0.998 ]
    [ "$(meta magnification < "$T/bag")" = 10 ]
    [ "$(meta crop_height < "$T/bag")" = 2912 ]   # level-0 pixels: 52 rows of 56
    run bash -c "'$PY' '$BATS_TEST_DIRNAME/safetensors.py' slide '$T/full.ppm' 1 2 < '$T/bag'"
    echo "$output"
    [ "$output" = "2028 patches ok in 1 records" ]
    bagify -b 0 --mpp 0.998 "$SVS" | cmp - "$T/bag"
}

@test "slide: a pyramidal TIFF's level is read as it is, coords in level-0 pixels" {
    level0
    vips crop "$T/full.ppm" "$T/crop.v" 0 0 2208 2960   # whole downsamples: 2, 4, 8
    vips tiffsave "$T/crop.v" "$T/pyramid.tif" --tile --pyramid --tile-width 256 \
        --tile-height 256 --compression deflate
    vips copy "$T/pyramid.tif[page=2]" "$T/level2.png"
    pngtopam "$T/level2.png" > "$T/level2.ppm"
    bagify -b 0 --level 2 "$T/pyramid.tif" > "$T/bag"
    [ "$(meta slide_vendor < "$T/bag")" = generic-tiff ]
    [ "$(meta level < "$T/bag")" = 2 ]
    [ "$(meta downsample < "$T/bag")" = 4 ]
    run bash -c "'$PY' '$BATS_TEST_DIRNAME/safetensors.py' slide '$T/level2.ppm' 4 1 < '$T/bag'"
    echo "$output"
    [ "$output" = "494 patches ok in 1 records" ]
    # --level 1 is level 1, not level 0 averaged
    bagify -b 0 --level 1 "$T/pyramid.tif" > "$T/l1"
    [ "$(meta downsample < "$T/l1")" = 2 ]
    vips copy "$T/pyramid.tif[page=1]" "$T/level1.png"
    pngtopam "$T/level1.png" > "$T/level1.ppm"
    run bash -c "'$PY' '$BATS_TEST_DIRNAME/safetensors.py' slide '$T/level1.ppm' 2 1 < '$T/l1'"
    [ "$output" = "2028 patches ok in 1 records" ]
    # no mpp, no objective power in a plain TIFF: refused, naming the property
    run bagify --mpp 0.5 "$T/pyramid.tif"
    [ "$status" -eq 1 ]
    [[ "$output" == *"the slide has no openslide.mpp-x property"* ]]
    run bagify --magnification 20 "$T/pyramid.tif"
    [ "$status" -eq 1 ]
    [[ "$output" == *"the slide has no openslide.objective-power property"* ]]
    run bagify --level 5 "$T/pyramid.tif"
    [ "$status" -eq 1 ]
    [[ "$output" == *"level 5: the slide has 5 (0 to 4)"* ]]
}

@test "slide: glass is dropped by default, from a coarse mask; --mask draws it" {
    level0
    bagify --mask "$T/mask.png" "$SVS" > "$T/bag"
    [ "$(meta background < "$T/bag")" = 0.5 ]
    [ "$(meta patches_dropped < "$T/bag")" = 5287 ]
    run recinfo "$T/bag"
    [[ "$output" == *"tensor patches U8 [3008, 28, 28, 3]"* ]]
    [ "$(file -b "$T/mask.png" | cut -d, -f1-2)" = "PNG image data, 635 x 848" ]
    # the kept patches against saturation at full resolution, pixel by pixel
    run bash -c "'$PY' '$BATS_TEST_DIRNAME/safetensors.py' tissue '$T/full.ppm' < '$T/bag'"
    echo "$output"
    [ "$status" -eq 0 ]
    # and the check fails on a bag that keeps glass
    run bash -c "bagify -b 0 '$SVS' | '$PY' '$BATS_TEST_DIRNAME/safetensors.py' tissue '$T/full.ppm'"
    [ "$status" -ne 0 ]
    # specks and holes: without cleaning, other patches
    run bash -c "bagify --speck 0 --hole 0 '$SVS' | recinfo"
    [[ "$output" == *"tensor patches U8 [2955, 28, 28, 3]"* ]]
}

@test "slide: --part-size splits a slide into parts that add up to the whole" {
    level0
    bagify -b 0 --part-size 3000 "$SVS" > "$T/parts"
    [ "$(meta part < "$T/parts" | tr '\n' ' ')" = "0 1 2 " ]
    [ "$(meta parts < "$T/parts" | sort -u)" = 3 ]
    [ "$(meta source < "$T/parts" | sort -u)" = "$SVS" ]
    run bash -c "recinfo '$T/parts' | grep 'tensor patches'"
    [ "${lines[0]}" = "  tensor patches U8 [3000, 28, 28, 3]" ]
    [ "${lines[2]}" = "  tensor patches U8 [2295, 28, 28, 3]" ]
    run bash -c "'$PY' '$BATS_TEST_DIRNAME/safetensors.py' slide '$T/full.ppm' 1 1 < '$T/parts'"
    [ "$output" = "8295 patches ok in 3 records" ]
    # one part: no part keys
    [ -z "$(bagify -b 0 --part-size 8295 "$SVS" | meta part)" ]
}

@test "slide: bad slides and misplaced options fail with a message and no output" {
    run bagify --level 1 "$IHC"
    [ "$status" -eq 1 ]
    [[ "$output" == *"not a whole-slide image: --level, --mpp and --magnification are for slides"* ]]
    run bagify --magnification 40 "$SVS"
    [ "$status" -eq 1 ]
    [[ "$output" == *"40 × is finer than the slide's level 0 (20)"* ]]
    run bagify --level 1 --mpp 1 "$SVS"
    [ "$status" -eq 2 ]
    [[ "$output" == *"give one of --level, --mpp and --magnification, once"* ]]
    # a JPEG tile broken in the middle of the file
    cp "$SVS" "$T/broken.svs"
    printf 'garbage in a tile' | dd of="$T/broken.svs" bs=1 seek=1000000 conv=notrunc 2>/dev/null
    bagify -b 0 "$T/broken.svs" > "$T/out" 2> "$T/err" && false
    grep -q "broken.svs: reading the slide: " "$T/err"
    assert_empty "$T/out"
}

@test "slide: attend reads a slide's parts as one bag, the bytes of one record" {
    bagify -l 1 "$BREAKHIS" | train -e 0 -q -o "$T/m.st" > /dev/null
    bagify "$SVS" | featurize -m "$T/m.st" | attend -m "$T/m.st" > "$T/whole"
    # parts of 1024 (a multiple of 16): featurize gives the same bits
    bagify --part-size 1024 "$SVS" | featurize -m "$T/m.st" > "$T/parts"
    [ "$(recinfo "$T/parts" | grep -c '^  part = ')" = 3 ]
    attend -m "$T/m.st" "$T/parts" | cmp - "$T/whole"
    # a part missing, parts out of order, a part alone, parts of two slides
    recsplit() { "$PY" -c '
import sys; sys.path.insert(0, sys.argv[1]); import safetensors as st
recs = list(st.read(open(sys.argv[2], "rb")))
for i in map(int, sys.argv[3].split(",")): st.write(sys.stdout.buffer, *recs[i])' \
        "$BATS_TEST_DIRNAME" "$T/parts" "$1"; }
    recsplit 0,1 > "$T/short"
    run attend -m "$T/m.st" "$T/short"
    [ "$status" -eq 1 ]
    [[ "$output" == *"the stream ends before part 2 of 3 of $SVS"* ]]
    recsplit 0,2,1 > "$T/swapped"
    run attend -m "$T/m.st" "$T/swapped"
    [ "$status" -eq 1 ]
    [[ "$output" == *"record 1: part 1 of 3 of $SVS expected"* ]]
    recsplit 1 > "$T/alone"
    attend -m "$T/m.st" "$T/alone" > "$T/out" 2> "$T/err" && false
    grep -q "record 0: part '1' of '3' does not begin a bag" "$T/err"
    assert_empty "$T/out"
}

@test "slide: 50,000 patches go through bagify | featurize | attend | classify | stitch, gradcam and stainnorm, under 500 MB each" {
    command -v /usr/bin/time > /dev/null || { echo "GNU time is missing: make deps" >&2; return 1; }
    level0
    bagify -l 1 "$BREAKHIS" | train -e 0 -q -o "$T/m.st" > /dev/null
    # a slide-like pyramidal TIFF of 6660 x 5934 pixels, the skin slide 3 x 2
    vips replicate "$T/full.ppm" "$T/big.v" 3 2
    vips tiffsave "$T/big.v" "$T/big.tif" --tile --pyramid --compression jpeg
    peak() { /usr/bin/time -f "%M" -o "$T/rss.$1" "$@"; }
    peak bagify -b 0 "$T/big.tif" > "$T/bags"
    peak featurize -m "$T/m.st" "$T/bags" > "$T/features"
    peak attend -m "$T/m.st" "$T/features" > "$T/attention"
    peak classify -m "$T/m.st" "$T/attention" > "$T/out"
    peak stitch -o "$T/heat.png" < "$T/out" 2> /dev/null
    peak gradcam -m "$T/m.st" -o "$T/cam.png" < "$T/bags"
    peak stainnorm -r "$DATA/torchstain-target.png" "$T/bags" > /dev/null
    run recinfo "$T/attention"
    [[ "$output" == *"tensor attention F32 [1, 50007]"* ]]
    [ "$(recinfo "$T/bags" | grep -c '^  part = ')" = 2 ]
    [ "$(file -b "$T/heat.png" | cut -d, -f1-2)" = "PNG image data, 4096 x 3650" ]
    [ "$(file -b "$T/cam.png" | cut -d, -f1-2)" = "PNG image data, 4096 x 3650" ]
    for stage in bagify featurize attend classify stitch gradcam stainnorm; do
        kb=$(cat "$T/rss.$stage")
        echo "# $stage: peak RSS $((kb / 1024)) MB" >&3
        [ "$kb" -lt $((500 * 1024)) ] || { echo "$stage: $kb KB"; return 1; }
    done
}

@test "slide: stitch draws over the slide itself at a downsample, in level-0 coordinates" {
    level0
    bagify -l 1 "$BREAKHIS" | train -e 0 -q -o "$T/m.st" > /dev/null
    bagify "$SVS" | featurize -m "$T/m.st" | attend -m "$T/m.st" > "$T/att"
    stitch --no-legend --downsample 4 -o "$T/heat.pam" < "$T/att" 2> /dev/null
    [[ "$(pamfile "$T/heat.pam")" == *"555 by 742"* ]]
    # every pixel of no patch is the slide's 4x4 mean, read by OpenSlide
    run bash -c "'$PY' '$BATS_TEST_DIRNAME/safetensors.py' drawn '$T/full.ppm' '$T/heat.pam' 4 < '$T/att'"
    echo "$output"
    [ "$status" -eq 0 ]
    # --width says the same; a slide of under 4096 a side is drawn whole
    stitch --no-legend --width 555 -o "$T/w.pam" < "$T/att" 2> /dev/null
    cmp "$T/w.pam" "$T/heat.pam"
    stitch -o "$T/whole.png" < "$T/att" 2> /dev/null
    [ "$(file -b "$T/whole.png" | cut -d, -f1-2)" = "PNG image data, 2220 x 2967" ]
    run stitch --downsample 2 --width 100 -o "$T/x.png" < "$T/att"
    [ "$status" -eq 2 ]
}

@test "slide: gradcam reads a slide's parts as one bag and draws its map over the slide at a downsample" {
    level0
    bagify "$SVS" > "$T/whole"
    bagify --part-size 1000 "$SVS" > "$T/parts"
    gradcam -m "$M" -c 0 -f record < "$T/whole" > "$T/whole.rec"
    gradcam -m "$M" -c 0 -f record < "$T/parts" > "$T/parts.rec"
    cmp "$T/whole.rec" "$T/parts.rec"
    # the map at downsample 3 holds each pixel's value at its centre: the
    # full map's at the middle of every 3 x 3 block, the edge's padding 0
    gradcam -m "$M" -c 0 -f record -D 3 < "$T/whole" > "$T/d3.rec"
    [ "$(meta cam_downsample < "$T/d3.rec")" = 3 ]
    cat > "$T/sampled.py" <<'EOF'
import sys
sys.path.insert(0, sys.argv[1])
import numpy as np
import safetensors
(_, full), = list(safetensors.read(open(sys.argv[2], "rb")))
(_, coarse), = list(safetensors.read(open(sys.argv[3], "rb")))
want = np.zeros((-(-full["cam"].shape[0] // 3), -(-full["cam"].shape[1] // 3)), np.float32)
middle = full["cam"][1::3, 1::3]
want[:middle.shape[0], :middle.shape[1]] = middle
assert coarse["cam"].shape == want.shape, coarse["cam"].shape
assert np.count_nonzero(want) > 10000, np.count_nonzero(want)
assert np.array_equal(coarse["cam"], want), np.abs(coarse["cam"] - want).max()
print("%d values equal, %d of them not 0" % (want.size, np.count_nonzero(want)))
EOF
    run "$PY" "$T/sampled.py" "$BATS_TEST_DIRNAME" "$T/whole.rec" "$T/d3.rec"
    echo "$output"
    [ "$status" -eq 0 ]
    # the picture: every pixel of no patch is the slide's 4x4 mean
    gradcam -m "$M" -c 0 --no-legend --downsample 4 -o "$T/cam.pam" < "$T/whole"
    [[ "$(pamfile "$T/cam.pam")" == *"555 by 742"* ]]
    run bash -c "'$PY' '$BATS_TEST_DIRNAME/safetensors.py' drawn '$T/full.ppm' '$T/cam.pam' 4 < '$T/whole'"
    echo "$output"
    [ "$status" -eq 0 ]
    gradcam -m "$M" -c 0 --no-legend --width 555 -o "$T/w.pam" < "$T/whole"
    cmp "$T/w.pam" "$T/cam.pam"
    run gradcam -m "$M" --downsample 2 --width 100 -o "$T/x.png" < "$T/whole"
    [ "$status" -eq 2 ]
}

@test "slide: gradcam at 10x lays each patch over the 56 level-0 pixels it was read from" {
    # a patch read at downsample 2, drawn at 2, is its own 28 x 28 pixels:
    # the map of the same bag at level 1's coordinates, drawn at 1
    bagify --magnification 10 "$SVS" > "$T/bag"
    gradcam -m "$M" -c 0 -f record -D 2 < "$T/bag" > "$T/d2.rec"
    cat > "$T/halve.py" <<'EOF'
import sys
sys.path.insert(0, sys.argv[1])
import safetensors
(meta, t), = list(safetensors.read(sys.stdin.buffer))
assert meta.pop("downsample") == "2" and (t["coords"] % 2 == 0).all()
for key in "image_height", "image_width":
    meta[key] = str(-(-int(meta[key]) // 2))
safetensors.write(sys.stdout.buffer, meta, {"patches": t["patches"], "coords": t["coords"] // 2})
EOF
    "$PY" "$T/halve.py" "$BATS_TEST_DIRNAME" < "$T/bag" |
        gradcam -m "$M" -c 0 -f record -D 1 > "$T/level1.rec"
    recinfo -t cam "$T/d2.rec" > "$T/a"
    recinfo -t cam "$T/level1.rec" > "$T/b"
    [ "$(wc -l < "$T/a")" -gt 1000 ]
    cmp "$T/a" "$T/b"
}

@test "slide: stitch -f geojson gives QuPath a square per patch with its attention" {
    bagify -l 1 "$BREAKHIS" | train -e 0 -q -o "$T/m.st" > /dev/null
    bagify --magnification 10 "$SVS" | featurize -m "$T/m.st" | attend -m "$T/m.st" |
        classify -m "$T/m.st" > "$T/rec"
    stitch -o "$T/all.geojson" < "$T/rec"
    n=$(recinfo -t coords "$T/rec" | wc -l)
    # the schema, checked on every feature: a closed square of 56 level-0
    # pixels (28 at downsample 2) at its coords, a detection, the attention
    # and the prediction as numbers
    jq -e --argjson n "$n" '
        .type == "FeatureCollection" and (.features | length) == $n and
        all(.features[];
            .type == "Feature" and .geometry.type == "Polygon" and
            (.geometry.coordinates[0] as $r | ($r | length) == 5 and $r[0] == $r[4] and
             $r[1][0] - $r[0][0] == 56 and $r[2][1] - $r[1][1] == 56 and $r[3][0] == $r[0][0]) and
            .properties.objectType == "detection" and
            (.properties.measurements | (.attention | type) == "number" and
             (."prob 0" + ."prob 1" - 1 | fabs) < 1e-6 and (.predicted | type) == "number"))
    ' "$T/all.geojson"
    # the squares stand where coords says (x, y), in order; the attention sums to 1
    jq -r '.features[].geometry.coordinates[0][0] | "\(.[1]) \(.[0])"' "$T/all.geojson" > "$T/corners"
    recinfo -t coords "$T/rec" | tr '\t' ' ' | diff - "$T/corners"
    jq -e '[.features[].properties.measurements.attention] | add | . > 0.999 and . < 1.001' \
        "$T/all.geojson"
    # --top 7: the seven of most attention; --above: those of a normalized value over it
    stitch -f geojson --top 7 < "$T/rec" > "$T/top.geojson"
    want=$(recinfo -t attention "$T/rec" | tr '\t' '\n' | sort -g | tail -n 7 | head -n 1)
    jq -e --argjson low "$want" '(.features | length) == 7 and
        all(.features[]; .properties.measurements.attention >= $low)' "$T/top.geojson"
    above=$(stitch -f geojson --above 0.5 < "$T/rec" | jq '.features | length')
    [ "$above" -gt 0 ]
    [ "$above" -lt "$n" ]
    run stitch -f geojson --cmap gray < "$T/rec"
    [ "$status" -eq 2 ]
    run stitch --above 0.5 -o "$T/x.png" < "$T/rec"
    [ "$status" -eq 2 ]
}

@test "slide: train learns from a slide's parts as from one bag, byte for byte" {
    bagify -l 1 --part-size 1024 "$SVS" > "$T/parts"
    bagify -l 1 "$SVS" > "$T/whole"
    train -e 1 --seed 3 -q -o "$T/a.st" "$T/parts" > /dev/null
    train -e 1 --seed 3 -q -o "$T/b.st" "$T/whole" > /dev/null
    cmp "$T/a.st" "$T/b.st"
    train -e 1 --seed 3 -q -o "$T/c.st" < "$T/parts" > /dev/null   # held from stdin
    cmp "$T/a.st" "$T/c.st"
    # a part lost: the set is refused before any step
    head -c $(( $(stat -c %s "$T/parts") / 2 )) "$T/parts" > "$T/cut"
    run train -e 1 -q -o "$T/d.st" "$T/cut"
    [ "$status" -eq 1 ]
    [ ! -e "$T/d.st" ]
}

@test "slide: a slide far wider than a band is read in blocks, in bounded memory, every pixel right" {
    # 2,400,000 x 64 pixels from 300 KB: a grid row of patches is 200 MB
    # of RGB, three bands' worth, and the tissue mask's strip two blocks
    "$PY" "$BATS_TEST_DIRNAME/hostile/slides.py" "$T/wide.tif" 2400000 64
    # and under 400 MB of address space: the mask's strip once asked 256
    # mask rows of the width (527 MB) when the mask has 19
    /usr/bin/time -f "%M" -o "$T/rss" bash -c 'ulimit -v 400000; bagify --part-size 20000 "$1"' \
        _ "$T/wide.tif" > "$T/bags"
    echo "# peak RSS $(($(cat "$T/rss") / 1024)) MB" >&3
    [ "$(cat "$T/rss")" -lt $((300 * 1024)) ]
    run "$PY" -c '
import sys; sys.path.insert(0, sys.argv[1]); import numpy as np, safetensors as st
n, at = 0, []
for meta, t in st.read(open(sys.argv[2], "rb")):
    assert (t["patches"] == np.array([200, 120, 160], np.uint8)).all()
    at += [tuple(c) for c in t["coords"]]; n += len(t["patches"])
assert at == sorted(at) and len(set(at)) == n == 2 * 85714, n   # row-major, each once
print(n, "patches, every pixel the tile'"'"'s colour")' "$BATS_TEST_DIRNAME" "$T/bags"
    echo "$output"
    [ "$status" -eq 0 ]
}
