#!/usr/bin/env bash
# bench/slide.sh: bagify and bagify | featurize on a whole-slide image of
# at least 40,000 × 40,000 pixels, made here from OpenSlide's test slide
# (tests/data/CMU-1-Small-Region.svs, its 2220 × 2967 pixels tiled 18 × 14
# by libvips into a pyramidal, JPEG-tiled TIFF: 39,960 × 41,538 pixels,
# 1.66 gigapixels).  It prints, for each stage, the patches per second
# and the peak resident memory (GNU time), on one core:
#
#   bagify              tissue mask, then the tissue's 28 × 28 patches
#   bagify | featurize  the same, and their features by the paper's
#                       network (an untrained model of the paper's size)
#
# The slide (about 1 GB) is made in a temporary folder and removed after;
# SLIDE=path keeps one made before.  The peers of this benchmark are the
# machine's own limits: the decoding of the slide's JPEG tiles alone
# (vips, reading every pixel of level 0) is printed beside it.
set -eu -o pipefail
cd "$(dirname "$0")/.."
make -s all
bin=$PWD/build/bin
one_core="taskset -c ${CORE:-1}"
command -v taskset >/dev/null || one_core=
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
slide=${SLIDE:-$tmp/slide.tif}
if [ ! -s "$slide" ]; then
    openslide-write-png tests/data/CMU-1-Small-Region.svs 0 0 0 2220 2967 "$tmp/tile.png"
    vips replicate "$tmp/tile.png" "$tmp/big.v" 18 14
    vips tiffsave "$tmp/big.v" "$slide" --tile --pyramid --compression jpeg --Q 90 \
        --tile-width 256 --tile-height 256
    rm -f "$tmp/big.v"
fi
"$bin/bagify" -l 1 tests/data/SOB_B_A-14-22549G-40-001.png |
    "$bin/train" -e 0 -q -o "$tmp/m.st" > /dev/null

# seconds and peak KB of a command, its output to the file $1
measure() {
    local out=$1
    shift
    /usr/bin/time -f "%e %M" -o "$tmp/time" $one_core "$@" > "$out"
    cat "$tmp/time"
}

read -r s_decode kb_decode < <(measure /dev/null vips avg "$slide")
read -r s_bagify kb_bagify < <(measure "$tmp/bags" "$bin/bagify" "$slide")
patches=$("$bin/recinfo" "$tmp/bags" | awk '/tensor coords/ { gsub(/[\[,]/, "", $4); n += $4 } END { print n }')
read -r width height < <("$bin/recinfo" "$tmp/bags" |
    awk '/image_width/ { w = $3 } /image_height/ { h = $3 } END { print w, h }')
read -r s_feat kb_feat < <(measure /dev/null "$bin/featurize" -m "$tmp/m.st" "$tmp/bags")
rm -f "$tmp/bags"
# the pipeline as a user runs it: both stages at once, the pair on one core
/usr/bin/time -f "%e" -o "$tmp/pipe" $one_core sh -c \
    "'$bin/bagify' '$slide' | '$bin/featurize' -m '$tmp/m.st' > /dev/null"
s_pipe=$(cat "$tmp/pipe")
echo "slide: ${width}x${height} pixels, $patches patches of 28x28 kept"
awk -v n="$patches" -v d="$s_decode" -v b="$s_bagify" -v f="$s_feat" -v p="$s_pipe" \
    -v kd="$kb_decode" -v kb="$kb_bagify" -v kf="$kb_feat" 'BEGIN {
    printf "decode (vips avg)    %7.1f s                        peak %5.0f MB\n", d, kd / 1024
    printf "bagify               %7.1f s  %8.0f patches/s   peak %5.0f MB\n", b, n / b, kb / 1024
    printf "featurize            %7.1f s  %8.0f patches/s   peak %5.0f MB\n", f, n / f, kf / 1024
    printf "bagify | featurize   %7.1f s  %8.0f patches/s (one core)\n", p, n / p
}'
