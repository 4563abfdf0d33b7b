#!/usr/bin/env bash
# bench/backbones.sh: the frozen backbones of slide studies through the
# program, featurize over a bag of 224x224 patches (the test slide's tissue),
# against torchvision's feature-extraction loop at batch 1, side by side in
# one go: each side ROUNDS times, alternating, each run a fresh process
# pinned with taskset; a figure is the minimum over the runs.
#
#   bench/backbones.sh [ROUNDS] [ARCH...]   (defaults: 3; resnet18 resnet50 vit_b_16)
#
# featurize runs over the bag and over the bag three times (the same
# records again), so that its time splits into a tile's (the slope: the
# forward, reading and writing records, whatever is made per record), as
# torchvision's loop is timed after its start-up and two tiles to warm up;
# and over a bag of one tile, whose time less a tile is its start-up
# (loading the model, folding and transforming its weights, making its
# buffers, once per process: the intercept of the two runs would be lost in
# their noise for a ViT).
#
# Columns: featurize's tile on one core, its start-up, its whole run over
# the bag a tile (start-up included, right after PyTorch's process: see
# below); its tile on two cores and the
# speedup; the same model's forward pass in one process (bench/cnn.c, as
# many tiles at once as featurize runs) and featurize's tile's excess over
# it; torchvision's tile and the ratio to featurize's tile; the model's
# GFLOP/s through featurize and their share of one core's FMA peak
# (bench/peak.c), and for a transformer its linear layers' own
# (bench/cnn.c's per-layer times).
set -eu
cd "$(dirname "$0")/.."
rounds=${1:-3}
shift $(($# < 1 ? $# : 1))
archs=${*:-resnet18 resnet50 vit_b_16}
python=/usr/bin/python3
"$python" -c 'import torchvision' 2>/dev/null ||
    { echo "bench/backbones.sh: python3-torchvision is missing"; exit 1; }
make -s all bench
export PATH=$PWD/build/bin:$PATH
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
bagify -p 224 tests/data/CMU-1-Small-Region.svs > "$work/tiles"
cat "$work/tiles" "$work/tiles" "$work/tiles" > "$work/tiles3"
pngtopam tests/data/SOB_B_A-14-22549G-40-001.png | pamcut 0 0 224 224 | pnmtopng > "$work/one.png"
bagify -p 224 -b 0 "$work/one.png" > "$work/one"
tiles=$(recinfo "$work/tiles" | sed -n 's/.*tensor patches U8 \[\([0-9]*\),.*/\1/p' |
        awk '{ n += $1 } END { print n }')
min() { awk -v a="$1" -v b="$2" 'BEGIN { print (b == "" || a < b) ? a : b }'; }
seconds() { local s=$(date +%s%N); "$@" > /dev/null; echo $(( ($(date +%s%N) - s) / 1000 )); }
peak=$(taskset -c 0 build/bench/peak avx512 2>/dev/null || taskset -c 0 build/bench/peak avx2)
echo "$tiles tiles; FMA peak, one core: $peak GFLOP/s (figures: the minimum of $rounds runs)"
printf '%-10s %7s %7s %7s %7s %6s %7s %6s %7s %6s %7s %5s %7s %5s\n' arch tile_ms \
    start whole j2_ms j2_x fwd_ms excess torch ratio GFLOP/s peak lin_GF peak
for arch in $archs; do
    "$python" - "$arch" "$work/$arch.st" <<'PY'
import sys, torch, torchvision
sys.path.insert(0, "tests")
import safetensors
torch.manual_seed(1)
m = getattr(torchvision.models, sys.argv[1])().eval()
safetensors.write(open(sys.argv[2], "wb"), {"normalization": "imagenet"},
                  {k: v.numpy() for k, v in m.state_dict().items()})
PY
    sync
    # per round: the bag once and three times, the tile their slope, each
    # after a run of its own first: on this machine (a virtual one) memory
    # that another process (PyTorch's) has just freed is slow to fault in
    # again, which the first run after it pays (ResNet18: 1.3 s for the bag
    # against 1.0); whole is that first run's
    f1= s1= w1= f2= fw= tt= gf= lg= lm=
    for ((r = 0; r < rounds; r++)); do
        first=$(seconds taskset -c 0 featurize -m "$work/$arch.st" "$work/tiles")
        w1=$(min "$(awk -v a="$first" -v n="$tiles" 'BEGIN { print a / n / 1e3 }')" "$w1")
        one=$(seconds taskset -c 0 featurize -m "$work/$arch.st" "$work/tiles")
        three=$(seconds taskset -c 0 featurize -m "$work/$arch.st" "$work/tiles3")
        f1=$(min "$(awk -v a="$one" -v b="$three" -v n="$tiles" 'BEGIN { print (b - a) / (2 * n) / 1e3 }')" "$f1")
        s1=$(min "$(seconds taskset -c 0 featurize -m "$work/$arch.st" "$work/one")" "$s1")
        one=$(seconds taskset -c 0-1 featurize -j 2 -m "$work/$arch.st" "$work/tiles")
        three=$(seconds taskset -c 0-1 featurize -j 2 -m "$work/$arch.st" "$work/tiles3")
        f2=$(min "$(awk -v a="$one" -v b="$three" -v n="$tiles" 'BEGIN { print (b - a) / (2 * n) / 1e3 }')" "$f2")
        read -r a _ gf lg l < <(taskset -c 0 build/bench/cnn "$work/$arch.st" 1 1)
        fw=$(min "$a" "$fw") lm=$(min "$l" "$lm")
        tt=$(min "$(taskset -c 0 "$python" bench/torch_featurize.py "$arch" "$tiles" 1)" "$tt")
    done
    s1=$(awk -v s="$s1" -v f="$f1" 'BEGIN { print s / 1e3 - f }')   # less its tile
    awk -v a="$arch" -v f1="$f1" -v s1="$s1" -v w1="$w1" -v f2="$f2" -v fw="$fw" -v tt="$tt" \
        -v gf="$gf" -v lg="$lg" -v lm="$lm" -v p="$peak" 'BEGIN {
        g = gf / f1 * 1e3; lgs = lm > 0 ? lg / lm * 1e3 : 0
        printf "%-10s %7.1f %7.0f %7.1f %7.1f %5.2fx %7.1f %5.0f%% %7.1f %5.2fx %7.1f %4.0f%% %7.1f %4.0f%%\n",
            a, f1, s1, w1, f2, f1 / f2, fw, 100 * (f1 / fw - 1), tt, tt / f1, g, 100 * g / p,
            lgs, 100 * lgs / p }'
done
