#!/usr/bin/env bats
# The frozen backbones of slide studies through featurize: torchvision's
# ResNet50, ViT-B/16 and ViT-L/16 as torchvision saves them, timm's ViT
# layout as pathology encoders ship it (LayerScale, mean pooling, no
# head), and CLAM's truncated ResNet50.  Each is held to its reference in float64
# (torchvision itself; timm's forward transcribed, tests/torch/timm_vit.py)
# on random weights, a 224-pixel crop of the BreakHis image, every
# instruction-set path.

load lib

setup() {
    T=$BATS_TEST_TMPDIR
    py=/usr/bin/python3
}

# features_match MODEL [OPTION...]: featurize $T/crop.png's bag with MODEL
# on every instruction set this CPU runs, each within 1e-4 (relative to
# the largest) of $T/theirs.
features_match() {
    local model=$1 tried=0 isa
    shift
    bagify -p 224 "$T/crop.png" > "$T/bag"
    for isa in avx512 avx2 portable; do
        if ! AMIL_ISA=$isa featurize -m "$model" "$@" "$T/bag" 2> "$T/err" > "$T/features"; then
            grep -q "AMIL_ISA=$isa: this CPU cannot run it" "$T/err" || { cat "$T/err"; return 1; }
            continue
        fi
        recinfo -t features "$T/features" | tr '\t' '\n' > "$T/ours"
        run "$py" -c '
import sys, numpy as np
ours, theirs = np.loadtxt(sys.argv[1]), np.loadtxt(sys.argv[2])
error = np.abs(ours - theirs).max() / np.abs(theirs).max()
print("%s: %d features, relative error %.2e against float64" % (sys.argv[3], ours.size, error))
assert ours.shape == theirs.shape and error < 1e-4' "$T/ours" "$T/theirs" "$isa"
        echo "$output"
        [ "$status" -eq 0 ]
        tried=$((tried + 1))
    done
    [ "$tried" -ge 1 ]
}

# torchvision_vit ARCH: $T/vit.st, a bare state_dict of torchvision's ARCH
# with random weights (its norms and embeddings drawn away from their
# initial values), and $T/theirs, the class token after the final
# LayerNorm (heads' input) of $T/crop.png in float64.
torchvision_vit() {
    "$py" - "$BATS_TEST_DIRNAME" "$BREAKHIS" "$T" "$1" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
import numpy as np, torch, torchvision, safetensors
from PIL import Image
torch.manual_seed(3)
model = getattr(torchvision.models, sys.argv[4])(num_classes=2)
with torch.no_grad():
    for name, t in model.state_dict().items():
        if "class_token" in name or "pos_embedding" in name:
            t.copy_(0.2 * torch.randn_like(t))
        elif ".ln" in name or name.startswith("encoder.ln"):
            t.copy_((name.endswith("weight")) + 0.2 * torch.randn_like(t))
model.eval()
safetensors.write(open(sys.argv[3] + "/vit.st", "wb"), {},
                  {k: v.numpy() for k, v in model.state_dict().items()})
crop = np.asarray(Image.open(sys.argv[2]).convert("RGB"))[100:324, 200:424]
Image.fromarray(crop).save(sys.argv[3] + "/crop.png")
kept = {}
model.double().heads.register_forward_hook(lambda m, i, o: kept.update(f=i[0]))
with torch.no_grad():
    model(torch.from_numpy(crop / 255.0).permute(2, 0, 1)[None])
np.savetxt(sys.argv[3] + "/theirs", kept["f"][0].numpy())
PY
}

@test "backbones: torchvision's vit_b_16 as it saves it gives its features, on every instruction set" {
    "$py" -c 'import torchvision' 2>/dev/null || skip "python3-torchvision is missing: not checked"
    torchvision_vit vit_b_16
    recinfo "$T/vit.st" | grep -q 'tensor encoder.layers.encoder_layer_11.self_attention.in_proj_weight F32 \[2304, 768\]'
    features_match "$T/vit.st"
    recinfo "$T/features" | grep -q 'tensor features F32 \[1, 768\]'
}

@test "backbones: torchvision's vit_l_16 gives its features, on every instruction set" {
    "$py" -c 'import torchvision' 2>/dev/null || skip "python3-torchvision is missing: not checked"
    torchvision_vit vit_l_16
    features_match "$T/vit.st"
    recinfo "$T/features" | grep -q 'tensor features F32 \[1, 1024\]'
}

@test "backbones: timm's vit_base_patch16_224 with LayerScale and fc_norm pools the mean" {
    "$py" -c 'import torch, PIL' 2>/dev/null || skip "python3-torch is missing: not checked"
    "$py" "$BATS_TEST_DIRNAME/torch/timm_vit.py" "$T" "$BREAKHIS" 768 12 12 1 avg 0
    features_match "$T/timm.st"
    # the file's fc_norm says avg; --pool token contradicts it
    bagify -p 224 "$T/crop.png" > "$T/bag"
    run bash -c "featurize -m '$T/timm.st' --pool token '$T/bag' > '$T/out'"
    [ "$status" -eq 1 ]
    [ "$output" = "featurize: $T/timm.st: global_pool 'token', but the file's fc_norm follows a mean" ]
    assert_empty "$T/out"
}

@test "backbones: a UNI-like encoder (timm's large, LayerScale, no head) featurizes and only that" {
    "$py" -c 'import torch, PIL' 2>/dev/null || skip "python3-torch is missing: not checked"
    "$py" "$BATS_TEST_DIRNAME/torch/timm_vit.py" "$T" "$BREAKHIS" 1024 24 16 1 token 1
    features_match "$T/timm.st"
    recinfo "$T/features" | grep -q 'tensor features F32 \[1, 1024\]'
    # the mean instead of the class token: other features, said by another
    # fingerprint, so that no head pools one for the other
    featurize -m "$T/timm.st" --pool avg "$T/bag" > "$T/mean"
    ! cmp -s <(recinfo -t features "$T/mean") <(recinfo -t features "$T/features")
    [ "$(recinfo "$T/mean" | grep features_by)" != "$(recinfo "$T/features" | grep features_by)" ]
    # without a head there is nothing to classify
    pngtopam "$BREAKHIS" | bagify -w - > "$T/image"
    run bash -c "classify -m '$T/timm.st' '$T/image' > '$T/out'"
    [ "$status" -eq 1 ]
    [ "$output" = "classify: $T/timm.st: a vit_large_patch16_224 backbone without its last layer: it only featurizes (train --arch vit_large_patch16_224 fits one)" ]
    assert_empty "$T/out"
    run bash -c "gradcam -m '$T/timm.st' -o '$T/cam.png' '$BREAKHIS'"
    [ "$status" -eq 1 ]
    [[ "$output" == *"without its last layer"* ]]
}

@test "backbones: torchvision's resnet50 as it saves it, whole and cut at layer3 as CLAM's" {
    "$py" -c 'import torchvision' 2>/dev/null || skip "python3-torchvision is missing: not checked"
    # a resnet50 of random weights and batch-norm statistics, its state_dict
    # saved bare (num_batches_tracked too); its features, avgpool's (fc's
    # input), and CLAM's resnet50_trunc_baseline's (layer3, then the
    # adaptive average pool), in float64
    "$py" - "$BATS_TEST_DIRNAME" "$BREAKHIS" "$T" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
import numpy as np, torch, torchvision, safetensors
from PIL import Image
torch.manual_seed(3)
model = torchvision.models.resnet50(num_classes=2)
with torch.no_grad():
    for name, t in model.state_dict().items():
        if name.endswith("running_mean"):
            t.copy_(0.1 * torch.randn_like(t))
        elif name.endswith("running_var"):
            t.copy_(1 + 0.5 * torch.rand_like(t))
model.eval()
safetensors.write(open(sys.argv[3] + "/r50.st", "wb"), {},
                  {k: v.numpy() for k, v in model.state_dict().items()})
crop = np.asarray(Image.open(sys.argv[2]).convert("RGB"))[100:324, 200:424]
Image.fromarray(crop).save(sys.argv[3] + "/crop.png")
kept = {}
model.double().avgpool.register_forward_hook(lambda m, i, o: kept.update(f=o.flatten(1)))
model.layer3.register_forward_hook(lambda m, i, o: kept.update(trunc=o.mean((2, 3))))
with torch.no_grad():
    model(torch.from_numpy(crop / 255.0).permute(2, 0, 1)[None])
np.savetxt(sys.argv[3] + "/whole", kept["f"][0].numpy())
np.savetxt(sys.argv[3] + "/trunc", kept["trunc"][0].numpy())
PY
    recinfo "$T/r50.st" | grep -q 'tensor layer4.2.conv3.weight F32 \[2048, 512, 1, 1\]'
    cp "$T/whole" "$T/theirs"
    features_match "$T/r50.st"
    recinfo "$T/features" | grep -q 'tensor features F32 \[1, 2048\]'
    cp "$T/trunc" "$T/theirs"
    features_match "$T/r50.st" --trunc
    recinfo "$T/features" | grep -q 'tensor features F32 \[1, 1024\]'
}

@test "backbones: --trunc and --pool are refused where they mean nothing" {
    cnnmodel resnet18 > "$T/r18.st"
    pngtopam "$BREAKHIS" | bagify -w - > "$T/image"
    for case in "--trunc:featurize: $T/r18.st: trunc: resnet18 is no resnet50 to cut at layer3" \
                "--pool=avg:featurize: $T/r18.st: global_pool 'avg': resnet18 has no tokens to pool" \
                "--trunc:featurize: $M: an attention-MIL model takes no trunc"; do
        model=$T/r18.st
        [[ "$case" == *attention-MIL* ]] && model=$M
        run bash -c "featurize -m '$model' ${case%%:*} '$T/image' > '$T/out'"
        [ "$status" -eq 1 ] || { echo "$case: $status $output"; return 1; }
        [ "$output" = "${case#*:}" ] || { echo "$output"; return 1; }
        assert_empty "$T/out"
    done
    run featurize -m "$T/r18.st" --pool mean "$T/image"
    [ "$status" -eq 2 ]
    [[ "$output" == *"--pool"*"mean"* ]]
    run classify -m "$T/r18.st" --trunc "$T/image"
    [ "$status" -eq 2 ]
    [[ "$output" == *"unknown option --trunc"* ]]
}

@test "backbones: two threads give one thread's bytes (a CNN's tiles, a ViT's panels and images)" {
    # a CNN splits its tiles over the threads, each tile whole in one; a
    # ViT splits each linear layer's outputs and its other layers' images,
    # 16 tiles at a time: 18 patches (a stride of 84) are a batch of 16 and
    # one of 2
    bagify -p 224 -s 84 "$BREAKHIS" > "$T/bag"
    recinfo "$T/bag" | grep -q "tensor patches U8 \[18, 224, 224, 3\]"
    for arch in resnet18 vit_b_16; do
        cnnmodel "$arch" > "$T/model.st"
        featurize -j 1 -m "$T/model.st" "$T/bag" > "$T/one"
        featurize -j 2 -m "$T/model.st" "$T/bag" > "$T/two"
        recinfo "$T/one" | grep -q "tensor features F32 \[18, "
        cmp "$T/one" "$T/two"
    done
}

# bf16_matches MODEL CENTRED: featurize $T/bag with MODEL --precision bf16
# on every instruction set this CPU runs: refused with nothing written
# where there is no bfloat16; elsewhere each tile's features within cosine
# 0.999 of float32's, and at least CENTRED once both have float32's mean
# over the tiles taken off (random weights make the tiles' features alike,
# so the first alone would pass features mixed up between tiles); not equal
# to float32's, under another fingerprint, and the same bytes on two
# threads; run on one set at least where the CPU has it.
bf16_matches() {
    local model=$1 centred=$2 tried=0 isa
    for isa in avx512 avx2 portable; do
        if ! AMIL_ISA=$isa featurize -m "$model" --precision bf16 "$T/bag" \
            2> "$T/err" > "$T/bf16"; then
            grep -Eq "AMIL_ISA=$isa: this CPU cannot run it|precision bf16: (the $isa kernels have no bfloat16 path|this CPU has no AVX512_BF16)" "$T/err" ||
                { cat "$T/err" >&2; return 1; }
            assert_empty "$T/bf16"
            continue
        fi
        AMIL_ISA=$isa featurize -m "$model" "$T/bag" > "$T/f32"
        recinfo -t features "$T/bf16" > "$T/a"
        recinfo -t features "$T/f32" > "$T/b"
        "$py" -c '
import sys, numpy as np
a, b = np.loadtxt(sys.argv[1]), np.loadtxt(sys.argv[2])
def cosines(a, b):
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
cos, centred = cosines(a, b), cosines(a - b.mean(0), b - b.mean(0))
print("%s: bf16 against f32, %d tiles of %d features: cosine from %.6f to %.6f, centred %.4f"
      % (sys.argv[3], a.shape[0], a.shape[1], cos.min(), cos.max(), centred.min()),
      file=sys.stderr)
assert a.shape == b.shape and cos.min() >= 0.999 and centred.min() >= float(sys.argv[4])
assert np.abs(a - b).max() > 0' "$T/a" "$T/b" "$model" "$centred" || return 1
        [ "$(recinfo "$T/bf16" | grep features_by)" != "$(recinfo "$T/f32" | grep features_by)" ] ||
            return 1
        AMIL_ISA=$isa featurize -j 2 -m "$model" --precision bf16 "$T/bag" > "$T/two"
        cmp "$T/bf16" "$T/two" || return 1
        tried=$((tried + 1))
    done
    # where the CPU has it, it ran
    if grep -qw avx512_bf16 /proc/cpuinfo; then
        [ "$tried" -ge 1 ]
    fi
}

@test "backbones: --precision bf16 runs a ViT's linear layers in bfloat16, where the CPU can" {
    "$py" -c 'import torch, PIL' 2>/dev/null || skip "python3-torch is missing: not checked"
    # timm's base layout, LayerScale and the mean: every kind of layer
    "$py" "$BATS_TEST_DIRNAME/torch/timm_vit.py" "$T" "$BREAKHIS" 768 12 12 1 avg 0
    bagify -p 224 -s 84 "$BREAKHIS" > "$T/bag"
    bf16_matches "$T/timm.st" 0.9
}

@test "backbones: --precision bf16 runs a ResNet's convolutions in bfloat16, where the CPU can" {
    # resnet50: Winograd's F(2x2) (also where F(4x4) would run in float),
    # 1x1 panels of stride 1 and 2, 3x3 ones of stride 2; the stem stays in
    # float
    cnnmodel resnet50 > "$T/r50.st"
    bagify -p 224 -s 84 "$BREAKHIS" > "$T/bag"
    bf16_matches "$T/r50.st" 0.9
}
