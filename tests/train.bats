#!/usr/bin/env bats
# train on small bags cut from the two real images (BreakHis H&E crops are
# class 0, IHC crops class 1): it learns, it is deterministic, it resumes to
# the same bytes, and it refuses bad bags.

load lib

setup_file() {
    local d=$BATS_FILE_TMPDIR
    pngtopam "$BREAKHIS" > "$d/b.pam"
    pngtopam "$IHC" > "$d/h.pam"
    # six 112x112 crops of each: 16-patch bags
    for xy in 0:0 120:0 240:100 360:200 480:300 580:340; do
        x=${xy%:*} y=${xy#*:}
        pamcut -left "$x" -top "$y" -width 112 -height 112 "$d/b.pam" | bagify -l 0 -
        pamcut -left $((x * 2 / 3)) -top "$y" -width 112 -height 112 "$d/h.pam" | bagify -l 1 -
    done > "$d/train.bags"
}

setup() {
    T=$BATS_TEST_TMPDIR
    bags=$BATS_FILE_TMPDIR/train.bags
}

@test "train: usage" {
    run train -h
    [ "$status" -eq 0 ]
    [[ "${lines[0]}" == "usage: train "* ]]
    for bad in "" "-o m --arch resnet" "-o m --optimizer lbfgs" "-o m --epochs -1" \
               "-o m --lr x" "-o m --classes 1" "-o m --test -"; do
        run train $bad "$bags"
        [ "$status" -eq 2 ] || { echo "train $bad: $status"; return 1; }
    done
}

@test "train: it learns; the log and the paper's lines" {
    run bash -c "train -o '$T/m' -e 12 --lr 5e-4 --test '$bags' '$bags' > '$T/log' 2> '$T/err'"
    [ "$status" -eq 0 ]
    [ "$(head -n 1 "$T/log")" = "epoch	train_loss	train_error	train_accuracy	test_loss	test_error	test_accuracy	test_auc	seconds" ]
    [ "$(wc -l < "$T/log")" -eq 13 ]
    [ "$(awk -F'\t' 'NF != 9' "$T/log" | wc -l)" -eq 0 ]
    # the test loss falls to less than half, the accuracy reaches 0.9
    first=$(awk -F'\t' 'NR == 2 { print $5 }' "$T/log")
    last=$(awk -F'\t' 'END { print $5 }' "$T/log")
    awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < a / 2) }'
    awk -F'\t' 'END { exit !($7 >= 0.9 && $8 >= 0.8) }' "$T/log"
    grep -q '^Epoch: 1, Loss: 0\.[0-9]\{4\}, Train error: 0\.[0-9]\{4\}$' "$T/err"
    grep -q '^Test Set, Loss: 0\.[0-9]\{4\}, Test error: 0\.[0-9]\{4\}$' "$T/err"
    [ -s "$T/m" ] && [ -s "$T/m.ckpt" ]
    [[ "$(recinfo "$T/m")" == *"arch = amil"*"tensor classifier.0.weight F32 [1, 500]"* ]]
}

@test "train: the same seed gives the same bytes; another seed does not" {
    train -q -o "$T/a" -e 2 --seed 7 "$bags" > /dev/null
    train -q -o "$T/b" -e 2 --seed 7 "$bags" > /dev/null
    cmp "$T/a" "$T/b"
    train -q -o "$T/c" -e 2 --seed 8 "$bags" > /dev/null
    ! cmp -s "$T/a" "$T/c" || false
    # stdin, held in memory, trains the same as the file read each epoch
    train -q -o "$T/d" -e 2 --seed 7 < "$bags" > /dev/null
    cmp "$T/a" "$T/d"
}

@test "train: --resume from a checkpoint gives what an uninterrupted run gives" {
    train -q -o "$T/whole" -e 3 "$bags" > /dev/null
    train -q -o "$T/part" -e 2 "$bags" > /dev/null
    [ "$(recinfo "$T/part.ckpt" | awk '$1 == "epoch" { print $3 }')" = 2 ]
    run bash -c "train -q -o '$T/resumed' -e 3 --resume '$T/part.ckpt' '$bags'"
    [ "$status" -eq 0 ]
    [ "${#lines[@]}" -eq 2 ]            # the header and epoch 3 only
    [[ "${lines[1]}" == "3	"* ]]
    cmp "$T/whole" "$T/resumed"
    cmp "$T/whole.ckpt" "$T/resumed.ckpt"
}

@test "train: other architectures, heads and optimizers run and differ" {
    train -q -o "$T/gated" -e 1 --arch gated "$bags" > /dev/null
    [[ "$(recinfo "$T/gated")" == *"tensor attention_U.0.weight F32 [128, 500]"* ]]
    for opt in adamw sgd rmsprop; do
        train -q -o "$T/$opt" -e 1 --optimizer "$opt" --momentum 0.4 --lr 3e-4 "$bags" > /dev/null
    done
    ! cmp -s "$T/sgd" "$T/rmsprop" || false
    train -q -o "$T/four" -e 1 --classes 4 --hidden 64 --attention-dim 16 --branches 2 "$bags" > /dev/null
    run recinfo "$T/four"
    [[ "$output" == *"classes = 4"* && "$output" == *"tensor classifier.0.weight F32 [4, 128]"* ]]
}

@test "train: --normalize is the model's and featurize applies it" {
    train -q -o "$T/plain" -e 1 "$bags" > /dev/null
    train -q -o "$T/mnist" -e 1 --normalize mnist "$bags" > /dev/null
    [[ "$(recinfo "$T/plain")" == *"normalization = x/255"* ]]
    [[ "$(recinfo "$T/mnist")" == *"normalization = mnist"* ]]
    # the same weights, the same bag: other normalization, other features
    recpass -m normalization=mnist < "$T/plain" > "$T/renormed"
    head_bag() { bagify -l 1 "$IHC" | featurize -m "$1" | recinfo -t features | head -n 1; }
    [ "$(head_bag "$T/plain")" != "$(head_bag "$T/renormed")" ]
    recpass -m normalization=zca < "$T/plain" > "$T/bad"
    run bash -c "bagify '$IHC' | featurize -m '$T/bad' > /dev/null"
    [ "$status" -eq 1 ]
    [[ "$output" == *"normalization 'zca' is not x/255, mnist or imagenet" ]]
    run train -q -o "$T/x" --normalize zca "$bags"
    [ "$status" -eq 2 ]
    bagify -g -l 0 "$IHC" > "$T/gray.bags"
    run bash -c "train -q -o '$T/x' --normalize imagenet '$T/gray.bags' > /dev/null"
    [ "$status" -eq 1 ]
    [[ "$output" == *"--normalize imagenet needs RGB bags, not 1 channel" ]]
}

@test "train: the checkpoint is a model; classify gives what train's test scoring gives" {
    bagify -l 1 "$IHC" > "$T/one.bags"
    train -q -o "$T/m" -e 1 --test "$T/one.bags" "$bags" > "$T/log"
    # train's test loss is -log p(label); classify's probability must agree
    p=$(featurize -m "$T/m.ckpt" "$T/one.bags" | attend -m "$T/m.ckpt" | classify -m "$T/m.ckpt" -t | awk -F'\t' 'NR == 2 { print $4 }')
    loss=$(awk -F'\t' 'NR == 2 { print $5 }' "$T/log")
    awk -v p="$p" -v l="$loss" 'BEGIN { d = -log(p) - l; exit !(d < 1e-5 && d > -1e-5) }'
    cmp <(recinfo "$T/m" | grep tensor) <(recinfo "$T/m.ckpt" | grep tensor | grep -v optimizer)
}

@test "train: bad bags are refused before training; a NaN loss keeps the last checkpoint" {
    bagify "$BREAKHIS" > "$T/nolabel"
    bagify -l 2 "$BREAKHIS" > "$T/label2"
    { bagify -l 0 "$BREAKHIS"; bagify -g -l 1 "$IHC"; } > "$T/mixed"
    bagify -l 0 -p 32 "$BREAKHIS" > "$T/p32"
    for case in "nolabel:record 0: no label" "label2:record 0: label '2' is not a class" \
                "mixed:record 1: patches of 28×28×1 do not fit the model"; do
        run bash -c "train -q -o '$T/m' '$T/${case%%:*}' > '$T/out'"
        [ "$status" -eq 1 ] || { echo "$case: $status"; return 1; }
        [[ "$output" == "train: $T/${case%%:*}: ${case#*:}"* ]] || { echo "$case: $output"; return 1; }
        [ ! -e "$T/m" ]
    done
    # a NaN in the weights: the run stops, the checkpoint it began from stays
    train -q -o "$T/m" -e 1 "$bags" > /dev/null
    cp "$T/m.ckpt" "$T/good.ckpt"
    rm "$T/m"
    recpass -f classifier.0.weight=nan < "$T/m.ckpt" > "$T/nan.ckpt"
    run bash -c "train -q -o '$T/m' -e 2 --resume '$T/nan.ckpt' '$bags' > /dev/null"
    [ "$status" -eq 1 ]
    [[ "$output" == *"the loss is nan; the last checkpoint is $T/nan.ckpt" ]]
    cmp "$T/m.ckpt" "$T/good.ckpt"
    [ ! -e "$T/m" ]
    # and a checkpoint that is not one
    run train -q -o "$T/m" --resume "$BREAKHIS" "$bags"
    [ "$status" -eq 1 ]
}
