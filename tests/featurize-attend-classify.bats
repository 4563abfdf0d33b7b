#!/usr/bin/env bats
# featurize, attend and classify one after the other are the model: with a
# PyTorch state_dict (tests/data/torch-state-dict.safetensors, written by
# tests/torch/fixture.py as safetensors.torch.save_file would) they give
# what PyTorch computed in float64 on the whole 400-patch bag of the real
# BreakHis image (the fixture's "pipeline" record).

load lib

setup() {
    T=$BATS_TEST_TMPDIR
    M=$DATA/torch-state-dict.safetensors
    FIXTURE=$DATA/torch-fixture.safetensors
}

# expected TENSOR: PyTorch's values, one per line, from the pipeline record
expected() {
    recpass "$FIXTURE" | recinfo -t "$1" | tail -n 1 | tr '\t' '\n'
}

# close A B: the two columns of numbers agree to 1e-4 of the largest
close() {
    paste "$1" "$2" | awk '{ d = $1 - $2; if (d < 0) d = -d; if (d > m) m = d;
                             a = $2 < 0 ? -$2 : $2; if (a > s) s = a }
                           END { printf "max relative error %.2e\n", m / s; exit !(m / s < 1e-4 && NR > 0) }'
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

@test "featurize: two threads agree with one to float rounding" {
    # OpenBLAS splits the products differently with more threads, so the
    # bytes may differ (the same thread count always gives the same bytes)
    bagify "$BREAKHIS" | featurize -m "$M" -j 1 > "$T/one"
    bagify "$BREAKHIS" | featurize -m "$M" -j 2 > "$T/two"
    bagify "$BREAKHIS" | featurize -m "$M" -j 2 > "$T/again"
    cmp "$T/two" "$T/again"
    recinfo -t features "$T/one" | tr '\t' '\n' > "$T/a"
    recinfo -t features "$T/two" | tr '\t' '\n' > "$T/b"
    run close "$T/a" "$T/b"
    echo "$output"
    [ "$status" -eq 0 ]
}

@test "featurize: bags that do not fit the model, and models that are not" {
    bagify -g "$BREAKHIS" > "$T/gray"
    bagify -p 32 "$BREAKHIS" > "$T/p32"
    recpass -r patches < "$T/gray" > "$T/nopatches"
    for case in "gray:record 0: patches of 28×28×1 do not fit the model, which takes 28×28×3" \
                "p32:record 0: patches of 32×32×3 do not fit" \
                "nopatches:record 0: no tensor 'patches'"; do
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
    bagify "$BREAKHIS" | featurize -m "$M" > "$T/f"
    run bash -c "attend -m '$DATA/torch-state-dict.safetensors' < '$T/f' > /dev/null"
    [ "$status" -eq 0 ]
    bagify "$BREAKHIS" > "$T/bag"
    run bash -c "attend -m '$M' '$T/bag' > '$T/out'"
    [ "$status" -eq 1 ]
    [[ "$output" == "attend: $T/bag: record 0: no tensor 'features'" ]]
    assert_empty "$T/out"
}

@test "classify: the pipeline gives PyTorch's probabilities" {
    bagify "$BREAKHIS" | featurize -m "$M" | attend -m "$M" | classify -m "$M" > "$T/c"
    run recinfo "$T/c"
    [[ "$output" == *"tensor prob F32 [2]"* && "$output" == *"predicted = "* ]]
    [[ "$output" == *"tensor attention F32 [1, 400]"* ]]      # passed on for stitch
    recinfo -t prob "$T/c" | tr '\t' '\n' > "$T/ours"
    expected prob > "$T/theirs"
    run close "$T/ours" "$T/theirs"
    echo "$output"
    [ "$status" -eq 0 ]
}

@test "classify -t: a table for evaluate" {
    { bagify -L breakhis "$BREAKHIS"; bagify -l 1 "$IHC"; } |
        featurize -m "$M" | attend -m "$M" | classify -m "$M" -t > "$T/t"
    [ "$(head -n 1 "$T/t")" = "source	label	prob_0	prob_1	predicted	patient" ]
    [ "$(wc -l < "$T/t")" -eq 3 ]
    awk -F'\t' 'NR == 2 { exit !($1 == "'"$BREAKHIS"'" && $2 == 0 && $6 == "14-22549G") }' "$T/t"
    awk -F'\t' 'NR == 3 { exit !($2 == 1 && $6 == "") }' "$T/t"
    # probabilities sum to 1; predicted is the larger
    awk -F'\t' 'NR > 1 { s = $3 + $4; if (s < 0.99999 || s > 1.00001) exit 1;
                         if (($4 > $3) != ($5 == 1)) exit 1 }' "$T/t"
    run classify -m "$M" -t -k < /dev/null
    [ "$status" -eq 2 ]
}

@test "classify: no embedding, or one of the wrong size" {
    bagify "$BREAKHIS" > "$T/bag"
    run bash -c "classify -m '$M' '$T/bag' > '$T/out'"
    [ "$status" -eq 1 ]
    [[ "$output" == "classify: $T/bag: record 0: no tensor 'embedding'" ]]
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
