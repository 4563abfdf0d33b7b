#!/usr/bin/env bats
# train on small bags cut from the two real images (BreakHis H&E crops are
# class 0, IHC crops class 1): it learns, it is deterministic, it resumes to
# the same bytes, and it refuses bad bags.

load lib

setup_file() {
    local d=$BATS_FILE_TMPDIR
    # six 112x112 crops of each: 16-patch bags
    crop_bags "$d" 0:0 120:0 240:100 360:200 480:300 580:340 > "$d/train.bags"
}

setup() {
    T=$BATS_TEST_TMPDIR
    bags=$BATS_FILE_TMPDIR/train.bags
}

# values MODEL: every value of every tensor, in the record's order, a line
# each (recinfo prints floats to 9 digits: each F32 exactly).
values() {
    local t
    for t in $(recinfo "$1" | awk '$1 == "tensor" { print $2 }'); do
        recinfo -t "$t" "$1" | tr '\t' '\n'
    done
}

@test "train: usage" {
    run train -h
    [ "$status" -eq 0 ]
    [[ "${lines[0]}" == "usage: train "* ]]
    for bad in "" "-o m --arch resnet" "-o m --optimizer lbfgs" "-o m --epochs -1" \
               "-o m --lr x" "-o m --classes 1" "-o m --test -" "-o m --batch 2" \
               "-o m --weights w.st" "-o m --arch net --hidden 10" "-o m --arch net --batch 0"; do
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
    [ -s "$T/m" ]
    [ -s "$T/m.ckpt" ]
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
    # a bag family trains on one bag a step, whatever batch a file says
    recpass -m batch=4 < "$T/part.ckpt" > "$T/batch4.ckpt"
    train -q -o "$T/resumed4" -e 3 --resume "$T/batch4.ckpt" "$bags" > /dev/null
    cmp "$T/whole" "$T/resumed4"
}

# "Another seed gives another model" above also draws other weights; here
# the weights are held fixed: the same checkpoint of epoch 1, its seed 7 or
# (rewritten) 8, resumed for epoch 2, whose order of bags is drawn from
# (seed, 2) and is the only thing the seed then changes (no dropout, no
# augmentation).
@test "train: the order of bags comes from the seed, whatever the weights" {
    train -q -o "$T/start" -e 1 --seed 7 --hidden 16 --attention-dim 8 "$bags" > /dev/null
    recpass -m seed=7 < "$T/start.ckpt" > "$T/seed7.ckpt"
    recpass -m seed=8 < "$T/start.ckpt" > "$T/seed8.ckpt"
    train -q -o "$T/as-run" -e 2 --resume "$T/start.ckpt" "$bags" > /dev/null
    train -q -o "$T/seven" -e 2 --resume "$T/seed7.ckpt" "$bags" > /dev/null
    train -q -o "$T/eight" -e 2 --resume "$T/seed8.ckpt" "$bags" > /dev/null
    [ "$(recinfo "$T/eight" | awk '$1 == "seed" { print $3 }')" = 8 ]
    values "$T/as-run" > "$T/as-run.values"
    values "$T/seven" > "$T/seven.values"
    values "$T/eight" > "$T/eight.values"
    cmp "$T/as-run.values" "$T/seven.values"      # rewriting the record changes nothing
    ! cmp -s "$T/seven.values" "$T/eight.values" ||
        { echo "seeds 7 and 8 gave epoch 2 the same weights"; return 1; }
}

# Adam's first step moves each weight by lr g / (|g| + eps), lr to 1e-5 of
# it unless |g| is near eps (1e-8) or 0, so the weights of one bag's one
# step (decay 0) say which lr the optimizer used: 2.5e-4, neither
# train's default (1e-4) nor Adam's (1e-3).  And --lr 0 leaves every weight
# as it began, over two steps with the default L2 decay.
@test "train: attention-MIL's Adam steps by --lr" {
    pngtopam "$BREAKHIS" | pamcut -width 112 -height 112 | bagify -l 1 - > "$T/one.bag"
    small="--hidden 16 --attention-dim 8 --seed 3"
    train -q -o "$T/start" -e 0 $small "$T/one.bag" > /dev/null
    train -q -o "$T/step" -e 1 --lr 2.5e-4 --decay 0 $small "$T/one.bag" > /dev/null
    train -q -o "$T/still" -e 2 --lr 0 $small "$T/one.bag" > /dev/null
    values "$T/start" > "$T/start.values"
    values "$T/step" > "$T/step.values"
    values "$T/still" > "$T/still.values"
    # the largest move is lr; of the weights that moved (some units are
    # dead: their gradients are 0), 90 % or more moved by lr, within 1 %
    paste "$T/start.values" "$T/step.values" |
        awk -v lr=2.5e-4 '{ d = $2 - $1; d = d < 0 ? -d : d; if (d > top) top = d
                            moved += d > 0; at_lr += d > 0.99 * lr && d < 1.01 * lr }
                          END { printf "largest move %.6g lr; %d of %d moved by lr\n",
                                       top / lr, at_lr, moved
                                exit !(top > 0.99 * lr && top < 1.01 * lr && at_lr >= 0.9 * moved) }'
    cmp "$T/start.values" "$T/still.values"
}

@test "train: other architectures, heads and optimizers run and differ" {
    train -q -o "$T/gated" -e 1 --arch gated "$bags" > /dev/null
    [[ "$(recinfo "$T/gated")" == *"tensor attention_U.0.weight F32 [128, 500]"* ]]
    for opt in adam adamw sgd rmsprop; do
        train -q -o "$T/$opt" -e 1 --optimizer "$opt" --momentum 0.4 --lr 3e-4 "$bags" > /dev/null
    done
    # each optimizer its own weights (adamw's decay is not adam's L2)
    for pair in "adam adamw" "adam sgd" "adam rmsprop" "adamw sgd" "adamw rmsprop" "sgd rmsprop"; do
        set -- $pair
        ! cmp -s "$T/$1" "$T/$2" || { echo "$1 = $2"; return 1; }
    done
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
    # a NaN in the weights: refused when the checkpoint loads
    train -q -o "$T/m" -e 1 "$bags" > /dev/null
    cp "$T/m.ckpt" "$T/good.ckpt"
    rm "$T/m"
    recpass -f classifier.0.weight=nan < "$T/m.ckpt" > "$T/nan.ckpt"
    run bash -c "train -q -o '$T/m' -e 2 --resume '$T/nan.ckpt' '$bags' > /dev/null"
    [ "$status" -eq 1 ]
    [ "$output" = "train: $T/nan.ckpt: classifier.0.weight[0, 0] is nan, not a finite number" ]
    cmp "$T/m.ckpt" "$T/good.ckpt"
    [ ! -e "$T/m" ]
    # a loss that overflows to NaN (finite features of 3e38 through CLAM's
    # head): the run stops, the checkpoint it began from stays
    featurize -m "$M" "$bags" > "$T/features"
    train --arch clam -q -o "$T/c" -e 1 "$T/features" > /dev/null
    cp "$T/c.ckpt" "$T/good.ckpt"
    rm "$T/c"
    recpass -f features=3e38 "$T/features" > "$T/huge"
    run bash -c "train --arch clam -q -o '$T/c' -e 2 --resume '$T/c.ckpt' '$T/huge' > /dev/null"
    [ "$status" -eq 1 ]
    [[ "$output" == *"the loss is nan; the last checkpoint is $T/c.ckpt" ]]
    cmp "$T/c.ckpt" "$T/good.ckpt"
    [ ! -e "$T/c" ]
    # and a checkpoint that is not one
    run train -q -o "$T/m" --resume "$BREAKHIS" "$bags"
    [ "$status" -eq 1 ]
}

# ---- CNN baselines -----------------------------------------------------------

@test "train --arch net: it learns to tell the BreakHis image from its negative" {
    synthetic_images "$T"
    train --arch net -o "$T/net.st" -e 8 --lr 1e-4 -b 6 -q "$T/images" > "$T/log"
    [ "$(wc -l < "$T/log")" -eq 9 ]
    classify -m "$T/net.st" -t "$T/images" > "$T/table"
    cat "$T/table"
    evaluate < "$T/table" > "$T/metrics"
    grep -qx 'accuracy	1.0000' "$T/metrics" || { cat "$T/metrics"; return 1; }
    # the model says what it is
    run recinfo "$T/net.st"
    [[ "$output" == *"arch = net"* && "$output" == *"size = 128"* && "$output" == *"epochs = 8"* ]]
}

@test "train, CNN: the paper's baseline defaults, a checkpoint each epoch, the same bytes on resume" {
    synthetic_images "$T"
    train --arch net -o "$T/a.st" -e 1 -q "$T/images" > /dev/null
    run recinfo "$T/a.st.ckpt"
    for kv in "kind = checkpoint" "optimizer = rmsprop" "lr = 0.00029999999999999997" \
              "momentum = 0.40000000000000002" "decay = 0" "batch = 32" "epoch = 1"; do
        [[ "$output" == *"$kv"* ]] || { echo "no $kv: $output"; return 1; }
    done
    [[ "$output" == *"tensor optimizer.fc2.weight.m F32 [2, 1024]"* ]]
    train --arch net -o "$T/b.st" -e 2 -b 4 -q "$T/images" > /dev/null
    train --arch net -o "$T/c.st" -e 1 -b 4 -q "$T/images" > /dev/null
    train --arch net -o "$T/c.st" -e 2 -q --resume "$T/c.st.ckpt" "$T/images" > "$T/log"
    cmp "$T/b.st" "$T/c.st"
    [ "$(cut -f1 "$T/log" | tr '\n' ' ')" = "epoch 2 " ]
    train --arch net -o "$T/d.st" -e 2 -b 4 -q "$T/images" > /dev/null
    cmp "$T/b.st" "$T/d.st"                  # same seed, same bytes
    train --arch net -o "$T/e.st" -e 2 -b 4 -s 2 -q "$T/images" > /dev/null
    ! cmp -s "$T/b.st" "$T/e.st" || false
}

@test "train, CNN: a frozen backbone on cached features gives the bytes it gives inside" {
    synthetic_images "$T"
    cnnmodel resnet18 > "$T/init.st"
    featurize -m "$T/init.st" "$T/images" > "$T/features"
    recinfo "$T/features" | grep -q 'tensor features F32 \[12, 512\]'
    train --arch resnet18 -w "$T/init.st" -o "$T/inside.st" -e 2 -b 8 -q "$T/images" > "$T/log1"
    train --arch resnet18 -w "$T/init.st" -o "$T/cached.st" -e 2 -b 8 -q "$T/features" > "$T/log2"
    cmp "$T/inside.st" "$T/cached.st"
    cmp <(cut -f1-8 "$T/log1") <(cut -f1-8 "$T/log2")
    # only the last layer moved: the backbone's features are the same
    cmp <(featurize -m "$T/cached.st" "$T/images" | recinfo -t features) \
        <(recinfo -t features "$T/features")
    # and the images and their features are classified alike
    cmp <(classify -m "$T/cached.st" -t "$T/images") <(classify -m "$T/cached.st" -t "$T/features")
    # the checkpoint holds the optimizer's state of the last layer alone
    run recinfo "$T/cached.st.ckpt"
    [[ "$output" == *"tensor optimizer.fc.weight.v F32 [2, 512]"* ]]
    [[ "$output" != *"optimizer.conv1"* ]]
}

@test "train, CNN: bad input is refused before training" {
    synthetic_images "$T"
    bagify -l 0 "$BREAKHIS" > "$T/bag"
    pngtopam "$BREAKHIS" | pamcut -width 100 -height 300 | bagify -w -l 0 - > "$T/small"
    bagify -w "$BREAKHIS" > "$T/nolabel"
    bagify -w -l 2 "$BREAKHIS" > "$T/label2"
    cnnmodel resnet18 > "$T/r.st"
    featurize -m "$T/r.st" "$T/images" > "$T/features"
    cat "$T/images" "$T/features" > "$T/mixed"
    cnnmodel net > "$T/net.st"
    for case in "net:bag:$T/bag: record 0: no tensor 'image' (bagify -w writes whole images)" \
                "net:small:$T/small: record 0: an image of 100×300, smaller than net's 128×128 input" \
                "net:nolabel:$T/nolabel: record 0: no label (bagify -l or -L gives one)" \
                "net:label2:$T/label2: record 0: label '2' is not a class of the model (0 to 1)" \
                "net:features:$T/features: record 0: net trains on images (bagify -w), not cached features" \
                "resnet18 -w $T/r.st:mixed:$T/mixed: record 6: cached features, but the records before it hold images"; do
        IFS=: read -r arch file message <<< "$case"
        run bash -c "train --arch $arch -o '$T/m.st' -q '$T/$file' > '$T/out'"
        [ "$status" -eq 1 ] || { echo "$case: status $status"; return 1; }
        [ "$output" = "train: $message" ] || { echo "$case: $output"; return 1; }
        [ ! -e "$T/m.st" ]
        [ ! -e "$T/m.st.ckpt" ]
    done
    run train --arch vgg19 -w "$T/net.st" -o "$T/m.st" -q "$T/images"
    [ "$status" -eq 1 ]
    [ "$output" = "train: $T/net.st: tensor 'features.0.weight' is missing or not F32 of the shape vgg19 needs" ]
    train --arch net -o "$T/n.st" -e 1 -q "$T/images" > /dev/null
    run train --arch resnet18 -o "$T/m.st" -q --resume "$T/n.st.ckpt" "$T/images"
    [ "$status" -eq 1 ]
    [ "$output" = "train: $T/n.st.ckpt: a checkpoint of net, not resnet18" ]
    run train -o "$T/m.st" -q --resume "$T/n.st.ckpt" "$T/images"
    [ "$status" -eq 1 ]
    [ "$output" = "train: $T/n.st.ckpt: a checkpoint of a CNN model, not of an attention-MIL model" ]
}

@test "train --weights: torchvision's 1000-class file gives the backbone and its normalization; the head is new" {
    synthetic_images "$T"
    cnnmodel resnet18 1000 imagenet > "$T/imagenet.st"
    train --arch resnet18 -w "$T/imagenet.st" -e 0 -o "$T/m.st" -q "$T/images" > /dev/null
    run recinfo "$T/m.st"
    [[ "$output" == *"normalization = imagenet"* && "$output" == *"tensor fc.weight F32 [2, 512]"* ]]
    for t in conv1.weight layer4.1.bn2.running_var layer3.0.downsample.0.weight; do
        cmp <(recinfo -t $t "$T/m.st") <(recinfo -t $t "$T/imagenet.st") || { echo "$t"; return 1; }
    done
    # the new head is PyTorch's default initialization for the seed, as without -w
    train --arch resnet18 -e 0 -o "$T/plain.st" -q "$T/images" > /dev/null
    cmp <(recinfo -t fc.weight "$T/m.st") <(recinfo -t fc.weight "$T/plain.st")
    recinfo "$T/plain.st" | grep -qx '  normalization = x/255'
    # --normalize has the last word
    train --arch resnet18 -w "$T/imagenet.st" --normalize none -e 0 -o "$T/n.st" -q "$T/images" > /dev/null
    recinfo "$T/n.st" | grep -qx '  normalization = x/255'
}

@test "train: an interrupt says where the last checkpoint is and how to go on" {
    { bagify -l 1 "$BREAKHIS"; bagify -l 0 "$IHC"; } > "$T/two"
    train -o "$T/m" -e 100000 "$T/two" > /dev/null 2> "$T/err" &
    local pid=$!
    for i in $(seq 300); do
        [ -e "$T/m.ckpt" ] && break
        sleep 0.1
    done
    [ -e "$T/m.ckpt" ]
    # SIGTERM: a background job of a script ignores SIGINT; both are caught
    kill -TERM "$pid"
    local code=0
    wait "$pid" || code=$?
    [ "$code" -eq 143 ]   # killed by SIGTERM, as it should be, after the message
    grep -q "^train: interrupted; epoch [0-9]* is saved in $T/m.ckpt; to go on:$" "$T/err" ||
        { cat "$T/err"; return 1; }
    cmd=$(tail -n 1 "$T/err")
    [ "$cmd" = "  train -o $T/m -e 100000 $T/two --resume $T/m.ckpt" ]
    [ -z "$(find "$T" -name '*.tmp.*')" ]
    # the command it prints goes on from there (to one more epoch, to be quick)
    epoch=$(sed -n 's/^train: interrupted; epoch \([0-9]*\) is saved.*/\1/p' "$T/err")
    ${cmd/-e 100000/-e $((epoch + 1))} > "$T/log" 2> /dev/null
    [ "$(tail -n +2 "$T/log" | cut -f 1)" = "$((epoch + 1))" ]
}
