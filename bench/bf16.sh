#!/usr/bin/env bash
# bench/bf16.sh: what featurize --precision bf16 costs in accuracy on real
# patches, and what it gains in time, for each backbone named.
#
#   bench/bf16.sh [ROUNDS] [ARCH...]   (defaults: 3; resnet50 vit_b_16)
#
# The backbone has torchvision's random initialization (seed 1), its batch
# norms' statistics taken from the patches: no pretrained weights are at
# hand offline.  The patches are real: the test
# slide's tissue at 224 pixels (49 patches, label 1) and the committed
# H&E, BreakHis and IHC images cut at 224 with stride 112 (labels 0, 0, 0
# and 1), six bags.  For each precision: featurize, then a CLAM head
# trained on those features the same way (train --arch clam, seed 1, 10
# epochs), attend and classify.  Printed per backbone:
#   - each patch's features against float32's: the least cosine
#     similarity, and the largest difference relative to the largest
#     feature; and the least cosine between two patches' float32 features
#     (how alike random weights make them: the margin bf16 works within);
#     the same cosine with torchvision's initial batch-norm statistics;
#     amil's f32 and bf16 and PyTorch's own bf16 (torch.autocast) against
#     PyTorch's float64;
#   - the heads' attention: the largest difference, absolute and relative
#     to the largest weight, and in how many bags the top patch is the same;
#   - the heads' probabilities: the largest difference;
#   - featurize's time a tile on one core in each precision (the slope
#     between a bag and that bag three times, the minimum of ROUNDS
#     alternating runs, as bench/backbones.sh takes it) and the speedup;
#     the model's GFLOP/s at each (its multiply-adds × 2 however they are
#     done: Winograd's count as the direct sum's) and their share of one
#     core's float32 FMA peak (bench/peak.c; vdpbf16ps does twice an FMA's
#     work, so bfloat16's ceiling is twice that peak).
set -eu
cd "$(dirname "$0")/.."
rounds=${1:-3}
shift $(($# < 1 ? $# : 1))
archs=${*:-resnet50 vit_b_16}
python=/usr/bin/python3
"$python" -c 'import torchvision' 2>/dev/null ||
    { echo "bench/bf16.sh: python3-torchvision is missing"; exit 1; }
grep -qw avx512_bf16 /proc/cpuinfo || { echo "bench/bf16.sh: this CPU has no AVX512_BF16"; exit 1; }
make -s all bench
export PATH=$PWD/build/bin:$PATH
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
data=tests/data
bagify -p 224 -l 1 "$data/CMU-1-Small-Region.svs" > "$work/bags"
for pair in SOB_B_A-14-22549G-40-001.png:0 torchstain-source.png:0 torchstain-target.png:0 \
            ihc.png:1; do
    bagify -p 224 -s 112 -l "${pair#*:}" "$data/${pair%:*}" >> "$work/bags"
done
bagify -p 224 "$data/CMU-1-Small-Region.svs" > "$work/tiles"
cat "$work/tiles" "$work/tiles" "$work/tiles" > "$work/tiles3"
min() { awk -v a="$1" -v b="$2" 'BEGIN { print (b == "" || a < b) ? a : b }'; }
seconds() { local s=$(date +%s%N); "$@" > /dev/null; echo $(( ($(date +%s%N) - s) / 1000 )); }
tiles=49
peak=$(taskset -c 0 build/bench/peak avx512)
echo "FMA peak, one core: $peak GFLOP/s (figures: the minimum of $rounds runs)"
for arch in $archs; do
    # batch norms' statistics those of the bags' patches (one pass in
    # training mode, cumulative averages), as a trained network's match
    # its activations: with the initial ones (0 and 1), a random ResNet50's
    # features grow to 150 and a head trained on them saturates.  The
    # initial ones are kept too ($arch.init.st).  PyTorch's own features
    # of the patches, in float64 and in bfloat16 (torch.autocast: its
    # convolutions and linear layers in bfloat16 on oneDNN), for reference.
    "$python" - "$arch" "$work" <<'PY'
import sys, numpy as np, torch, torchvision
sys.path.insert(0, "tests")
import safetensors
arch, work = sys.argv[1], sys.argv[2]
torch.manual_seed(1)
m = getattr(torchvision.models, arch)()
def save(name):
    safetensors.write(open(f"{work}/{name}", "wb"), {"normalization": "imagenet"},
                      {k: v.numpy() for k, v in m.state_dict().items()})
x = np.concatenate([t["patches"] for _, t in safetensors.read(open(f"{work}/bags", "rb"))])
x = torch.from_numpy(x / 255.0).permute(0, 3, 1, 2)
x = (x - torch.tensor([0.485, 0.456, 0.406], dtype=torch.float64)[:, None, None]) / \
    torch.tensor([0.229, 0.224, 0.225], dtype=torch.float64)[:, None, None]
norms = [b for b in m.modules() if isinstance(b, torch.nn.BatchNorm2d)]
if norms:
    save(f"{arch}.init.st")
    for b in norms:
        b.momentum = None
    with torch.no_grad():
        m.train()(x.float())
m.eval()
save(f"{arch}.st")
if hasattr(m, "fc"):
    m.fc = torch.nn.Identity()
else:
    m.heads = torch.nn.Identity()
with torch.no_grad():
    np.save(f"{work}/torch_f64.npy", m.double()(x).numpy())
    try:   # Debian's PyTorch 1.13 cannot run a ViT's attention under autocast
        with torch.autocast("cpu", dtype=torch.bfloat16):
            np.save(f"{work}/torch_bf16.npy", m.float()(x.float()).float().numpy())
    except RuntimeError:
        np.save(f"{work}/torch_bf16.npy", np.full((len(x), 1), np.nan))
PY
    for p in f32 bf16; do
        taskset -c 0,1 featurize -j 2 -m "$work/$arch.st" --precision $p "$work/bags" \
            > "$work/features.$p"
        train --arch clam --epochs 10 --seed 1 -o "$work/head.$p" "$work/features.$p" \
            > /dev/null 2>&1
        attend -k -m "$work/head.$p" "$work/features.$p" | classify -m "$work/head.$p" \
            > "$work/out.$p"
        if [ -e "$work/$arch.init.st" ]; then
            taskset -c 0,1 featurize -j 2 -m "$work/$arch.init.st" --precision $p \
                "$work/bags" > "$work/init.$p"
        else
            cp "$work/features.$p" "$work/init.$p"
        fi
    done
    t32= t16=
    for ((r = 0; r < rounds; r++)); do
        for p in f32 bf16; do
            one=$(seconds taskset -c 0 featurize -m "$work/$arch.st" --precision $p "$work/tiles")
            three=$(seconds taskset -c 0 featurize -m "$work/$arch.st" --precision $p "$work/tiles3")
            t=$(awk -v a="$one" -v b="$three" -v n="$tiles" 'BEGIN { print (b - a) / (2 * n) / 1e3 }')
            if [ $p = f32 ]; then t32=$(min "$t" "$t32"); else t16=$(min "$t" "$t16"); fi
        done
    done
    read -r _ _ gflop _ < <(build/bench/cnn "$work/$arch.st" 1 0)
    norms=0
    [ -e "$work/$arch.init.st" ] && norms=1
    "$python" - "$work" "$arch" "$t32" "$t16" "$gflop" "$peak" "$norms" <<'PY'
import sys, numpy as np
sys.path.insert(0, "tests")
import safetensors
work, arch = sys.argv[1], sys.argv[2]
t32, t16, gflop, peak = (float(a) for a in sys.argv[3:7])
norms = sys.argv[7] == "1"   # batch norms: their statistics taken from the patches
bags = [list(safetensors.read(open(f"{work}/out.{p}", "rb"))) for p in ("f32", "bf16")]
cos, rel, alike, diff, top, same, prob = 1.0, 0.0, 1.0, 0.0, 0.0, 0, 0.0
for (_, b), (_, a) in zip(*bags):   # b float32's, a bfloat16's
    fa, fb = a["features"].astype(float), b["features"].astype(float)
    c = (fa * fb).sum(1) / np.linalg.norm(fa, axis=1) / np.linalg.norm(fb, axis=1)
    cos, rel = min(cos, c.min()), max(rel, np.abs(fa - fb).max() / np.abs(fb).max())
    bn = fb / np.linalg.norm(fb, axis=1)[:, None]
    alike = min(alike, (bn @ bn.T).min())
    diff = max(diff, np.abs(a["attention"] - b["attention"]).max())
    top = max(top, b["attention"].max())
    same += a["attention"].argmax() == b["attention"].argmax()
    prob = max(prob, np.abs(a["prob"] - b["prob"]).max())
n = len(bags[0])
def features(name):
    f = open(f"{work}/{name}", "rb")
    return np.concatenate([t["features"] for _, t in safetensors.read(f)]).astype(float)
def least_cosine(a, b):
    return ((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min()
f64, torch16 = np.load(f"{work}/torch_f64.npy"), np.load(f"{work}/torch_bf16.npy")
print(f"{arch}: {n} bags, {sum(b['features'].shape[0] for _, b in bags[0])} patches")
if norms:
    print(f"  as torchvision initializes it: bf16's features' cosine to float32's at least "
          f"{least_cosine(features('init.bf16'), features('init.f32')):.6f}")
print(f"  {'batch norms of the patches' if norms else 'features'}: "
      f"cosine to float32's at least {cos:.6f}, "
      f"largest difference {100 * rel:.2f}% of the largest; two patches' float32 features: "
      f"cosine at least {alike:.4f}")
print(f"  against PyTorch's float64: amil f32 {least_cosine(features('features.f32'), f64):.6f}, "
      f"amil bf16 {least_cosine(features('features.bf16'), f64):.6f}, "
      f"PyTorch's own bf16 (autocast) {least_cosine(torch16, f64):.6f}")
print(f"  CLAM head trained on each: attention within {diff:.2e} ({100 * diff / top:.2f}% of the "
      f"largest weight), top patch the same in {same} of {n} bags; "
      f"probabilities within {prob:.2e}")
print(f"  featurize, one core: {t32:.1f} ms a tile in f32, {t16:.1f} in bf16: {t32 / t16:.2f}x")
for name, t in (("f32", t32), ("bf16", t16)):
    print(f"  {name}: {gflop / t * 1e3:.0f} GFLOP/s, {100 * gflop / t * 1e3 / peak:.0f}% of the "
          f"float32 peak")
PY
done
