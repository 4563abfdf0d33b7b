#!/usr/bin/env bats
# A value that is not finite is an error, never a class, a weight or a
# score: non-finite weights are refused when a model loads, and
# non-finite features, attention, embeddings and probabilities stop the
# program with a message naming the record and the patch.  None of it
# hangs (the AUC's ranks once spun forever on a NaN).

load lib

setup() {
    T=$BATS_TEST_TMPDIR
    bagify -l 1 "$BREAKHIS" > "$T/bag"
    featurize -m "$M" "$T/bag" > "$T/features"
}

# fails unless the program failed with status 1 and said exactly $1
refused() {
    [ "$status" -eq 1 ] || { echo "status $status: $output"; return 1; }
    [ "$output" = "$1" ] || { echo "$output"; return 1; }
}

@test "finite: one NaN feature is a named error in attend, A-MIL and CLAM" {
    # patch 3's value 7 (of the fixture's 32): flat index 3 * 32 + 7
    recpass -f features@103=nan "$T/features" > "$T/nan"
    run bash -c 'attend -m "$1" "$2" > "$3/out"' _ "$M" "$T/nan" "$T"
    refused "attend: $T/nan: record 0: features[3, 7] is nan: patch 3 is not a number"
    assert_empty "$T/out"
    recpass -f features@103=inf "$T/features" > "$T/inf"
    run bash -c 'attend -m "$1" "$2" > "$3/out"' _ "$M" "$T/inf" "$T"
    refused "attend: $T/inf: record 0: features[3, 7] is inf: patch 3 is not a number"
    # a CLAM head on features of its width
    train --arch clam -e 1 -q -o "$T/clam.st" "$T/features" > /dev/null
    run bash -c 'attend -m "$1" "$2" > "$3/out"' _ "$T/clam.st" "$T/nan" "$T"
    refused "attend: $T/nan: record 0: features[3, 7] is nan: patch 3 is not a number"
    assert_empty "$T/out"
}

@test "finite: train --arch clam with a NaN feature in a test bag stops, and does not hang" {
    recpass -f features@103=nan "$T/features" > "$T/nan"
    bagify -l 0 "$IHC" | featurize -m "$M" > "$T/neg"
    cat "$T/features" "$T/neg" > "$T/train"
    run timeout 60 train --arch clam -e 1 -q -o "$T/m.st" --test "$T/nan" "$T/train"
    refused "train: $T/nan: record 0: features[3, 7] is nan: patch 3 is not a number"
    [ ! -e "$T/m.st" ]
    run timeout 60 train --arch clam -e 1 -q -o "$T/m.st" "$T/nan"
    refused "train: $T/nan: record 0: features[3, 7] is nan: patch 3 is not a number"
}

@test "finite: localize on attention with a NaN says so, and does not hang" {
    mkdir -p "$T/s"
    printf 'file\tlabel\tlength\tdigits\tindices\n' > "$T/t.tsv"
    bagify "$BREAKHIS" | recpass -a index > "$T/att"
    n=$(recinfo -j "$T/att" | grep -o '"attention":{[^}]*' | grep -o '\[1,[0-9]*\]' | tr -dc '0-9,' | cut -d, -f2)
    src=$(recinfo -j "$T/att" | grep -o '"source":"[^"]*"' | cut -d'"' -f4)
    digits=$(yes 9 | head -n "$((n - 1))" | paste -sd,)
    printf '%s\t1\t%s\t1,%s\t\n' "$src" "$n" "$digits" >> "$T/t.tsv"
    localize -i "$T/t.tsv" "$T/att" > /dev/null   # good attention: an answer
    recpass -f attention@5=nan "$T/att" > "$T/nan"
    run timeout 20 localize -i "$T/t.tsv" "$T/nan"
    refused "localize: $T/nan: record 0: attention[0, 5] is nan: patch 5 is not a number"
}

@test "finite: a NaN embedding is no class in classify, as a record or a table" {
    attend -m "$M" "$T/features" > "$T/att"
    recpass -f embedding@2=nan "$T/att" > "$T/nan"
    run bash -c 'classify -m "$1" "$2" > "$3/out"' _ "$M" "$T/nan" "$T"
    refused "classify: $T/nan: record 0: embedding[0, 2] is nan, not a finite number"
    assert_empty "$T/out"
    run bash -c 'classify -t -m "$1" "$2" > "$3/out"' _ "$M" "$T/nan" "$T"
    refused "classify: $T/nan: record 0: embedding[0, 2] is nan, not a finite number"
    assert_empty "$T/out"
}

@test "finite: a model with a weight that is not finite does not load, in any program" {
    recpass -f classifier.0.weight@3=nan "$M" > "$T/nan.st"
    recpass -f attention.0.bias=inf "$M" > "$T/inf.st"
    for p in featurize attend classify; do
        run bash -c "$p -m '$T/nan.st' '$T/features' > '$T/out'"
        refused "$p: $T/nan.st: classifier.0.weight[0, 3] is nan, not a finite number"
        run bash -c "$p -m '$T/inf.st' '$T/features' > '$T/out'"
        refused "$p: $T/inf.st: attention.0.bias[0] is inf, not a finite number"
        assert_empty "$T/out"
    done
    run gradcam -m "$T/nan.st" -o "$T/g.png" < "$T/bag"
    refused "gradcam: $T/nan.st: classifier.0.weight[0, 3] is nan, not a finite number"
    [ ! -e "$T/g.png" ]
    # a CNN, and a frozen backbone's weights given to train
    cnnmodel net > "$T/net.st"
    recpass -f fc1.weight@0=nan "$T/net.st" > "$T/net-nan.st"
    run classify -m "$T/net-nan.st" < "$T/bag"
    refused "classify: $T/net-nan.st: fc1.weight[0, 0] is nan, not a finite number"
}

@test "finite: features or maps that overflow are an error where they are made" {
    recpass -f feature_extractor_part2.0.weight=1e38 "$M" > "$T/huge.st"
    run bash -c 'featurize -m "$1" "$2" > "$3/out"' _ "$T/huge.st" "$T/bag" "$T"
    [ "$status" -eq 1 ]
    [ "$output" = "featurize: $T/bag: record 0: features[0, 0] is inf: patch 0 is not a number" ]
    assert_empty "$T/out"
    run gradcam -m "$T/huge.st" -o "$T/g.png" < "$T/bag"
    [ "$status" -eq 1 ]
    [ ! -e "$T/g.png" ]
}
