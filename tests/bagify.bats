#!/usr/bin/env bats
# bagify on the real BreakHis image and on images made from it with netpbm:
# the paper's geometry, every option, every input format, every bad input.

load lib

setup() {
    T=$BATS_TEST_TMPDIR
}

# meta KEY: the value of metadata KEY in the record(s) on stdin.
meta() { recinfo | awk -v k="$1" '$1 == k && $2 == "=" { print $3 }'; }

@test "bagify: usage" {
    run bagify -h
    [ "$status" -eq 0 ]
    [[ "${lines[0]}" == "usage: bagify "* ]]
    run bagify --no-such-option
    [ "$status" -eq 2 ]
    [[ "$output" == *"usage: bagify "* ]]
    run bagify -l 1 -L dir x.png
    [ "$status" -eq 2 ]
    [[ "$output" == *"give one of -l and -L"* ]]
    for bad in "-p 0" "-s -3" "-c diagonal" "-b 1.5" "-L folder" "-p 2x"; do
        run bagify $bad "$BREAKHIS"
        [ "$status" -eq 2 ] || { echo "bagify $bad: $status"; return 1; }
    done
}

@test "bagify: the paper's geometry on the real 700x460 BreakHis image" {
    bagify "$BREAKHIS" > "$T/bag"
    run recinfo "$T/bag"
    [[ "$output" == *"tensor patches U8 [400, 28, 28, 3]"* ]]
    [[ "$output" == *"tensor coords I32 [400, 2]"* ]]
    [ "$(meta crop_y < "$T/bag")" = 6 ]
    [ "$(meta crop_x < "$T/bag")" = 0 ]
    [ "$(meta crop_height < "$T/bag")" = 448 ]
    [ "$(meta crop_width < "$T/bag")" = 700 ]
    run recinfo -t coords "$T/bag"
    # row-major: 16 rows of 25, the first at y=6, x=0
    [ "${lines[0]}" = "6	0" ]
    [ "${lines[1]}" = "6	28" ]
    [ "${lines[24]}" = "6	672" ]
    [ "${lines[25]}" = "34	0" ]
    [ "${lines[399]}" = "426	672" ]
    [ "${#lines[@]}" -eq 400 ]
}

@test "bagify: each patch is the image's pixels at its coords (NumPy)" {
    py=$(numpy_python) || skip "python3-numpy is missing"
    pngtopam "$BREAKHIS" > "$T/image.pam"
    run bash -c "bagify '$BREAKHIS' | '$py' '$BATS_TEST_DIRNAME/safetensors.py' bag '$T/image.pam'"
    [ "$status" -eq 0 ]
    [ "$output" = "400 patches ok" ]
    run bash -c "bagify -p 20 -s 13 -c pad '$BREAKHIS' | '$py' '$BATS_TEST_DIRNAME/safetensors.py' bag '$T/image.pam'"
    [ "$status" -eq 0 ]
    [ "$output" = "1890 patches ok" ]
}

@test "bagify: centre crop offsets round as torchvision does (700x456 starts at y=4)" {
    # spare rows 8, 13, 15, 25, 27: halves go to the even neighbour
    for h in 456:4 461:6 463:8 473:12 475:14; do
        if [ "${h%:*}" -le 460 ]; then
            pngtopam "$BREAKHIS" | pamcut -height "${h%:*}" > "$T/cut.pam"
        else
            pngtopam "$BREAKHIS" | pnmpad -bottom $(( ${h%:*} - 460 )) > "$T/cut.pam"
        fi
        got=$(bagify "$T/cut.pam" | meta crop_y)
        [ "$got" = "${h#*:}" ] || { echo "height ${h%:*}: crop_y $got, want ${h#*:}"; return 1; }
    done
}

@test "bagify: patch size, stride and crop policies" {
    [ "$(bagify -p 56 "$BREAKHIS" | recinfo -t coords | wc -l)" -eq 96 ]        # 8 x 12
    [ "$(bagify -s 14 "$BREAKHIS" | recinfo -t coords | wc -l)" -eq 1519 ]      # 31 x 49
    bagify -c none "$BREAKHIS" > "$T/none"
    [ "$(recinfo -t coords "$T/none" | wc -l)" -eq 400 ]
    [ "$(meta crop_y < "$T/none")" = 0 ]
    bagify -c pad "$BREAKHIS" > "$T/pad"
    [ "$(recinfo -t coords "$T/pad" | wc -l)" -eq 425 ]                         # 17 x 25
    [ "$(meta crop_height < "$T/pad")" = 476 ]
    # the last row of patches reaches 16 rows past the image: white padding
    [ "$(recinfo -t patches "$T/pad" | tail -n 1 | tr '\t' '\n' | sort -u)" = 255 ]
    [ "$(bagify -c pad --pad-value 0 "$BREAKHIS" | recinfo -t patches | tail -n 1 | tr '\t' '\n' | sort -u)" = 0 ]
    # a stride over the patch size: no patch starts past the image
    pngtopam "$BREAKHIS" | pamcut -width 10 -height 2 > "$T/strip.pam"
    [ "$(bagify -c pad -p 2 -s 5 "$T/strip.pam" | recinfo -t coords | xargs)" = "0 0 0 5" ]
}

@test "bagify: gray patches" {
    run bash -c "bagify -g '$BREAKHIS' | recinfo"
    [[ "$output" == *"tensor patches U8 [400, 28, 28, 1]"* ]]
    [[ "$output" == *"channels = 1"* ]]
    # PIL's L: (19595 R + 38470 G + 7471 B + 32768) >> 16, from the first pixel
    rgb=($(bagify "$BREAKHIS" | recinfo -t patches | head -n 1 | cut -f 1-3))
    want=$(( (19595 * rgb[0] + 38470 * rgb[1] + 7471 * rgb[2] + 32768) >> 16 ))
    [ "$(bagify -g "$BREAKHIS" | recinfo -t patches | head -n 1)" = "$want" ]
}

@test "bagify: every input format gives the same bag" {
    pngtopam "$BREAKHIS" > "$T/i.pam"
    pamtopnm < "$T/i.pam" > "$T/i.ppm"
    ppmtobmp < "$T/i.ppm" > "$T/i.bmp" 2>/dev/null
    pamtotga < "$T/i.pam" > "$T/i.tga" 2>/dev/null
    pnmtopng -interlace < "$T/i.ppm" > "$T/interlaced.png"
    pamdepth 65535 < "$T/i.pam" | pnmtopng > "$T/deep.png" 2>/dev/null
    bagify - < "$BREAKHIS" > "$T/want"
    for f in i.pam i.ppm i.bmp i.tga interlaced.png deep.png; do
        bagify - < "$T/$f" | cmp - "$T/want" || { echo "$f differs"; return 1; }
    done
    # lossy or quantized formats: decoded, the right geometry
    pnmtojpeg < "$T/i.ppm" > "$T/i.jpg"
    pnmquant 256 < "$T/i.ppm" 2>/dev/null | pamtogif > "$T/i.gif" 2>/dev/null
    for f in i.jpg i.gif; do
        [ "$(bagify "$T/$f" | recinfo -t coords | wc -l)" -eq 400 ] || { echo "$f"; return 1; }
    done
}

@test "bagify: PNG colour types agree with netpbm's libpng decoding" {
    pngtopam "$BREAKHIS" | pamcut -width 300 -height 200 > "$T/small.pam"
    ppmtopgm < "$T/small.pam" | pnmtopng > "$T/gray.png"
    pnmquant 200 < "$T/small.pam" 2>/dev/null | pnmtopng > "$T/palette.png"
    ppmtopgm < "$T/small.pam" > "$T/alpha.pgm"
    pamtopnm < "$T/small.pam" | pnmtopng -alpha="$T/alpha.pgm" > "$T/rgba.png"
    ppmtopgm < "$T/small.pam" | pnmtopng -alpha="$T/alpha.pgm" > "$T/graya.png"
    for f in gray palette rgba graya; do
        bagify - < "$T/$f.png" > "$T/ours"
        pngtopam "$T/$f.png" | bagify - > "$T/theirs"
        cmp "$T/ours" "$T/theirs" || { echo "$f.png differs"; return 1; }
    done
}

@test "bagify: labels" {
    [ "$(bagify -l 3 "$BREAKHIS" | meta label)" = 3 ]
    [ "$(bagify -L breakhis "$BREAKHIS" | meta label)" = 0 ]
    cp "$BREAKHIS" "$T/SOB_M_DC-14-2523-40-010.png"
    [ "$(bagify -L breakhis "$T/SOB_M_DC-14-2523-40-010.png" | meta label)" = 1 ]
    mkdir -p "$T/40X/train/1"
    cp "$BREAKHIS" "$T/40X/train/1/x.png"
    [ "$(bagify -L dir "$T/40X/train/1/x.png" | meta label)" = 1 ]
    [ -z "$(bagify "$BREAKHIS" | meta label)" ]
    mkdir "$T/photos"
    cp "$BREAKHIS" "$T/photos/photo.png"
    run bash -c "bagify -L breakhis '$T/photos/photo.png' > '$T/out'"
    [ "$status" -eq 1 ]
    [[ "$output" == "bagify: $T/photos/photo.png: not a BreakHis file name"* ]]
    assert_empty "$T/out"
    run bash -c "bagify -L dir '$T/photos/photo.png' > '$T/out'"
    [ "$status" -eq 1 ]
    [ "$output" = "bagify: $T/photos/photo.png: folder 'photos' is not a class number" ]
    assert_empty "$T/out"
}

@test "bagify: BreakHis fields from the file name" {
    bagify "$BREAKHIS" > "$T/bag"
    [ "$(meta tumor_class < "$T/bag")" = benign ]
    [ "$(meta tumor_type < "$T/bag")" = adenosis ]
    [ "$(meta patient < "$T/bag")" = 14-22549G ]
    [ "$(meta magnification < "$T/bag")" = 40 ]
    [ "$(meta procedure < "$T/bag")" = SOB ]
    [ "$(meta year < "$T/bag")" = 14 ]
    [ "$(meta slide < "$T/bag")" = 22549G ]
    [ "$(meta sequence < "$T/bag")" = 001 ]
    [ "$(meta source < "$T/bag")" = "$BREAKHIS" ]
    [ "$(meta image_width < "$T/bag")" = 700 ]
    [ "$(meta image_height < "$T/bag")" = 460 ]
    [ "$(bagify "$IHC" | meta patient)" = "" ]
}

@test "bagify: the background filter drops glass, keeps tissue" {
    bagify -b 0.5 "$BREAKHIS" > "$T/bag"
    kept=$(recinfo -t coords "$T/bag" | wc -l)
    dropped=$(meta patches_dropped < "$T/bag")
    [ $((kept + dropped)) -eq 400 ]
    [ "$dropped" -gt 10 ]
    [ "$kept" -gt 200 ]
    # a stricter threshold never keeps more
    [ "$(bagify -b 0.9 "$BREAKHIS" | recinfo -t coords | wc -l)" -le "$kept" ]
    # the kept patches are more coloured than the dropped ones: a white
    # 28x28 square pasted at the top left is dropped
    pngtopam "$BREAKHIS" > "$T/i.pam"
    ppmmake white 28 28 | pnmpaste - 0 6 "$T/i.pam" > "$T/white.ppm"
    [ "$(bagify -b 0.5 "$T/white.ppm" | recinfo -t coords | head -n 1)" != "6	0" ]
    # an image without tissue at all is an error
    ppmmake white 100 100 > "$T/blank.ppm"
    run bash -c "bagify -b 0.5 '$T/blank.ppm' > '$T/out'"
    [ "$status" -eq 1 ]
    [[ "$output" == *"no patch has 0.5 tissue or more"* ]]
    assert_empty "$T/out"
}

# A patch is kept when its tissue pixels reach fraction x P^2, exactly
# (bagify(1), Background): three 4x4 patches of white glass with 8, 7 and
# 9 red pixels (saturation 255, tissue under any threshold) at -b 0.5
# (8 pixels) and -b 0.5625 (9 pixels), fractions a double holds exactly.
@test "bagify: a patch with exactly the -b fraction of tissue is kept" {
    # 12x4 PPM: row 0 all red; row 1 red but at x 7; row 2 red at x 8
    awk 'BEGIN { print "P3 12 4 255"
                 for (y = 0; y < 4; y++)
                     for (x = 0; x < 12; x++) {
                         red = y == 0 || y == 1 && x != 7 || y == 2 && x == 8
                         print red ? "255 0 0" : "255 255 255"
                     } }' > "$T/three.ppm"
    bagify -p 4 -b 0.5 "$T/three.ppm" > "$T/bag"
    # the patch of 8 at x 0 and that of 9 at x 8 kept, that of 7 dropped
    [ "$(recinfo -t coords "$T/bag" | xargs)" = "0 0 0 8" ]
    [ "$(meta patches_dropped < "$T/bag")" = 1 ]
    [ "$(bagify -p 4 -b 0.5625 "$T/three.ppm" | recinfo -t coords | xargs)" = "0 8" ]
}

# The saturation of bagify(1), round(255 (max - min) / max) with halves up,
# compared with --tissue-saturation T: tissue above T.  1x1 patches of
# (255,128,128), saturation 127 exactly; (2,1,1), 127.5, rounded to 128;
# and (255,0,0), 255, kept at every T so that the bag is never empty.
@test "bagify: --tissue-saturation at the rounded saturation of crafted pixels" {
    printf 'P3 3 1 255\n255 128 128  2 1 1  255 0 0\n' > "$T/three.ppm"
    for want in "126:0 0 0 1 0 2" "127:0 1 0 2" "128:0 2"; do   # T:coords kept, y x
        got=$(bagify -p 1 -b 1 --tissue-saturation "${want%%:*}" "$T/three.ppm" |
              recinfo -t coords | xargs)
        [ "$got" = "${want#*:}" ] || { echo "T ${want%%:*}: kept $got, want ${want#*:}"; return 1; }
    done
}

# The threshold is settable (pale stains), recorded, and can be looked at.
@test "bagify: the tissue threshold and a picture of the mask" {
    [ "$(bagify -b 0.5 "$BREAKHIS" | meta tissue_saturation)" -le 26 ]
    low=$(bagify -b 0.5 --tissue-saturation 5 "$BREAKHIS" | recinfo -t coords | wc -l)
    mid=$(bagify -b 0.5 --tissue-saturation 40 "$BREAKHIS" | recinfo -t coords | wc -l)
    [ "$(bagify -b 0.5 --tissue-saturation 40 "$BREAKHIS" | meta tissue_saturation)" -eq 40 ]
    [ "$low" -gt "$mid" ] || { echo "$low $mid"; return 1; }
    run bash -c "bagify -b 0.5 --tissue-saturation 254 '$BREAKHIS' > '$T/out'"
    [ "$status" -eq 1 ]
    [[ "$output" == *"no patch has 0.5 tissue or more"* ]]
    # the mask: the image's size, tissue white; a kept patch is mostly white
    bagify -b 0.5 --mask "$T/mask.png" "$BREAKHIS" > "$T/bag"
    pngtopam "$T/mask.png" > "$T/mask.pgm"
    [[ "$(pamfile "$T/mask.pgm")" == *"PGM raw, 700 by 460"* ]]
    read -r y x < <(recinfo -t coords "$T/bag" | head -n 1)
    white=$(pamcut -left "$x" -top "$y" -width 28 -height 28 "$T/mask.pgm" | pamsumm -sum -brief)
    [ "${white%.*}" -ge $((255 * 28 * 28 / 2)) ]
    # both only with the filter on: -b on an image (slides have it on by
    # default, so without -b it is the image that is wrong, exit 1); the
    # mask of one image
    for bad in "--mask $T/m.png" "--tissue-saturation 10"; do
        run bagify $bad "$BREAKHIS"
        [ "$status" -eq 1 ] || { echo "$bad: $status"; return 1; }
        [[ "$output" == *"are of the background filter: give -b"* ]]
    done
    for bad in "-b 0 --mask $T/m.png" "-b 0.5 --mask $T/m.png $BREAKHIS"; do
        run bagify $bad "$BREAKHIS"
        [ "$status" -eq 2 ] || { echo "$bad: $status"; return 1; }
    done
}

@test "bagify: bad input names the file, exits 1, writes nothing for it" {
    echo "hello" > "$T/text.png"
    head -c 100000 "$BREAKHIS" > "$T/truncated.png"
    : > "$T/empty.png"
    printf 'P5\n100000 100000\n255\n' > "$T/huge.pgm"
    pngtopam "$BREAKHIS" | pamcut -width 20 -height 20 > "$T/tiny.pam"
    printf 'P6\n40 40\n255\n' > "$T/short.ppm"
    for case in "missing.png:No such file or directory" "text.png:not an image" \
                "truncated.png:truncated PNG" "empty.png:empty file" \
                "huge.pgm:over the limit of 268435456 pixels" \
                "tiny.pam:smaller than one 28×28 patch" "short.ppm:truncated netpbm image"; do
        f=$T/${case%%:*}
        run bash -c "bagify '$f' > '$T/out'"
        [ "$status" -eq 1 ] || { echo "$case: status $status"; return 1; }
        [[ "$output" == "bagify: $f: "*"${case#*:}"* ]] || { echo "$case: $output"; return 1; }
        assert_empty "$T/out"
    done
    run bash -c "bagify --max-pixels 1000 '$BREAKHIS' > /dev/null"
    [ "$status" -eq 1 ]
    [[ "$output" == *"over the limit of 1000 pixels"* ]]
}

@test "bagify: a PNG cut anywhere is refused cleanly, never a crash" {
    size=$(stat -c %s "$BREAKHIS")
    for cut in 0 7 8 20 33 40 100 1000 50000 250000 $((size - 13)) $((size - 1)); do
        head -c "$cut" "$BREAKHIS" > "$T/cut.png"
        run bash -c "bagify '$T/cut.png' > '$T/out'"
        [ "$status" -eq 1 ] || { echo "cut at $cut: status $status: $output"; return 1; }
        assert_empty "$T/out"
    done
    # flipped bytes inside the compressed data
    cp "$BREAKHIS" "$T/flip.png"
    printf '\377\377\377\377\377\377\377\377' | dd of="$T/flip.png" bs=1 seek=200000 conv=notrunc 2>/dev/null
    run bash -c "bagify '$T/flip.png' > /dev/null"
    [ "$status" -eq 0 ] || [ "$status" -eq 1 ]
}

@test "bagify: stops at the first bad file; with -k goes on and exits 1" {
    echo "hello" > "$T/bad.png"
    run bash -c "bagify '$BREAKHIS' '$T/bad.png' '$IHC' > '$T/out'"
    [ "$status" -eq 1 ]
    [ "$(recinfo -j "$T/out" | wc -l)" -eq 1 ]
    run bash -c "bagify -k '$BREAKHIS' '$T/bad.png' '$IHC' > '$T/out'"
    [ "$status" -eq 1 ]
    [[ "$output" == "bagify: $T/bad.png: not an image"* ]]
    [ "$(recinfo -j "$T/out" | wc -l)" -eq 2 ]
    [ "$(meta source < "$T/out" | tail -n 1)" = "$IHC" ]
}

@test "bagify: standard input, and a stream of many images" {
    run bash -c "bagify < '$BREAKHIS' | recinfo"
    [ "$status" -eq 0 ]
    [[ "$output" == *"source = -"* ]]
    [ "$(bagify "$BREAKHIS" "$IHC" "$BREAKHIS" | recinfo -j | wc -l)" -eq 3 ]
    # the 512x512 IHC image: 18 x 18 patches from (4, 4)
    [ "$(bagify "$IHC" | recinfo -t coords | head -n 1)" = "4	4" ]
    [ "$(bagify "$IHC" | recinfo -t coords | wc -l)" -eq 324 ]
}

# A stream holds several images by design (netpbm's, cat of PNGs): each
# becomes a record; from the second on the record says which (image_index),
# and stitch draws on that one.  Bytes after an image that are not one are
# an error naming the image, after the records of those before it.
@test "bagify: every image of a stream is a record" {
    pngtopam "$BREAKHIS" > "$T/a.pam"
    pngtopam "$IHC" > "$T/b.pam"
    cat "$T/a.pam" "$T/b.pam" "$T/a.pam" > "$T/three.pam"
    bagify "$T/three.pam" > "$T/bags"
    [ "$(recinfo -j "$T/bags" | wc -l)" -eq 3 ]
    cat "$T/three.pam" | bagify - > "$T/piped"
    [ "$(recinfo -j "$T/piped" | wc -l)" -eq 3 ]
    run recinfo "$T/bags"
    [[ "$output" != *"record 0"*"image_index"*"record 1"* ]]
    [[ "$output" == *"image_index = 1"*"image_index = 2"* ]]
    # the second is the IHC image: 512x512, 324 patches
    bagify "$IHC" | recinfo -t coords > "$T/ihc.coords"
    [ "$(recinfo -t coords "$T/bags" | sed -n '401,724p' | cmp - "$T/ihc.coords" && echo same)" = same ]
    # PNGs one after another, likewise; stitch draws on the second image
    cat "$BREAKHIS" "$IHC" > "$T/two.png"
    [ "$(bagify "$T/two.png" | recinfo -j | wc -l)" -eq 2 ]
    bagify "$T/two.png" | recpass -a darkness | stitch -d "$T/pictures"
    [[ "$(pngtopam "$T/pictures/two.png" | pamfile)" == *"700 by 460"* ]]
    [[ "$(pngtopam "$T/pictures/two-1.png" | pamfile)" == *"512 by 512"* ]]
    # junk after an image: the first is written, then an error naming image 1
    { cat "$BREAKHIS"; printf 'not an image at all'; } > "$T/junk.png"
    run bash -c 'bagify "$1" > "$2"' _ "$T/junk.png" "$T/out"
    [ "$status" -eq 1 ]
    [[ "$output" == "bagify: $T/junk.png: image 1 (at byte "*"): not an image"* ]] || { echo "$output"; return 1; }
    [ "$(recinfo -j "$T/out" | wc -l)" -eq 1 ]
    # padding after an image is not an image
    { cat "$BREAKHIS"; printf '\n\n'; } > "$T/padded.png"
    [ "$(bagify "$T/padded.png" | recinfo -j | wc -l)" -eq 1 ]
}

@test "bagify -w: the whole image, every pixel as netpbm decodes it" {
    bagify -w -L breakhis "$BREAKHIS" > "$T/whole"
    run recinfo "$T/whole"
    [[ "$output" == *"tensor image U8 [460, 700, 3]"* && "$output" == *"kind = image"* ]]
    [[ "$output" != *"tensor patches"* && "$output" != *"patch = "* && "$output" != *"crop"* ]]
    [[ "$output" == *"label = 0"* && "$output" == *"patient = 14-22549G"* ]]
    # the tensor's bytes are the image's raster, row by row
    pngtopam "$BREAKHIS" | tail -c $((460 * 700 * 3)) > "$T/raster"
    tail -c $((460 * 700 * 3)) "$T/whole" | cmp - "$T/raster"
    bagify -w -g "$BREAKHIS" | recinfo | grep -q 'tensor image U8 \[460, 700, 1\]'
    for bad in "-p 32" "-s 14" "-c pad" "--pad-value 0" "-b 0.5"; do
        run bagify -w $bad "$BREAKHIS"
        [ "$status" -eq 2 ] || { echo "$bad: $status"; return 1; }
        [[ "$output" == "bagify: --whole keeps the image whole: no patches to size, crop or filter"* ]]
    done
}
