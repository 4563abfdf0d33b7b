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

@test "classify: the pipeline gives PyTorch's probabilities, on every instruction set" {
    bagify "$BREAKHIS" > "$T/bag"
    tried=0
    for isa in avx512 avx2 portable; do
        if ! AMIL_ISA=$isa featurize -m "$M" "$T/bag" 2> "$T/err" > /dev/null; then
            grep -q "AMIL_ISA=$isa: this CPU cannot run it" "$T/err"
            echo "# $isa: not on this CPU" >&3
            continue
        fi
        AMIL_ISA=$isa featurize -m "$M" "$T/bag" | attend -m "$M" | classify -m "$M" > "$T/c"
        run recinfo "$T/c"
        [[ "$output" == *"tensor prob F32 [2]"* && "$output" == *"predicted = "* ]]
        [[ "$output" == *"tensor attention F32 [1, 400]"* ]]      # passed on for stitch
        recinfo -t prob "$T/c" | tr '\t' '\n' > "$T/ours"
        expected prob > "$T/theirs"
        run close "$T/ours" "$T/theirs"
        echo "$isa: $output"
        [ "$status" -eq 0 ]
        tried=$((tried + 1))
    done
    [ "$tried" -ge 1 ]
    AMIL_ISA=sse9 run featurize -m "$M" < /dev/null
    [ "$status" -eq 1 ]
    [[ "$output" == *"AMIL_ISA=sse9: not avx512, avx2 or portable"* ]]
}

@test "a model trained with one instruction set runs on the others" {
    { bagify -l 0 "$BREAKHIS"; bagify -l 1 "$IHC"; } > "$T/bags"
    AMIL_ISA=portable train -q -o "$T/m" -e 2 --hidden 40 --attention-dim 12 "$T/bags" > /dev/null
    AMIL_ISA=portable featurize -m "$T/m" "$T/bags" | attend -m "$T/m" |
        classify -m "$T/m" -t | cut -f 3,4 > "$T/portable"
    featurize -m "$T/m" "$T/bags" | attend -m "$T/m" | classify -m "$T/m" -t |
        cut -f 3,4 > "$T/best"
    [ "$(wc -l < "$T/best")" -eq 3 ]
    tail -n +2 "$T/portable" | tr '\t' '\n' > "$T/a"
    tail -n +2 "$T/best" | tr '\t' '\n' > "$T/b"
    run close "$T/a" "$T/b"
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
    [[ "$output" == "classify: $T/bag: record 0: no tensor 'embedding' (run attend first)" ]]
    assert_empty "$T/out"
    # the fixture's embedding of 32, to a model of 40
    bagify "$BREAKHIS" | featurize -m "$M" | attend -m "$M" > "$T/att"
    bagify -l 1 "$BREAKHIS" | train -q -o "$T/m40" -e 1 --hidden 40 --attention-dim 12 > /dev/null
    run bash -c "classify -m '$T/m40' '$T/att' > '$T/out'"
    [ "$status" -eq 1 ]
    [ "$output" = "classify: $T/att: record 0: embedding is [1, 32]; the model's is [1, 40]" ]
    assert_empty "$T/out"
}

@test "classify, CNN: an image's probabilities are the mean of its tiles'" {
    cnnmodel resnet18 > "$T/r.st"
    bagify -w -L breakhis "$BREAKHIS" > "$T/image"
    classify -m "$T/r.st" "$T/image" > "$T/out"
    run recinfo "$T/out"
    [[ "$output" == *"tensor prob F32 [2]"* && "$output" != *"tensor image"* ]]
    [[ "$output" == *"predicted = "* && "$output" == *"model = $T/r.st"* ]]
    # from the cached features, the same numbers
    featurize -m "$T/r.st" "$T/image" | classify -m "$T/r.st" -t > "$T/cached.tsv"
    classify -m "$T/r.st" -t "$T/image" | cmp - "$T/cached.tsv"
    # the mean over the 12 tiles, each classified alone
    for y in 0 118 236; do
        for x in 0 158 317 476; do
            pngtopam "$BREAKHIS" | pamcut -left $x -top $y -width 224 -height 224 | bagify -w -
        done
    done | classify -m "$T/r.st" -t | awk -F'\t' 'NR > 1 { s0 += $3; s1 += $4; n++ }
                                           END { printf "%.6f %.6f %d\n", s0 / n, s1 / n, n }' > "$T/mean"
    awk -F'\t' 'NR == 2 { printf "%.6f %.6f 12\n", $3, $4 }' "$T/cached.tsv" | cmp - "$T/mean"
}

@test "classify, CNN: records without an image are refused" {
    cnnmodel net > "$T/net.st"
    bagify "$BREAKHIS" > "$T/bag"
    run bash -c "classify -m '$T/net.st' '$T/bag' > '$T/out'"
    [ "$status" -eq 1 ]
    [ "$output" = "classify: $T/bag: record 0: no tensor 'image' (bagify -w writes whole images)" ]
    assert_empty "$T/out"
}

@test "classify, CNN: the paper's own ResNet state_dict (its head as fc.0) is read as torchvision's" {
    py=$(numpy_python) || skip "no Python with NumPy: the state_dict cannot be written"
    cnnmodel resnet18 > "$T/r.st"
    # resnet_pre.py wrapped its new layer in a Sequential: fc.0.weight, fc.0.bias;
    # saved bare, with no metadata, as safetensors.torch.save_file would
    "$py" - "$BATS_TEST_DIRNAME" "$T/r.st" "$T/paper.st" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
import safetensors
(meta, t), = list(safetensors.read(open(sys.argv[2], "rb")))
t = {("fc.0." + k[3:] if k.startswith("fc.") else k): v for k, v in t.items()}
safetensors.write(open(sys.argv[3], "wb"), {}, t)
PY
    recinfo "$T/paper.st" | grep -q 'tensor fc.0.weight F32 \[2, 512\]'
    bagify -w -L breakhis "$BREAKHIS" > "$T/image"
    cmp <(classify -m "$T/r.st" -t "$T/image") <(classify -m "$T/paper.st" -t "$T/image")
}
