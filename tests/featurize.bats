#!/usr/bin/env bats
# featurize, attend and classify one after the other are the model: with a
# PyTorch state_dict (tests/data/torch-state-dict.safetensors, written by
# tests/torch/fixture.py as safetensors.torch.save_file would) they give
# what PyTorch computed in float64 on the whole 400-patch bag of the real
# BreakHis image (the fixture's "pipeline" record).


load lib

setup() {
    T=$BATS_TEST_TMPDIR
}

@test "featurize: usage" {
    run featurize -h
    [ "$status" -eq 0 ]
    [[ "${lines[0]}" == "usage: featurize "* ]]
    run featurize < /dev/null
    [ "$status" -eq 2 ]
    [[ "$output" == *"no model: give -m MODEL"* ]]
    run featurize -m "$M" -j 0 < /dev/null
    [ "$status" -eq 2 ]
}

@test "featurize: features for every patch; patches consumed unless -k" {
    bagify -L breakhis "$BREAKHIS" | featurize -m "$M" > "$T/f"
    run recinfo "$T/f"
    [[ "$output" == *"tensor features F32 [400, 32]"* ]]
    [[ "$output" != *"tensor patches"* ]]
    [[ "$output" == *"tensor coords I32 [400, 2]"* ]]     # passed on
    [[ "$output" == *"patient = 14-22549G"* && "$output" == *"label = 0"* ]]
    bagify "$BREAKHIS" | featurize -k -m "$M" | recinfo | grep -q "tensor patches U8"
    # ReLU features: none negative
    [ "$(recinfo -t features "$T/f" | tr '\t' '\n' | awk '$1 < 0' | wc -l)" -eq 0 ]
}

@test "featurize: two threads give the bytes one gives" {
    # threads split the bag's patches, each computed alone
    bagify "$BREAKHIS" | featurize -m "$M" -j 1 > "$T/one"
    bagify "$BREAKHIS" | featurize -m "$M" -j 2 > "$T/two"
    cmp "$T/one" "$T/two"
}

@test "featurize: bags that do not fit the model, and models that are not" {
    bagify -g "$BREAKHIS" > "$T/gray"
    bagify -p 32 "$BREAKHIS" > "$T/p32"
    recpass -r patches < "$T/gray" > "$T/nopatches"
    for case in "gray:record 0: patches of 28×28×1 do not fit the model, which takes 28×28×3" \
                "p32:record 0: patches of 32×32×3 do not fit" \
                "nopatches:record 0: no tensor 'patches' (cut the image into a bag with bagify)"; do
        run bash -c "featurize -m '$M' '$T/${case%%:*}' > '$T/out'"
        [ "$status" -eq 1 ] || { echo "$case: $status"; return 1; }
        [[ "$output" == "featurize: $T/${case%%:*}: ${case#*:}"* ]] || { echo "$output"; return 1; }
        assert_empty "$T/out"
    done
    run bash -c "featurize -m '$T/none.st' < '$T/gray' > '$T/out'"
    [ "$status" -eq 1 ]
    [[ "$output" == *"none.st: No such file or directory"* ]]
    run bash -c "featurize -m '$T/gray' < '$T/gray' > '$T/out'"
    [ "$status" -eq 1 ]
    [[ "$output" == *"gray: a record of kind 'bag', not a model"* ]]
    assert_empty "$T/out"
}

@test "weights go both ways: our model loads into PyTorch's module" {
    py=/usr/bin/python3
    "$py" -c 'import torch' 2>/dev/null || skip "python3-torch is missing: not checked"
    bagify -l 0 "$BREAKHIS" > "$T/bags"
    bagify -l 1 "$IHC" >> "$T/bags"
    train -q -o "$T/m" -e 1 --hidden 40 --attention-dim 12 "$T/bags" > /dev/null
    featurize -m "$T/m" "$T/bags" | attend -m "$T/m" | classify -m "$T/m" -t |
        awk -F'\t' 'NR > 1 { print $4 }' > "$T/ours"
    "$py" "$BATS_TEST_DIRNAME/torch/load_ours.py" "$T/m" "$T/bags" > "$T/theirs"
    run close "$T/ours" "$T/theirs"
    echo "$output"
    [ "$status" -eq 0 ]
}

@test "featurize, CNN: a frozen backbone's features of every tile, computed once" {
    cnnmodel resnet18 > "$T/r.st"
    bagify -w -L breakhis "$BREAKHIS" > "$T/image"
    featurize -m "$T/r.st" "$T/image" > "$T/features"
    run recinfo "$T/features"
    [[ "$output" == *"tensor features F32 [12, 512]"* && "$output" == *"tensor coords I32 [12, 2]"* ]]
    [[ "$output" != *"tensor image"* && "$output" == *"patch = 224"* ]]
    # the 4 x 3 tiles of 224 over 700 x 460: x at 0, 158, 317, 476; y at 0, 118, 236
    [ "$(recinfo -t coords "$T/features" | tr '\t\n' ',;')" = "0,0;0,158;0,317;0,476;118,0;118,158;118,317;118,476;236,0;236,158;236,317;236,476;" ]
    # -k keeps the image; a tile's features are those of the tile alone
    featurize -k -m "$T/r.st" "$T/image" | recinfo | grep -q 'tensor image U8'
    pngtopam "$BREAKHIS" | pamcut -left 158 -top 118 -width 224 -height 224 | bagify -w - |
        featurize -m "$T/r.st" | recinfo -t features > "$T/one"
    cmp "$T/one" <(recinfo -t features "$T/features" | sed -n 6p)
    # features are ReLU's, so none is negative (read first: a failing recinfo
    # must fail the test, not pass a negated pipeline)
    recinfo -t features "$T/features" | tr '\t' '\n' > "$T/values"
    [ "$(wc -l < "$T/values")" -eq $((12 * 512)) ]
    ! grep -q '^-' "$T/values" || false
}

@test "featurize, CNN: net is not cached; images too small or not images are refused" {
    cnnmodel net > "$T/net.st"
    cnnmodel resnet18 > "$T/r.st"
    bagify -w "$BREAKHIS" > "$T/image"
    run bash -c "featurize -m '$T/net.st' '$T/image' > '$T/out'"
    [ "$status" -eq 1 ]
    [ "$output" = "featurize: $T/net.st: net is trained whole, not on cached features; only a frozen backbone (vgg19, a resnet, a ViT) has features to cache" ]
    assert_empty "$T/out"
    pngtopam "$BREAKHIS" | pamcut -width 300 -height 200 | bagify -w - > "$T/small"
    bagify "$BREAKHIS" > "$T/bag"
    bagify "$BREAKHIS" | featurize -m "$M" > "$T/features"
    bagify -w -g "$BREAKHIS" > "$T/gray"
    for case in "small:record 0: an image of 300×200, smaller than resnet18's 224×224 input" \
                "bag:record 0: patches are [400, 28, 28, 3]; resnet18 takes RGB patches of 224×224 (bagify -p 224)" \
                "features:record 0: no tensor 'image' (bagify -w writes whole images)" \
                "gray:record 0: an image of 1 channels; resnet18 takes RGB"; do
        run bash -c "featurize -m '$T/r.st' '$T/${case%%:*}' > '$T/out'"
        [ "$status" -eq 1 ] || { echo "$case: $status"; return 1; }
        [ "$output" = "featurize: $T/${case%%:*}: ${case#*:}" ] || { echo "$output"; return 1; }
        assert_empty "$T/out"
    done
}

@test "featurize, CNN: tensors it does not know pass through, however many (the record's table grows)" {
    py=$(numpy_python) || skip "no Python with NumPy: the record cannot be written"
    cnnmodel resnet18 > "$T/r.st"
    pngtopam "$BREAKHIS" | pamcut -width 240 -height 230 | bagify -w - > "$T/image"
    # 7 tensors more, 8 in all: adding features then coords grows the
    # record's table of tensors past 8 while the image is being read
    "$py" - "$BATS_TEST_DIRNAME" "$T/image" "$T/more" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
import numpy as np
import safetensors
(meta, t), = list(safetensors.read(open(sys.argv[2], "rb")))
t = dict(t)
for i in range(7):
    t["extra%d" % i] = np.full((3,), i, dtype=np.int32)
safetensors.write(open(sys.argv[3], "wb"), meta, t)
PY
    [ "$(recinfo "$T/more" | grep -c '  tensor ')" -eq 8 ]
    featurize -m "$T/r.st" "$T/more" > "$T/more.feat"
    cmp <(recinfo -t features "$T/more.feat") <(featurize -m "$T/r.st" "$T/image" | recinfo -t features)
    [ "$(recinfo -t extra6 "$T/more.feat")" = "6	6	6" ]
}
