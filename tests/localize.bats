#!/usr/bin/env bats
# localize on bags whose attention and instance labels are known, so that
# every score can be worked out by hand; its table matching, its refusals,
# and one small run from MNIST digits through a trained model.

load lib

# Four gray strips of 28x28 cells, cut by bagify into 2, 4, 3 and 3 patches,
# with the test helper's attention: recpass -a index gives patch i of a bag
# of N the weight a_i = e^(i/8) / sum_j e^(j/8) on branch 0 (later patches
# weigh more) and the reverse order on branch 1 (-K 2).  N a_i, rounded:
#   N = 2:  0.9376 1.0624
#   N = 3:  0.8779 0.9948 1.1273
#   N = 4:  0.8210 0.9303 1.0542 1.1946
# The table gives the digits: a 9,1   b 1,9,1,9   c 9,9,9   d 1,2,3.
setup_file() {
    cd "$BATS_FILE_TMPDIR"
    mkdir s
    pgmmake 0.5 28 28 > cell.pgm
    for bag in a:2 b:4 c:3 d:3; do
        pnmcat -lr $(yes cell.pgm | head -n "${bag#*:}") > "s/${bag%:*}.pgm"
    done
    bagify -g -c none s/a.pgm s/b.pgm s/c.pgm s/d.pgm > plain.rec
    recpass -a index -K 2 plain.rec > att.rec
    table bags.tsv s/a.pgm:9,1 s/b.pgm:1,9,1,9 s/c.pgm:9,9,9 s/d.pgm:1,2,3
}

setup() {
    T=$BATS_TEST_TMPDIR
    F=$BATS_FILE_TMPDIR
}

# table FILE PATH:DIGITS...: a bags table as mnist-bags writes it (the label
# from the 9s, indices made up).
table() {
    local out=$1 bag path digits label
    shift
    printf 'file\tlabel\tlength\tdigits\tindices\n' > "$out"
    for bag in "$@"; do
        path=${bag%:*} digits=${bag#*:}
        label=0
        [[ ",$digits," == *,9,* ]] && label=1
        printf '%s\t%d\t%d\t%s\t%s\n' "$path" "$label" "$(tr , '\n' <<< "$digits" | wc -l)" \
            "$digits" "$(tr -c ',\n' 0 <<< "$digits")" >> "$out"
    done
}

@test "localize: usage" {
    run localize -h
    [ "$status" -eq 0 ]
    [[ "${lines[0]}" == "usage: localize -i BAGS.tsv "* ]]
    run localize "$F/att.rec"
    [ "$status" -eq 2 ]
    [[ "$output" == "localize: no instance labels: give -i BAGS.tsv"* ]]
    for bad in "--no-such-option" "-t x" "-t -1" "-t 1000001" "-b 64" "-b -1"; do
        run localize -i "$F/bags.tsv" $bad "$F/att.rec"
        [ "$status" -eq 2 ] || { echo "localize $bad: $status"; return 1; }
        [[ "$output" == *"usage: localize "* ]] || { echo "localize $bad: $output"; return 1; }
    done
    run localize -i "$F/bags.tsv" "$F/att.rec" "$F/att.rec"
    [ "$status" -eq 2 ]
    [ "${lines[0]}" = "localize: $F/att.rec: one FILE at most" ]
    [[ "${lines[1]}" == "usage: localize "* ]]
}

@test "localize: the scores of a hand-made case, worked out" {
    # Target 9, branch 0.  Positive bags a, b, c; 9 instances.
    #   targets: a0 .9376  b1 .9303  b3 1.1946  c0 .8779  c1 .9948  c2 1.1273
    #   others:  a1 1.0624 b0 .8210  b2 1.0542
    #   pairs won of 6 x 3: a0 1, b1 1, b3 3, c0 1, c1 1, c2 3 = 10/18 = 0.5556
    #   per bag: a 0/1, b (b1>b0, b3>b0, b3>b2) 3/4; c has no other: 0.375
    #   most attended is the last patch: a1 (a 1), b3 (9), c2 (9): 2/3
    run localize -i "$F/bags.tsv" "$F/att.rec"
    [ "$status" -eq 0 ]
    [ "$output" = "$(printf 'bags\t4\npositive_bags\t3\ninstances\t9\nauc\t0.5556\nbag_auc\t0.3750\ntop1\t0.6667')" ]
    run localize -j -i "$F/bags.tsv" "$F/att.rec"
    [ "$output" = '{"bags":4,"positive_bags":3,"instances":9,"auc":0.555556,"bag_auc":0.375,"top1":0.666667}' ]
    # Branch 1, the order reversed: N a_i of patch i is that of N-1-i above.
    #   targets: a0 1.0624 b1 1.0542 b3 .8210  c0 1.1273 c1 .9948 c2 .8779
    #   others:  a1 .9376  b0 1.1946 b2 .9303
    #   pairs: a0 2, b1 2, b3 0, c0 2, c1 2, c2 0 = 8/18 = 0.4444
    #   per bag: a 1/1, b (b1>b2) 1/4: 0.625; first patches a0, b0, c0: 2/3
    run localize -b 1 -i "$F/bags.tsv" "$F/att.rec"
    [ "$output" = "$(printf 'bags\t4\npositive_bags\t3\ninstances\t9\nauc\t0.4444\nbag_auc\t0.6250\ntop1\t0.6667')" ]
    # Target 1, branch 0: positive bags a, b, d; 9 instances.
    #   targets: a1 1.0624 b0 .8210  b2 1.0542 d0 .8779
    #   others:  a0 .9376  b1 .9303  b3 1.1946 d1 .9948 d2 1.1273
    #   pairs: a1 3, b0 0, b2 3, d0 0 = 6/20 = 0.3000
    #   per bag: a 1/1, b (b2>b1) 1/4, d 0/2: 1.25/3 = 0.4167
    #   last patches a1 (1), b3 (9), d2 (3): 1/3
    run localize -t 1 -i "$F/bags.tsv" "$F/att.rec"
    [ "$output" = "$(printf 'bags\t4\npositive_bags\t3\ninstances\t9\nauc\t0.3000\nbag_auc\t0.4167\ntop1\t0.3333')" ]
    # from standard input, by - or by no file: the same
    want=$(localize -i "$F/bags.tsv" "$F/att.rec")
    [ "$(localize -i "$F/bags.tsv" - < "$F/att.rec")" = "$want" ]
    [ "$(localize -i "$F/bags.tsv" < "$F/att.rec")" = "$want" ]
}

@test "localize: negative bags are ignored; bags found by path, else by base name" {
    want=$(localize -i "$F/bags.tsv" "$F/att.rec")
    # without the negative bag d, only the count of bags changes
    recpass -a index -K 2 <(bagify -g -c none "$F/s/a.pgm" "$F/s/b.pgm" "$F/s/c.pgm") > "$T/abc.rec"
    [ "$(localize -i "$F/bags.tsv" "$T/abc.rec")" = "${want/bags	4/bags	3}" ]
    # d made positive (a 9 among its digits) is no longer ignored
    table "$T/d9.tsv" s/a.pgm:9,1 s/b.pgm:1,9,1,9 s/c.pgm:9,9,9 s/d.pgm:1,2,9
    [ "$(localize -i "$T/d9.tsv" "$F/att.rec" | sed -n 2p)" = "positive_bags	4" ]
    # the label column is not read: d labelled 1 is still negative
    sed 's#^s/d.pgm\t0#s/d.pgm\t1#' "$F/bags.tsv" > "$T/label.tsv"
    ! cmp -s "$F/bags.tsv" "$T/label.tsv" || false
    [ "$(localize -i "$T/label.tsv" "$F/att.rec")" = "$want" ]
    # a table written elsewhere: the same files by base name
    table "$T/elsewhere.tsv" /data/run/1/a.pgm:9,1 /data/run/1/b.pgm:1,9,1,9 \
        /data/run/1/c.pgm:9,9,9 /data/run/0/d.pgm:1,2,3
    [ "$(localize -i "$T/elsewhere.tsv" "$F/att.rec")" = "$want" ]
    # records cut from another folder: sources a.pgm, b.pgm, ...
    (cd "$F/s" && bagify -g -c none a.pgm b.pgm c.pgm d.pgm) | recpass -a index > "$T/here.rec"
    [ "$(localize -i "$F/bags.tsv" "$T/here.rec")" = "$want" ]
    # the same path wins over an earlier row of the same base name: a decoy
    # b.pgm that is all 9s would make b hold no other and change every score
    table "$T/decoy.tsv" x/b.pgm:9,9,9,9 s/a.pgm:9,1 s/b.pgm:1,9,1,9 s/c.pgm:9,9,9 s/d.pgm:1,2,3
    [ "$(localize -i "$T/decoy.tsv" "$F/att.rec")" = "$want" ]
    # ... and without it, two rows of the same base name are an error: no
    # guess at which bag was meant
    table "$T/two.tsv" s/a.pgm:9,1 x/b.pgm:9,9,9,9 y/b.pgm:1,9,1,9 s/c.pgm:9,9,9 s/d.pgm:1,2,3
    run bash -c "localize -i '$T/two.tsv' '$F/att.rec' > '$T/out'"
    [ "$status" -eq 1 ]
    [[ "$output" == *"record 1: s/b.pgm matches several rows by base name in $T/two.tsv" ]]
    assert_empty "$T/out"
    # ties: cells all alike weigh alike (recpass -a darkness); a pair of
    # equal scores counts one half, and the first patch is the most attended
    recpass -a darkness <(bagify -g -c none "$F/s/a.pgm") > "$T/even.rec"
    [ "$(recinfo -t attention "$T/even.rec" | xargs)" = "0.5 0.5" ]
    table "$T/9-1.tsv" s/a.pgm:9,1
    [ "$(localize -i "$T/9-1.tsv" "$T/even.rec" | tail -n 3 | xargs)" = "auc 0.5000 bag_auc 0.5000 top1 1.0000" ]
    table "$T/1-9.tsv" s/a.pgm:1,9
    [ "$(localize -i "$T/1-9.tsv" "$T/even.rec" | tail -n 1)" = "top1	0.0000" ]
    # no positive bag holds both kinds: both AUCs undefined, top1 still 1
    table "$T/nines.tsv" s/a.pgm:9,9 s/c.pgm:9,9,9
    recpass -a index <(bagify -g -c none "$F/s/a.pgm" "$F/s/c.pgm") > "$T/ac.rec"
    run localize -i "$T/nines.tsv" "$T/ac.rec"
    [ "$output" = "$(printf 'bags\t2\npositive_bags\t2\ninstances\t5\nauc\tnan\nbag_auc\tnan\ntop1\t1.0000')" ]
    run localize -j -i "$T/nines.tsv" "$T/ac.rec"
    [ "$output" = '{"bags":2,"positive_bags":2,"instances":5,"auc":null,"bag_auc":null,"top1":1}' ]
}

@test "localize: bad tables and records exit 1 with a message, print nothing" {
    table "$T/only-b.tsv" s/b.pgm:1,9,1,9
    table "$T/long-a.tsv" s/a.pgm:9,1,1
    printf 'name\tlabel\tlength\tdigits\tindices\n' > "$T/header.tsv"
    printf 'file\tlabel\tlength\n' > "$T/short-header.tsv"
    printf 'file\tlabel\tlength\tdigits\tindices\n' > "$T/empty.tsv"
    printf 'file\tlabel\tlength\tdigits\ns/a.pgm\t1\t2\t9\n' > "$T/few.tsv"
    printf 'file\tlabel\tlength\tdigits\ns/a.pgm\t1\t0\t\n' > "$T/zero.tsv"
    printf 'file\tlabel\tlength\tdigits\ns/a.pgm\t1\t2\t9,x\n' > "$T/nan.tsv"
    printf 'file\tlabel\tlength\tdigits\ns/a.pgm\t1\t2\n' > "$T/fields.tsv"
    echo "not records" > "$T/garbage.rec"
    : > "$T/empty.rec"
    att=$F/att.rec bags=$F/bags.tsv
    for case in "-i $T/only-b.tsv $att|localize: $att: record 0: s/a.pgm is not in $T/only-b.tsv" \
                "-i $T/long-a.tsv $att|localize: $att: record 0: 2 patches, but s/a.pgm has 3 instances (cut strips with bagify -c none)" \
                "-t 7 -i $bags $att|localize: no positive bags among 4 records: nothing to localize" \
                "-i $bags $T/empty.rec|localize: $T/empty.rec: no records" \
                "-i $bags $F/plain.rec|localize: $F/plain.rec: record 0: no tensor 'attention' (run attend first)" \
                "-b 2 -i $bags $att|localize: $att: record 0: --branch 2: the attention has 2 branches" \
                "-i $T/header.tsv $att|localize: $T/header.tsv: line 1: not the header of a bags table" \
                "-i $T/short-header.tsv $att|localize: $T/short-header.tsv: line 1: not the header of a bags table" \
                "-i $T/empty.tsv $att|localize: $T/empty.tsv: no bags" \
                "-i $T/few.tsv $att|localize: $T/few.tsv: line 2: 1 digits for a bag of 2" \
                "-i $T/zero.tsv $att|localize: $T/zero.tsv: line 2: length: 0 is out of range" \
                "-i $T/nan.tsv $att|localize: $T/nan.tsv: line 2: digit 2: 'x' is not an integer" \
                "-i $T/fields.tsv $att|localize: $T/fields.tsv: line 2: fewer than 4 fields" \
                "-i $T/missing.tsv $att|localize: $T/missing.tsv: No such file or directory" \
                "-i $bags $T/missing.rec|localize: $T/missing.rec: No such file or directory" \
                "-i $bags $T/garbage.rec|localize: $T/garbage.rec: record 0: "; do
        run bash -c "localize ${case%%|*} > '$T/out'"
        [ "$status" -eq 1 ] || { echo "localize ${case%%|*}: status $status"; return 1; }
        [[ "$output" == "${case#*|}"* ]] || { echo "localize ${case%%|*}: $output"; return 1; }
        assert_empty "$T/out"
    done
    # a record without attention after good ones: still nothing printed
    cat "$F/att.rec" "$F/plain.rec" > "$T/mixed.rec"
    run bash -c "localize -i '$bags' '$T/mixed.rec' > '$T/out'"
    [ "$status" -eq 1 ]
    [ "$output" = "localize: $T/mixed.rec: record 4: no tensor 'attention' (run attend first)" ]
    assert_empty "$T/out"
}

@test "localize: MNIST digits through a model trained one epoch" {
    cd "$T"
    mnist-bags -o m -n 20 -r 3 "$DATA/mnist/train-images-idx3-ubyte.gz" \
        "$DATA/mnist/train-labels-idx1-ubyte.gz" 2> /dev/null
    bagify -g -c none -L dir m/*/*.png > train.bags
    train -q -o model -e 1 --hidden 20 --attention-dim 8 train.bags > log.tsv
    featurize -m model train.bags | attend -m model > att.rec
    run localize -i m/bags.tsv att.rec
    echo "$output"
    [ "$status" -eq 0 ]
    positives=$(awk -F'\t' 'NR > 1 && $2 == 1' m/bags.tsv | wc -l)
    instances=$(awk -F'\t' 'NR > 1 && $2 == 1 { n += $3 } END { print n }' m/bags.tsv)
    [ "$positives" -gt 0 ]
    [ "$positives" -lt 20 ]
    [ "${lines[0]}" = "bags	20" ]
    [ "${lines[1]}" = "positive_bags	$positives" ]
    [ "${lines[2]}" = "instances	$instances" ]
    for k in 3 4 5; do
        [[ "${lines[k]}" =~ ^(auc|bag_auc|top1)$'\t'(0\.[0-9]{4}|1\.0000)$ ]] ||
            { echo "not in [0, 1]: ${lines[k]}"; return 1; }
    done
    # the JSON says the same
    [[ "$(localize -j -i m/bags.tsv att.rec)" == "{\"bags\":20,\"positive_bags\":$positives,\"instances\":$instances,\"auc\":"* ]]
}
