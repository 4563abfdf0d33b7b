#!/usr/bin/env bats
# mnist-bags on the committed MNIST subset (1000 training, 500 test digits):
# numpy's RandomState replayed draw for draw, the PNG strips cut back into
# the very MNIST digits, bad IDX files refused before anything is written,
# and what the seed does.

load lib

setup() {
    T=$BATS_TEST_TMPDIR
    TRAIN_IMAGES=$DATA/mnist/train-images-idx3-ubyte.gz
    TRAIN_LABELS=$DATA/mnist/train-labels-idx1-ubyte.gz
    TEST_IMAGES=$DATA/mnist/t10k-images-idx3-ubyte.gz
    TEST_LABELS=$DATA/mnist/t10k-labels-idx1-ubyte.gz
}

# replay TSV LABELS SEED MEAN SD TARGET: Ilse et al.'s _create_bags loop
# (dataloader.py) with numpy, checked against every row of TSV; prints
# "N bags agree".
replay() {
    "$py" - "$@" <<'EOF'
import gzip, sys
import numpy as np
tsv, labels_path, seed, mean, sd, target = sys.argv[1:]
labels = np.frombuffer(gzip.open(labels_path).read()[8:], np.uint8)
rows = [line.rstrip("\n").split("\t") for line in open(tsv)]
assert rows[0] == ["file", "label", "length", "digits", "indices"], rows[0]
r = np.random.RandomState(int(seed))
for b, row in enumerate(rows[1:]):
    bag_length = int(r.normal(float(mean), float(sd), 1)[0])
    if bag_length < 1:
        bag_length = 1
    indices = r.randint(0, len(labels), bag_length)
    want = [str(bag_length), ",".join(str(labels[i]) for i in indices),
            ",".join(str(i) for i in indices)]
    assert row[2:] == want, "bag %d: %s, numpy %s" % (b, row[2:], want)
    label = int((labels[indices] == int(target)).any())
    assert row[1] == str(label), "bag %d: label %s, numpy %d" % (b, row[1], label)
    assert row[0].endswith("/%d/bag-%05d.png" % (label, b)), row[0]
print(len(rows) - 1, "bags agree")
EOF
}

# idx_digit IDX INDEX: the 784 pixels of digit INDEX of the plain IDX
# file of images, one a line, straight from its bytes (16 of header).
idx_digit() {
    od -An -v -tu1 -j $((16 + $2 * 784)) -N 784 "$1" | tr -s ' ' '\n' | sed '/^$/d'
}

@test "mnist-bags: usage" {
    run mnist-bags -h
    [ "$status" -eq 0 ]
    [[ "${lines[0]}" == "usage: mnist-bags -o DIR "* ]]
    run mnist-bags --no-such-option -o "$T/d" "$TRAIN_IMAGES" "$TRAIN_LABELS"
    [ "$status" -eq 2 ]
    [[ "$output" == *"usage: mnist-bags "* ]]
    run mnist-bags "$TRAIN_IMAGES" "$TRAIN_LABELS"
    [ "$status" -eq 2 ]
    [[ "$output" == "mnist-bags: no output: give -o DIR"* ]]
    for files in "" "$TRAIN_IMAGES" "$TRAIN_IMAGES $TRAIN_LABELS $TRAIN_LABELS"; do
        run mnist-bags -o "$T/d" $files
        [ "$status" -eq 2 ] || { echo "files '$files': $status"; return 1; }
        [[ "$output" == "mnist-bags: give the IMAGES and LABELS files"* ]]
    done
    for bad in "-n 0" "-n x" "-n 10000001" "-m -1" "-m 1001" "-s nan" "-s -0.5" \
               "-t 10" "-t -1" "-r -1" "-r 4294967296" "-r 1.5"; do
        run mnist-bags -o "$T/d" $bad "$TRAIN_IMAGES" "$TRAIN_LABELS"
        [ "$status" -eq 2 ] || { echo "mnist-bags $bad: $status"; return 1; }
        [[ "$output" == "mnist-bags: -${bad:1:1}: "* ]] || { echo "mnist-bags $bad: $output"; return 1; }
    done
    # misuse is found before anything is made
    [ ! -e "$T/d" ]
}

@test "mnist-bags: lengths, indices and labels are numpy RandomState's (Ilse et al.'s loop)" {
    py=$(numpy_python) || skip "python3-numpy is missing: numpy agreement not checked"
    run bash -c "mnist-bags -o '$T/d' -n 30 -r 7 '$TRAIN_IMAGES' '$TRAIN_LABELS' > '$T/out'"
    [ "$status" -eq 0 ]
    assert_empty "$T/out"
    run replay "$T/d/bags.tsv" "$TRAIN_LABELS" 7 10 2 9
    echo "$output"
    [ "$status" -eq 0 ]
    [ "$output" = "30 bags agree" ]
    # the test digits (500: randint's mask is 511, not 1023), the same seed
    mnist-bags -o "$T/t" -n 30 -r 7 "$TEST_IMAGES" "$TEST_LABELS" 2> /dev/null
    run replay "$T/t/bags.tsv" "$TEST_LABELS" 7 10 2 9
    echo "$output"
    [ "$output" = "30 bags agree" ]
    # short bags: many draws below 1, cut to one digit; target 3
    mnist-bags -o "$T/s" -n 50 -m 2 -s 3 -t 3 -r 11 "$TRAIN_IMAGES" "$TRAIN_LABELS" 2> /dev/null
    [ "$(awk -F'\t' '$3 == 1' "$T/s/bags.tsv" | wc -l)" -ge 10 ]
    run replay "$T/s/bags.tsv" "$TRAIN_LABELS" 11 2 3 3
    echo "$output"
    [ "$output" = "50 bags agree" ]
}

@test "mnist-bags: each bag is a gray strip of its MNIST digits; bagify cuts it back" {
    mnist-bags -o "$T/d" -n 30 -r 7 "$TRAIN_IMAGES" "$TRAIN_LABELS" 2> /dev/null
    # every strip: 28 rows, 28 x length columns, one gray 8-bit channel
    while IFS=$'\t' read -r file label length digits indices; do
        want="PGM raw, $((28 * length)) by 28  maxval 255"
        got=$(pngtopam "$file" | pamfile -)
        [[ "$got" == *"$want" ]] || { echo "$file: $got, want $want"; return 1; }
        # the PNG itself: IHDR's bit depth 8, colour type 0 (gray)
        [ "$(od -An -tu1 -j 24 -N 2 "$file" | xargs)" = "8 0" ] || { echo "$file: not 8-bit gray"; return 1; }
    done < <(tail -n +2 "$T/d/bags.tsv")
    [ "$(ls "$T/d/0" "$T/d/1" | grep -c '^bag-[0-9]\{5\}\.png$')" -eq 30 ]
    # cut back: one record per bag, `length` patches, the label of its folder
    bagify -g -c none -L dir "$T"/d/*/*.png > "$T/bags"
    recinfo "$T/bags" | awk '$1 == "source" { s = $3 } $1 == "label" { l = $3 }
        $1 == "tensor" && $2 == "patches" { sub(/^\[/, "", $4); sub(/,$/, "", $4); print s "\t" l "\t" $4 }' |
        sort > "$T/got"
    tail -n +2 "$T/d/bags.tsv" | cut -f 1-3 | sort > "$T/want"
    [ "$(wc -l < "$T/want")" -eq 30 ]
    diff "$T/want" "$T/got"
    # bag 0's patches are MNIST's digits at its indices, byte for byte, as
    # bagify cuts them and as netpbm reads the PNG
    row=$(sed -n 2p "$T/d/bags.tsv")
    file=$(cut -f 1 <<< "$row")
    IFS=, read -r -a index <<< "$(cut -f 5 <<< "$row")"
    bagify -g -c none "$file" | recinfo -t patches > "$T/patches"
    [ "$(wc -l < "$T/patches")" -eq $((784 * ${#index[@]})) ]
    gzip -dc "$TRAIN_IMAGES" > "$T/images"
    for k in "${!index[@]}"; do
        idx_digit "$T/images" "${index[k]}" > "$T/digit"
        [ "$(sort -u "$T/digit" | wc -l)" -gt 2 ]      # a digit, not a blank
        sed -n "$((k * 784 + 1)),$((k * 784 + 784))p" "$T/patches" | cmp - "$T/digit" ||
            { echo "patch $k is not digit ${index[k]}"; return 1; }
        pngtopam "$file" | pamcut -left $((28 * k)) -width 28 | pamtopnm -plain |
            tail -n +4 | tr -s ' \n' '\n\n' | sed '/^$/d' | cmp - "$T/digit" ||
            { echo "netpbm: cell $k is not digit ${index[k]}"; return 1; }
    done
}

@test "mnist-bags: bad IDX files exit 1, name the file, write nothing" {
    printf 'hello, world\n' > "$T/text"
    gzip -dc "$TRAIN_IMAGES" | head -c 5000 > "$T/truncated"         # 6 of 1000 digits
    head -c 3000 "$TRAIN_IMAGES" > "$T/truncated.gz"                  # gzip cut short
    cp "$TRAIN_IMAGES" "$T/corrupt.gz"                                # deflate data overwritten
    printf '\377\377\377\377\377\377\377\377' | dd of="$T/corrupt.gz" bs=1 seek=200 conv=notrunc 2> /dev/null
    { printf '\0\0\10\3\0\0\0\1\0\0\0\33\0\0\0\34'; head -c 756 /dev/zero; } > "$T/27x28"
    { printf '\0\0\10\3\0\0\0\0\0\0\0\34\0\0\0\34'; } > "$T/none"
    { printf '\0\0\15\3\0\0\0\1\0\0\0\34\0\0\0\34'; head -c 3136 /dev/zero; } > "$T/floats"
    images=$TRAIN_IMAGES labels=$TRAIN_LABELS
    for case in "$T/text $labels|$T/text: not an MNIST IDX file of unsigned bytes with 3 dimensions" \
                "$images $T/text|$T/text: not an MNIST IDX file of unsigned bytes with 1 dimension" \
                "$labels $images|$labels: not an MNIST IDX file of unsigned bytes with 3 dimensions" \
                "$T/floats $labels|$T/floats: not an MNIST IDX file of unsigned bytes with 3 dimensions" \
                "$T/truncated $labels|$T/truncated: truncated (4984 bytes of data for 784000)" \
                "$T/27x28 $labels|$T/27x28: images are not 28×28" \
                "$T/none $labels|$T/none: " \
                "$T/truncated.gz $labels|$T/truncated.gz: not a valid gzip file" \
                "$T/corrupt.gz $labels|$T/corrupt.gz: not a valid gzip file" \
                "$images $TEST_LABELS|$images has 1000 images, $TEST_LABELS 500 labels" \
                "$T/missing $labels|$T/missing: No such file or directory"; do
        run bash -c "mnist-bags -o '$T/d' ${case%%|*} > '$T/out'"
        [ "$status" -eq 1 ] || { echo "${case%%|*}: status $status"; return 1; }
        [[ "$output" == "mnist-bags: ${case#*|}"* ]] || { echo "${case%%|*}: $output"; return 1; }
        assert_empty "$T/out"
        # both files are checked before the folder is made
        [ ! -e "$T/d" ] || { echo "${case%%|*}: $T/d was made"; return 1; }
    done
    # a bad file does not touch the bags of an earlier run
    mnist-bags -o "$T/d" -n 5 "$TRAIN_IMAGES" "$TRAIN_LABELS" 2> /dev/null
    cp "$T/d/bags.tsv" "$T/before"
    run mnist-bags -o "$T/d" -n 9 "$T/truncated" "$TRAIN_LABELS"
    [ "$status" -eq 1 ]
    cmp "$T/before" "$T/d/bags.tsv"
    # plain and gzipped IDX give the same bags
    gzip -dc "$TRAIN_IMAGES" > "$T/images"
    gzip -dc "$TRAIN_LABELS" > "$T/labels"
    (cd "$T" && mnist-bags -o gz -n 20 -r 3 "$TRAIN_IMAGES" "$TRAIN_LABELS" 2> /dev/null)
    (cd "$T" && mnist-bags -o gz2 -n 20 -r 3 images labels 2> /dev/null)
    diff <(sed 's#^gz/#x/#' "$T/gz/bags.tsv") <(sed 's#^gz2/#x/#' "$T/gz2/bags.tsv")
}

@test "mnist-bags: the same seed gives the same bags, another seed others" {
    mkdir "$T/a" "$T/b" "$T/c"
    (cd "$T/a" && mnist-bags -o d -n 200 -r 1 "$TRAIN_IMAGES" "$TRAIN_LABELS" 2> err)
    (cd "$T/b" && mnist-bags -o d -n 200 "$TRAIN_IMAGES" "$TRAIN_LABELS" 2> err)   # -r 1 is the default
    (cd "$T/c" && mnist-bags -o d -n 200 -r 2 "$TRAIN_IMAGES" "$TRAIN_LABELS" 2> err)
    diff -r "$T/a" "$T/b"
    if cmp -s "$T/a/d/bags.tsv" "$T/c/d/bags.tsv"; then echo "seeds 1 and 2 made the same bags"; return 1; fi
    # lengths int(normal(10, 2)): mean about 9.5; a bag holds a 9 with
    # probability about 1 - 0.9^10 = 0.65 (108 nines among the 1000 digits)
    for s in a c; do
        tsv=$T/$s/d/bags.tsv
        positives=$(awk -F'\t' 'NR > 1 && $2 == 1' "$tsv" | wc -l)
        [ "$positives" -ge 90 ] && [ "$positives" -le 170 ] || { echo "$s: $positives of 200 positive"; return 1; }
        awk -F'\t' 'NR > 1 { n += $3 } END { exit !(n / (NR - 1) > 9 && n / (NR - 1) < 10) }' "$tsv"
        [ "$(ls "$T/$s/d/1" | wc -l)" -eq "$positives" ]
        [ "$(cat "$T/$s/err")" = "mnist-bags: 200 bags ($positives positive) in d" ]
        # the label says whether the digits hold a 9, and the folder agrees
        awk -F'\t' 'NR > 1 { nine = ("," $4 ",") ~ /,9,/; if ($2 != nine || $1 !~ ("^d/" $2 "/")) bad++ }
            END { exit bad > 0 }' "$tsv"
    done
    # --sd 0: every bag has int(mean) digits, at least one
    mnist-bags -o "$T/e" -n 20 -m 3.7 -s 0 "$TRAIN_IMAGES" "$TRAIN_LABELS" 2> /dev/null
    [ "$(tail -n +2 "$T/e/bags.tsv" | cut -f 3 | sort -u)" = 3 ]
    mnist-bags -o "$T/f" -n 20 -m 0.5 -s 0 "$TRAIN_IMAGES" "$TRAIN_LABELS" 2> /dev/null
    [ "$(tail -n +2 "$T/f/bags.tsv" | cut -f 3 | sort -u)" = 1 ]
    # --target 0: the same bags, labelled by their zeros
    mnist-bags -o "$T/g" -n 200 -t 0 "$TRAIN_IMAGES" "$TRAIN_LABELS" 2> /dev/null
    diff <(cut -f 3- "$T/a/d/bags.tsv") <(cut -f 3- "$T/g/bags.tsv")
    awk -F'\t' 'NR > 1 { zero = ("," $4 ",") ~ /,0,/; if ($2 != zero) bad++ } END { exit bad > 0 }' "$T/g/bags.tsv"
    if cmp -s <(cut -f 2 "$T/a/d/bags.tsv") <(cut -f 2 "$T/g/bags.tsv"); then echo "-t 0 changed no label"; return 1; fi
}
