#!/usr/bin/env bats
# CLAM's attention head (train --arch clam, attend, classify) on cached
# features: bags made here in NumPy where a few patches of the positive
# bags carry the signal, a CLAM state_dict as torch saves it, and the real
# images through a frozen ResNet18.  The numbers themselves are held to
# PyTorch by test_clam (tests/torch/clam_fixture.py); here, the programs.

load lib

setup() {
    T=$BATS_TEST_TMPDIR
    PY=$(numpy_python)
    ST=$BATS_TEST_DIRNAME/safetensors.py
}

# bags N F [SEED]: N labelled bags of 30 feature vectors of F values, every
# other one positive, its patches 0, 1 and 2 raised in their first 4 values
bags() {
    "$PY" -c '
import sys; sys.path.insert(0, sys.argv[1]); import numpy as np, safetensors as st
rng = np.random.default_rng(int(sys.argv[4]) if len(sys.argv) > 4 else 5)
for b in range(int(sys.argv[2])):
    x = rng.gamma(0.8, 0.5, size=(30, int(sys.argv[3]))).astype(np.float32)
    if b % 2:
        x[:3, :4] += 3
    st.write(sys.stdout.buffer, {"kind": "bag", "source": "bag%d" % b, "label": str(b % 2)},
             {"features": x})' "$BATS_TEST_DIRNAME" "$@"
}

@test "clam: train --arch clam learns a bag's label from three of its 30 patches, and attends to them" {
    bags 40 32 > "$T/train"
    train --arch clam -e 10 -q -o "$T/m.st" "$T/train" > "$T/log"
    [ "$(tail -n 1 "$T/log" | cut -f 3)" = "0.000000" ]   # no training error left
    recinfo "$T/m.st" | grep -q "arch = clam"
    recinfo "$T/m.st" | grep -q "tensor attention_net.0.weight F32 \[512, 32\]"
    # on new bags of the same kind: all right, and in the positive ones the
    # three raised patches hold most of the attention
    bags 41 32 7 > "$T/test"
    attend -m "$T/m.st" "$T/test" | classify -m "$T/m.st" -t > "$T/table"
    [ "$(awk -F '\t' 'NR > 1 && $2 != $5' "$T/table" | wc -l)" -eq 0 ]
    attend -m "$T/m.st" "$T/test" > "$T/att"
    run "$PY" -c '
import sys; sys.path.insert(0, sys.argv[1]); import safetensors as st
mass = [t["attention"][0, :3].sum() for m, t in st.read(open(sys.argv[2], "rb")) if m["label"] == "1"]
print("least attention on the raised patches of a positive bag: %.3f" % min(mass))
assert min(mass) > 0.5' "$BATS_TEST_DIRNAME" "$T/att"
    echo "$output"
    [ "$status" -eq 0 ]
}

@test "clam: attend and classify compute CLAM's forward, as NumPy does, gated and plain" {
    bags 6 20 > "$T/bags"
    train --arch clam -e 1 -q -o "$T/gated.st" "$T/bags" > /dev/null
    train --arch clam-plain -c 3 --hidden 16 --attention-dim 8 -e 1 -q -o "$T/plain.st" \
        "$T/bags" > /dev/null
    for m in gated plain; do
        run bash -c "attend -k -m '$T/$m.st' '$T/bags' | classify -k -m '$T/$m.st' |
            '$PY' '$ST' clam '$T/$m.st'"
        echo "$output"
        [ "$status" -eq 0 ]
    done
}

@test "clam: a size given leaves the other at CLAM's default, not attention-MIL's" {
    bags 2 20 > "$T/bags"
    train --arch clam --hidden 16 -e 1 -q -o "$T/h.st" "$T/bags" > /dev/null
    recinfo "$T/h.st" | grep -q "tensor attention_net.3.attention_a.0.weight F32 \[256, 16\]"
    train --arch clam --attention-dim 8 -e 1 -q -o "$T/d.st" "$T/bags" > /dev/null
    recinfo "$T/d.st" | grep -q "tensor attention_net.0.weight F32 \[512, 20\]"
}

@test "clam: a CLAM state_dict as torch saves it runs, its instance classifiers left out" {
    # the fixture's last record: a gated head with two outputs, 24 features
    "$PY" -c '
import sys; sys.path.insert(0, sys.argv[1]); import safetensors as st
*_, (meta, t) = st.read(open(sys.argv[2], "rb"))
assert meta["kind"] == "state_dict"
st.write(sys.stdout.buffer, {}, t)' "$BATS_TEST_DIRNAME" "$DATA/clam-fixture.safetensors" > "$T/clam.safetensors"
    bags 4 24 > "$T/bags"
    run bash -c "attend -k -m '$T/clam.safetensors' '$T/bags' |
        classify -k -m '$T/clam.safetensors' | '$PY' '$ST' clam '$T/clam.safetensors'"
    echo "$output"
    [ "$status" -eq 0 ]
    # it is a model, not a checkpoint to resume training from
    run train --arch clam --resume "$T/clam.safetensors" -e 1 -q -o "$T/m.st" "$T/bags"
    echo "$output"
    [ "$status" -eq 1 ]
    [ ! -e "$T/m.st" ]
}

@test "clam: the real images' tiles through a frozen ResNet18, a CLAM head on their features" {
    { bagify -w -l 0 "$BREAKHIS"; bagify -w -l 1 "$IHC"; } > "$T/images"
    train --arch resnet18 -e 0 -q -o "$T/backbone.st" "$T/images" > /dev/null
    featurize -m "$T/backbone.st" "$T/images" > "$T/features"
    recinfo "$T/features" | grep -q "tensor features F32 \[12, 512\]"
    train --arch clam -e 2 -q -o "$T/head.st" "$T/features" > /dev/null
    attend -m "$T/head.st" "$T/features" | classify -m "$T/head.st" -t > "$T/table"
    [ "$(wc -l < "$T/table")" -eq 3 ]
    # wrong inputs, clear errors
    run featurize -m "$T/head.st" "$T/images"
    [ "$status" -eq 1 ]
    [[ "$output" == *"a CLAM head reads cached features"* ]]
    run attend -m "$T/head.st" "$T/images"
    [ "$status" -eq 1 ]
    run train --arch clam -e 1 -q -o "$T/x.st" "$T/images"
    [ "$status" -eq 1 ]
    [[ "$output" == *"a CLAM head trains on a backbone's cached features"* ]]
    run train --arch clam --branches 2 -o "$T/x.st" "$T/features"
    [ "$status" -eq 2 ]
}

@test "clam: a slide's 224-pixel patches through a frozen ResNet18, a CLAM head, GeoJSON for QuPath" {
    { bagify -w -l 0 "$BREAKHIS"; bagify -w -l 1 "$IHC"; } > "$T/images"
    train --arch resnet18 -e 0 -q -o "$T/backbone.st" "$T/images" > /dev/null
    # a patch's features are those of the same pixels as a whole image's tile
    pngtopam "$BREAKHIS" | pamcut -left 100 -top 50 -width 224 -height 224 > "$T/square.pam"
    bagify -w "$T/square.pam" | featurize -m "$T/backbone.st" | recinfo -t features > "$T/tile"
    bagify -p 224 -c none "$T/square.pam" | featurize -m "$T/backbone.st" |
        recinfo -t features | cmp - "$T/tile"
    # the skin slide, labelled 1, and the BreakHis image as a second bag
    { bagify -l 1 -p 224 "$DATA/CMU-1-Small-Region.svs"; bagify -l 0 -p 224 "$BREAKHIS"; } |
        featurize -m "$T/backbone.st" > "$T/features"
    recinfo "$T/features" | grep -q "tensor features F32 \[49, 512\]"
    train --arch clam -e 2 -q -o "$T/head.st" "$T/features" > /dev/null
    attend -m "$T/head.st" "$T/features" | classify -m "$T/head.st" > "$T/rec"
    stitch -d "$T/json" -f geojson < "$T/rec"
    jq -e '(.features | length) == 49 and
        (.features[0].geometry.coordinates[0][1][0] - .features[0].geometry.coordinates[0][0][0]) == 224' \
        "$T/json/CMU-1-Small-Region.geojson"
    run featurize -m "$T/backbone.st" < <(bagify -p 100 "$BREAKHIS")
    [ "$status" -eq 1 ]
    [[ "$output" == *"resnet18 takes RGB patches of 224×224 (bagify -p 224)"* ]]
}
