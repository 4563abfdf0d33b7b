#!/usr/bin/env bats
# Records say which weights made each stage (features_by from featurize,
# embedding_by from attend: a fingerprint of the tensors, not a path), and
# a model that did not make them refuses them, naming both: features of
# one model pooled by another's attention gave other probabilities, exit 0.

load lib

setup() {
    T=$BATS_TEST_TMPDIR
    bagify -l 1 "$BREAKHIS" > "$T/bag"
    featurize -m "$M" "$T/bag" > "$T/features"
    # the same widths, one weight changed: in the feature extractor, in the
    # attention, in the classifier
    recpass -f feature_extractor_part2.0.bias@0=0.5 "$M" > "$T/other-features.st"
    recpass -f attention.0.bias@0=0.5 "$M" > "$T/other-attention.st"
    recpass -f classifier.0.bias@0=0.5 "$M" > "$T/other-classifier.st"
}

@test "fingerprint: each stage says its weights, and the stages before stay said" {
    attend -m "$M" "$T/features" > "$T/att"
    run recinfo "$T/att"
    [[ "$output" == *"features_model = $M"* ]]
    [[ "$output" == *"attention_model = $M"* ]]
    [[ "$output" =~ features_by\ =\ [0-9a-f]{16} ]]
    [[ "$output" =~ embedding_by\ =\ [0-9a-f]{16} ]]
    # a hash of the tensors, not of the path: a copy makes the same
    cp "$M" "$T/copy.st"
    featurize -m "$T/copy.st" "$T/bag" > "$T/copy"
    [ "$(recinfo "$T/copy" | grep features_by)" = "$(recinfo "$T/features" | grep features_by)" ]
    featurize -m "$T/other-attention.st" "$T/bag" > "$T/other"   # the same extractor
    [ "$(recinfo "$T/other" | grep features_by)" = "$(recinfo "$T/features" | grep features_by)" ]
    featurize -m "$T/other-features.st" "$T/bag" > "$T/other"
    [ "$(recinfo "$T/other" | grep features_by)" != "$(recinfo "$T/features" | grep features_by)" ]
}

@test "fingerprint: attend and classify refuse what another model made, naming both" {
    fp=$(recinfo "$T/features" | sed -n 's/.*features_by = //p')
    run bash -c 'attend -m "$1" "$2" > "$3/out"' _ "$T/other-features.st" "$T/features" "$T"
    [ "$status" -eq 1 ]
    [[ "$output" == "attend: $T/features: record 0: its features were made by weights $fp ($M), not by $T/other-features.st's ("[0-9a-f]*")" ]] || { echo "$output"; return 1; }
    assert_empty "$T/out"
    # the same extractor, another attention: attend goes on
    attend -m "$T/other-attention.st" "$T/features" > /dev/null
    attend -m "$M" "$T/features" > "$T/att"
    run bash -c 'classify -t -m "$1" "$2" > "$3/out"' _ "$T/other-attention.st" "$T/att" "$T"
    [ "$status" -eq 1 ]
    [[ "$output" == "classify: $T/att: record 0: its embedding was made by weights "*" ($M), not by $T/other-attention.st's ("*")" ]] || { echo "$output"; return 1; }
    assert_empty "$T/out"
    run bash -c 'classify -t -m "$1" "$2" > "$3/out"' _ "$T/other-features.st" "$T/att" "$T"
    [ "$status" -eq 1 ]
    # another classifier over the same embedding is a classifier of it
    classify -t -m "$T/other-classifier.st" "$T/att" > /dev/null
    classify -t -m "$M" "$T/att" > /dev/null
}

@test "fingerprint: a CLAM head keeps the backbone it learned on and refuses another's" {
    featurize -m "$T/other-features.st" "$T/bag" > "$T/other"
    train --arch clam -q -e 1 -o "$T/clam.st" "$T/features" > /dev/null
    fp=$(recinfo "$T/features" | sed -n 's/.*features_by = //p')
    recinfo "$T/clam.st" | grep -q "features_by = $fp"
    recinfo "$T/clam.st.ckpt" | grep -q "features_by = $fp"
    attend -m "$T/clam.st" "$T/features" > "$T/att"
    classify -m "$T/clam.st" -t "$T/att" > /dev/null
    run bash -c 'attend -m "$1" "$2" > /dev/null' _ "$T/clam.st" "$T/other"
    [ "$status" -eq 1 ]
    [[ "$output" == *"its features were made by weights "*" ($T/other-features.st), not by $T/clam.st's ($fp)" ]] || { echo "$output"; return 1; }
    # a training set of two backbones' features
    cat "$T/features" "$T/other" > "$T/mixed"
    run train --arch clam -q -e 1 -o "$T/mixed.st" "$T/mixed"
    [ "$status" -eq 1 ]
    [[ "$output" == "train: $T/mixed: record 1: its features were made by weights "*", the head's by $fp: a CLAM head learns one backbone's features" ]] || { echo "$output"; return 1; }
    run train --arch clam -q -e 1 -o "$T/mixed.st" --test "$T/other" "$T/features"
    [ "$status" -eq 1 ]
    [ ! -e "$T/mixed.st" ]
}

@test "fingerprint: a CNN's last layer refuses features of another backbone" {
    cnnmodel resnet18 > "$T/r1.st"
    recpass -f conv1.weight@0=0.5 "$T/r1.st" > "$T/r2.st"
    bagify -w -l 1 "$BREAKHIS" > "$T/image"
    featurize -m "$T/r1.st" "$T/image" > "$T/f1"
    featurize -m "$T/r2.st" "$T/image" > "$T/f2"
    train --arch resnet18 -w "$T/r1.st" -q -e 1 -o "$T/head.st" "$T/f1" > /dev/null
    classify -t -m "$T/head.st" "$T/f1" > /dev/null
    run classify -t -m "$T/head.st" "$T/f2"
    [ "$status" -eq 1 ]
    [[ "$output" == "classify: $T/f2: record 0: its features were made by weights "*" ($T/r2.st), not by $T/head.st's ("*")" ]] || { echo "$output"; return 1; }
    run train --arch resnet18 -w "$T/r1.st" -q -e 1 -o "$T/h2.st" "$T/f2"
    [ "$status" -eq 1 ]
    [[ "$output" == *"not by $T/r1.st's ("*")" ]] || { echo "$output"; return 1; }
}

@test "fingerprint: the normalization makes the features too; a malformed one is refused" {
    recpass -m normalization=imagenet "$M" > "$T/imagenet.st"
    featurize -m "$T/imagenet.st" "$T/bag" > "$T/f2"
    [ "$(recinfo "$T/f2" | grep features_by)" != "$(recinfo "$T/features" | grep features_by)" ]
    run attend -m "$M" "$T/f2"
    [ "$status" -eq 1 ]
    for bad in -000000000000001 " 89273148aa16d95" 0x89273148aa16d9 +f89273148aa16d9 F89273148AA16D95; do
        recpass -m features_by="$bad" "$T/features" > "$T/bad"
        run attend -m "$M" "$T/bad"
        [ "$status" -eq 1 ]
        [[ "$output" == *"metadata features_by '$bad' is not a fingerprint (16 hex digits)" ]] || { echo "$output"; return 1; }
    done
}
