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

@test "attend: attention over the bag sums to 1; PyTorch's, to 1e-4" {
    bagify "$BREAKHIS" | featurize -m "$M" | attend -m "$M" > "$T/a"
    run recinfo "$T/a"
    [[ "$output" == *"tensor attention F32 [1, 400]"* && "$output" == *"tensor embedding F32 [1, 32]"* ]]
    [[ "$output" != *"tensor features"* ]]
    recinfo -t attention "$T/a" | tr '\t' '\n' | awk '{ s += $1 } END { exit !(s > 0.9999 && s < 1.0001) }'
    recinfo -t attention "$T/a" | tr '\t' '\n' > "$T/ours"
    expected attention > "$T/theirs"
    [ "$(wc -l < "$T/ours")" -eq 400 ]
    run close "$T/ours" "$T/theirs"
    echo "$output"
    [ "$status" -eq 0 ]
    bagify "$BREAKHIS" | featurize -m "$M" | attend -k -m "$M" | recinfo | grep -q "tensor features F32"
}

@test "attend: features that do not fit" {
    # the fixture's 32 features a patch, to a model of 40
    bagify "$BREAKHIS" | featurize -m "$M" > "$T/f"
    bagify -l 1 "$BREAKHIS" | train -q -o "$T/m40" -e 1 --hidden 40 --attention-dim 12 > /dev/null
    run bash -c "attend -m '$T/m40' < '$T/f' > '$T/out'"
    [ "$status" -eq 1 ]
    [ "$output" = "attend: <stdin>: record 0: features are [400, 32]; the model's are [N ≥ 1, 40]" ]
    assert_empty "$T/out"
    bagify "$BREAKHIS" > "$T/bag"
    run bash -c "attend -m '$M' '$T/bag' > '$T/out'"
    [ "$status" -eq 1 ]
    [[ "$output" == "attend: $T/bag: record 0: no tensor 'features' (run featurize first)" ]]
    assert_empty "$T/out"
}

@test "attend: a CNN model is not an attention-MIL model" {
    cnnmodel resnet18 > "$T/r.st"
    bagify "$BREAKHIS" | featurize -m "$M" > "$T/features"
    run bash -c "attend -m '$T/r.st' '$T/features' > '$T/out'"
    [ "$status" -eq 1 ]
    [ "$output" = "attend: $T/r.st: arch 'resnet18' is not an attention-MIL model (amil or gated) or a CLAM head" ]
    assert_empty "$T/out"
}
