#!/bin/bash
# sums.sh: the sha256 of what every model family trains and computes, on
# each instruction-set path this CPU runs and on one and two threads, so
# that a change meant to keep behaviour can show it kept every byte:
#
#   bench/sums.sh > /tmp/before; (change, build); bench/sums.sh | diff /tmp/before -
#
# Run from the top of a built tree (make all tests). A few minutes on one core.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
export PATH=$top/build/bin:$top/build/tests:$PATH
BATS_TEST_DIRNAME=$top/tests
. "$top/tests/lib.bash"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"                 # outputs name their models: by relative paths
w=.

# the data: 16-patch bags of real crops, CNN image records, a ResNet18
crop_bags "$w" 0:0 120:0 240:100 360:200 > "$w/bags"
synthetic_images "$w"
# the images again from standard input: no source_dir (this run's folder)
for f in 0 1 2 n0 n1 n2; do
    case $f in n*) l=1 ;; *) l=0 ;; esac
    bagify -w -l "$l" - < "$w/$f.pam"
done > "$w/images"
for f in 0 1 2 n0 n1 n2; do           # two 224-pixel patches of each image
    case $f in n*) l=1 ;; *) l=0 ;; esac
    pamcut -width 448 -height 224 "$w/$f.pam" | bagify -p 224 -l "$l" -
done > "$w/bags224"
cnnmodel resnet18 > "$w/r18.st"

sum() { printf '%s\t%s\n' "$(sha256sum < "$1" | cut -c1-16)" "$2"; }

flags=$(grep -m1 '^flags' /proc/cpuinfo)
isas=${SUMS_ISAS:-}
[ -n "$isas" ] || isas=$(case $flags in *avx512f*) echo avx512;; esac
       case $flags in *avx2*fma*|*fma*avx2*) echo avx2;; esac
       echo portable)
for isa in $isas; do
    for j in 1 2; do
        export AMIL_ISA=$isa
        at="$isa j$j"
        o=$w/$isa.$j
        mkdir "$o"
        # attention-MIL: plain, gated with two branches, four classes, augmented
        train -q -j "$j" -o "$o/amil" -e 2 "$w/bags" > /dev/null
        train -q -j "$j" -o "$o/gated" -e 2 --arch gated --branches 2 "$w/bags" > /dev/null
        train -q -j "$j" -o "$o/four" -e 1 --classes 4 --hidden 64 --attention-dim 16 \
            "$w/bags" > /dev/null
        train -q -j "$j" -o "$o/aug" -e 1 --augment he,flip "$w/bags" > /dev/null
        for m in amil gated four aug; do sum "$o/$m" "$at train $m"; done
        sum "$o/amil.ckpt" "$at checkpoint amil"
        featurize -j "$j" -m "$o/gated" "$w/bags" | attend -m "$o/gated" \
            | classify -m "$o/gated" > "$o/gated.out"
        sum "$o/gated.out" "$at featurize|attend|classify gated"
        gradcam -m "$o/amil" -f record < "$w/bags" > "$o/amil.cam"
        sum "$o/amil.cam" "$at gradcam amil"
        # CLAM's heads on ResNet18 features
        featurize -j "$j" -m "$w/r18.st" "$w/bags224" > "$o/features"
        sum "$o/features" "$at featurize resnet18"
        train -q -j "$j" -o "$o/clam" -e 2 --arch clam "$o/features" > /dev/null
        train -q -j "$j" -o "$o/clamp" -e 2 --arch clam-plain --test "$o/features" \
            "$o/features" > "$o/clamp.log"
        cut -f1-3 "$o/clamp.log" > "$o/clamp.cut"
        for m in clam clamp clamp.cut; do sum "$o/$m" "$at train $m"; done
        attend -m "$o/clam" "$o/features" | classify -m "$o/clam" > "$o/clam.out"
        sum "$o/clam.out" "$at attend|classify clam"
        # the CNN baselines: the paper's net, a frozen ResNet18's last layer
        train -q -j "$j" -o "$o/net" -e 1 -b 4 --arch net "$w/images" > /dev/null
        train -q -j "$j" -o "$o/r18" -e 2 -b 4 --arch resnet18 -w "$w/r18.st" \
            "$w/images" > /dev/null
        for m in net r18; do sum "$o/$m" "$at train $m"; done
        classify -m "$o/net" "$w/images" > "$o/net.out"
        sum "$o/net.out" "$at classify net"
        for method in gradcam guided-gradcam; do
            gradcam -m "$o/r18" -M "$method" -f record "$w/0.pam" > "$o/cam"
            sum "$o/cam" "$at gradcam r18 $method"
        done
    done
done
