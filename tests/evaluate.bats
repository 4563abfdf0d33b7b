#!/usr/bin/env bats
# evaluate on tables written here, each score worked out by hand in the
# comments, and on the real bagify | featurize | attend | classify -t
# pipeline.  Each bad input: exit 1, a message naming the line, nothing on
# stdout.

load lib

setup() {
    T=$BATS_TEST_TMPDIR
}

# row FIELD...: one line of the table, the fields joined by tabs ("" is an
# empty field).
row() {
    local IFS=$'\t'
    echo "$*"
}

HEADER2=$(row source label prob_0 prob_1 predicted patient)

# The binary table: 5 benign (label 0, n*) and 5 malignant (label 1, p*)
# images of 3 patients, in mixed order.
#
#         label prob_1 predicted          patient
#   n1    0     0.10   0  true negative   14-22549G
#   n2    0     0.20   0  true negative   14-22549G
#   n3    0     0.35   0  true negative   14-2523
#   n4    0     0.60   1  false positive  14-2523
#   n5    0     0.90   1  false positive  14-2523
#   p1    1     0.30   0  false negative  13-412
#   p2    1     0.60   1  true positive   13-412    (ties n4 at 0.60)
#   p3    1     0.70   1  true positive   13-412
#   p4    1     0.80   1  true positive   13-412
#   p5    1     0.95   1  true positive   13-412
binary_table() {
    echo "$HEADER2"
    row n1.png 0 0.9 0.1 0 14-22549G
    row n3.png 0 0.65 0.35 0 14-2523
    row p1.png 1 0.7 0.3 0 13-412
    row n2.png 0 0.8 0.2 0 14-22549G
    row p2.png 1 0.4 0.6 1 13-412
    row n4.png 0 0.4 0.6 1 14-2523
    row p3.png 1 0.3 0.7 1 13-412
    row n5.png 0 0.1 0.9 1 14-2523
    row p4.png 1 0.2 0.8 1 13-412
    row p5.png 1 0.05 0.95 1 13-412
}

# rejected MESSAGE [OPTION...]: evaluate OPTIONs < $T/bad.tsv exits 1 with
# exactly MESSAGE on stderr and writes nothing on stdout.
rejected() {
    local want=$1
    shift
    run bash -c "evaluate $* < '$T/bad.tsv' > '$T/out'"
    [ "$status" -eq 1 ] || { echo "status $status for: $want"; return 1; }
    [ "$output" = "$want" ] || { echo "got:  $output"; echo "want: $want"; return 1; }
    assert_empty "$T/out"
}

@test "evaluate: usage" {
    evaluate -h > "$T/out" 2> "$T/err"
    [[ "$(head -n 1 "$T/out")" == "usage: evaluate "* ]]
    assert_empty "$T/err"
    run bash -c "evaluate --no-such-option < /dev/null > '$T/out'"
    [ "$status" -eq 2 ]
    [[ "$output" == *"usage: evaluate "* ]]
    assert_empty "$T/out"
    run bash -c "evaluate --by ward < /dev/null > '$T/out'"
    [ "$status" -eq 2 ]
    [[ "${lines[0]}" == "evaluate: --by: 'ward' is not image or patient" ]]
    [[ "$output" == *"usage: evaluate "* ]]
    assert_empty "$T/out"
    run bash -c "evaluate a.tsv b.tsv > '$T/out'"
    [ "$status" -eq 2 ]
    assert_empty "$T/out"
}

@test "evaluate: two classes, the scores and the confusion matrix by hand" {
    binary_table > "$T/binary.tsv"
    # TN = 3 (n1 n2 n3), FP = 2 (n4 n5), FN = 1 (p1), TP = 4 (p2 .. p5)
    # accuracy    (TP + TN) / 10 = 7/10            = 0.7000
    # error       1 - 0.7                          = 0.3000
    # precision   TP / (TP + FP) = 4/6             = 0.6667
    # recall      TP / (TP + FN) = 4/5             = 0.8000
    # specificity TN / (TN + FP) = 3/5             = 0.6000
    # f1          2 (2/3)(4/5) / (2/3 + 4/5) = (16/15) / (22/15) = 8/11 = 0.7273
    # auc         over the 25 (malignant, benign) pairs, the malignant
    #             image's prob_1 higher counts 1, equal 1/2:
    #             p1 0.30 > n1 n2                 2
    #             p2 0.60 > n1 n2 n3, = n4        3.5
    #             p3 0.70 > n1 .. n4              4
    #             p4 0.80 > n1 .. n4              4
    #             p5 0.95 > n1 .. n5              5
    #             18.5 / 25 = 0.7400 (0.7200 with ties as losses, 0.7600 as wins)
    {
        row images 10
        row classes 2
        row accuracy 0.7000
        row error 0.3000
        row precision 0.6667
        row recall 0.8000
        row specificity 0.6000
        row f1 0.7273
        row auc 0.7400
        echo "confusion (rows: true class, columns: predicted)"
        row "" 0 1
        row 0 3 2
        row 1 1 4
    } > "$T/want"
    evaluate "$T/binary.tsv" > "$T/got"
    diff -u "$T/want" "$T/got"
    # the same from stdin, and --by image is the default
    evaluate < "$T/binary.tsv" | diff -u "$T/want" -
    evaluate --by image "$T/binary.tsv" | diff -u "$T/want" -
}

@test "evaluate: -j writes the scores as one JSON line, NaN as null" {
    binary_table > "$T/binary.tsv"
    # the numbers of the test above with %.6g: 2/3 = 0.666667, 8/11 = 0.727273
    run evaluate -j "$T/binary.tsv"
    [ "$status" -eq 0 ]
    [ "$output" = '{"images":10,"classes":2,"accuracy":0.7,"error":0.3,"precision":0.666667,"recall":0.8,"specificity":0.6,"f1":0.727273,"auc":0.74,"confusion":[[3,2],[1,4]]}' ]

    # Nothing predicted malignant: TP = FP = 0, FN = 2, TN = 2.
    # precision 0/0: NaN, so null; recall 0/2 = 0; specificity 2/2 = 1;
    # f1 2 TP / (2 TP + FP + FN) = 0 / 2 = 0 (as scikit-learn: not NaN);
    # accuracy 2/4 = 0.5;
    # auc: m1 0.3 > b1 0.1 (1), m2 0.45 > b1, b2 0.4 (2): 3/4 = 0.75
    {
        echo "$HEADER2"
        row b1.png 0 0.9 0.1 0 ""
        row b2.png 0 0.6 0.4 0 ""
        row m1.png 1 0.7 0.3 0 ""
        row m2.png 1 0.55 0.45 0 ""
    } > "$T/none.tsv"
    run evaluate -j "$T/none.tsv"
    [ "$status" -eq 0 ]
    [ "$output" = '{"images":4,"classes":2,"accuracy":0.5,"error":0.5,"precision":null,"recall":0,"specificity":1,"f1":0,"auc":0.75,"confusion":[[2,0],[2,0]]}' ]
}

@test "evaluate: --by patient, the mean over patients, not over images" {
    binary_table > "$T/binary.tsv"
    # 14-22549G: n1 n2 right            2/2 = 1
    # 14-2523:   n3 right, n4 n5 wrong  1/3
    # 13-412:    p1 wrong, p2 .. p5     4/5 = 0.8
    # (1 + 1/3 + 4/5) / 3 = (32/15) / 3 = 32/45 = 0.711111, where the
    # images pooled give 7/10 = 0.7.  The patients' rows are not adjacent
    # in the table: grouping runs of equal names would count 9 patients.
    evaluate --by patient "$T/binary.tsv" > "$T/got"
    grep -qx "accuracy	0.7000" "$T/got"
    grep -qx "patients	3" "$T/got"
    grep -qx "patient_recognition_rate	0.7111" "$T/got"
    # after the image scores, before the confusion matrix
    [ "$(sed -n 10,11p "$T/got")" = "$(row patients 3; row patient_recognition_rate 0.7111)" ]
    run evaluate -j -b patient "$T/binary.tsv"
    [[ "$output" == *'"accuracy":0.7,'* ]]
    [[ "$output" == *'"auc":0.74,"patients":3,"patient_recognition_rate":0.711111,"confusion":'* ]]
    # without --by patient, no patient lines
    run evaluate "$T/binary.tsv"
    [ "$status" -eq 0 ]
    [[ "$output" == *"accuracy	0.7000"* ]]
    [[ "$output" != *patient* ]]
}

@test "evaluate: three classes, macro means over one class against the rest" {
    # confusion (true \ predicted)   precision       recall     specificity
    #        0  1  2
    #   0    3  1  0                 3/4             3/4        4/5
    #   1    1  2  0                 2/4             2/3        4/6
    #   2    0  1  1                 1/1             1/2        7/7
    # accuracy (3 + 2 + 1) / 9 = 2/3 = 0.6667, error 1/3
    # recall      (3/4 + 2/3 + 1/2) / 3 = (23/12) / 3 = 23/36 = 0.6389 (0.638889)
    # precision   (3/4 + 1/2 + 1) / 3 = 3/4
    # specificity (4/5 + 2/3 + 1) / 3 = 37/45 = 0.822222
    # f1          (3/4 + 4/7 + 2/3) / 3 = (167/84) / 3 = 167/252 = 0.662698
    # auc, the mean of the one-against-rest AUCs (ties 1/2):
    #   class 0 (prob_0 of a b c d against the 5 others .5 .2 .1 .2 .1):
    #     .7: 5, .6: 5, .5: 4 + 1/2 (e), .3: 4          18.5/20
    #   class 1 (prob_1 of e f g against .2 .3 .25 .5 .5 .2):
    #     .4: 4, .7: 6, .6: 6                           16/18
    #   class 2 (prob_2 of h i against .1 .1 .25 .2 .1 .1 .3):
    #     .3: 6 + 1/2 (g), .7: 7                        13.5/14
    #   (0.925 + 0.888889 + 0.964286) / 3 = 0.926058
    {
        row source label prob_0 prob_1 prob_2 predicted patient
        row a.png 0 0.7 0.2 0.1 0 ""
        row b.png 0 0.6 0.3 0.1 0 ""
        row c.png 0 0.5 0.25 0.25 0 ""
        row d.png 0 0.3 0.5 0.2 1 ""
        row e.png 1 0.5 0.4 0.1 0 ""
        row f.png 1 0.2 0.7 0.1 1 ""
        row g.png 1 0.1 0.6 0.3 1 ""
        row h.png 2 0.2 0.5 0.3 1 ""
        row i.png 2 0.1 0.2 0.7 2 ""
    } > "$T/three.tsv"
    evaluate "$T/three.tsv" > "$T/got"
    grep -qx "classes	3" "$T/got"
    grep -qx "accuracy	0.6667" "$T/got"
    grep -qx "recall	0.6389" "$T/got"
    grep -qx "precision	0.7500" "$T/got"
    {
        row "" 0 1 2
        row 0 3 1 0
        row 1 1 2 0
        row 2 0 1 1
    } > "$T/want"
    tail -n 4 "$T/got" | diff -u "$T/want" -
    run evaluate -j "$T/three.tsv"
    [ "$output" = '{"images":9,"classes":3,"accuracy":0.666667,"error":0.333333,"precision":0.75,"recall":0.638889,"specificity":0.822222,"f1":0.662698,"auc":0.926058,"confusion":[[3,1,0],[1,2,0],[0,1,1]]}' ]
}

@test "evaluate: CRLF line endings and blank lines between rows" {
    binary_table > "$T/binary.tsv"
    evaluate "$T/binary.tsv" > "$T/want"
    sed 's/$/\r/' "$T/binary.tsv" > "$T/crlf.tsv"
    evaluate "$T/crlf.tsv" | diff -u "$T/want" -
    sed 'G' "$T/binary.tsv" > "$T/blank.tsv"     # an empty line after each
    evaluate "$T/blank.tsv" | diff -u "$T/want" -
    sed 's/$/\r/' "$T/blank.tsv" > "$T/blank-crlf.tsv"   # and CRLF blank lines
    evaluate "$T/blank-crlf.tsv" | diff -u "$T/want" -
}

@test "evaluate: bad input" {
    : > "$T/bad.tsv"
    rejected "evaluate: <stdin>: empty: not a table of classify -t"
    run bash -c "evaluate '$T/bad.tsv' > '$T/out'"
    [ "$status" -eq 1 ]
    [ "$output" = "evaluate: $T/bad.tsv: empty: not a table of classify -t" ]
    assert_empty "$T/out"

    echo "$HEADER2" > "$T/bad.tsv"
    rejected "evaluate: <stdin>: no rows to score"

    not_header="evaluate: <stdin>: line 1: not the header of classify -t (source label prob_0 ... predicted patient)"
    { echo "source,label,prob_0,prob_1,predicted,patient"; row a.png 0 0.9 0.1 0 ""; } > "$T/bad.tsv"
    rejected "$not_header"
    { row source label prob_0 prob_1 predicted; row a.png 0 0.9 0.1 0; } > "$T/bad.tsv"
    rejected "$not_header"
    { row source class prob_0 prob_1 predicted patient; row a.png 0 0.9 0.1 0 ""; } > "$T/bad.tsv"
    rejected "$not_header"
    { row source label prob_0 prob_1 prediction patient; row a.png 0 0.9 0.1 0 ""; } > "$T/bad.tsv"
    rejected "$not_header"
    { row source label prob_0 prob_1 predicted patient_id; row a.png 0 0.9 0.1 0 ""; } > "$T/bad.tsv"
    rejected "$not_header"
    { row file label prob_0 prob_1 predicted patient; row a.png 0 0.9 0.1 0 ""; } > "$T/bad.tsv"
    rejected "$not_header"
    # one class is not a classifier
    { row source label prob_0 predicted patient; row a.png 0 1 0 ""; } > "$T/bad.tsv"
    rejected "$not_header"
    run bash -c "evaluate '$T/bad.tsv' > '$T/out'"
    [ "$output" = "evaluate: $T/bad.tsv: line 1: not the header of classify -t (source label prob_0 ... predicted patient)" ]

    # line 3 has 5 fields, then 7
    { echo "$HEADER2"; row a.png 0 0.9 0.1 0 ""; row b.png 1 0.2 0.8 1; } > "$T/bad.tsv"
    rejected "evaluate: <stdin>: line 3: 6 fields expected"
    { echo "$HEADER2"; row a.png 0 0.9 0.1 0 ""; row b.png 1 0.2 0.8 1 "" x; } > "$T/bad.tsv"
    rejected "evaluate: <stdin>: line 3: 6 fields expected"

    { echo "$HEADER2"; row a.png "" 0.9 0.1 0 ""; } > "$T/bad.tsv"
    rejected "evaluate: <stdin>: line 2: no label for a.png: nothing to score against"

    { echo "$HEADER2"; row a.png 0 0.9 0.1 0 ""; row b.png 1 -0.5 1.5 1 ""; } > "$T/bad.tsv"
    rejected "evaluate: <stdin>: line 3: prob_0: -0.5 is out of range [0, 1]"
    { echo "$HEADER2"; row a.png 0 0.9 0.1 0 ""; row b.png 1 0.2 1.5 1 ""; } > "$T/bad.tsv"
    rejected "evaluate: <stdin>: line 3: prob_1: 1.5 is out of range [0, 1]"
    { echo "$HEADER2"; row a.png 0 0.9 nan 0 ""; } > "$T/bad.tsv"
    rejected "evaluate: <stdin>: line 2: prob_1: 'nan' is not a number"

    { echo "$HEADER2"; row a.png 0 0.9 0.1 2 ""; } > "$T/bad.tsv"
    rejected "evaluate: <stdin>: line 2: label or predicted class: 2 is out of range [0, 1]"
    { echo "$HEADER2"; row a.png 3 0.9 0.1 0 ""; } > "$T/bad.tsv"
    rejected "evaluate: <stdin>: line 2: label or predicted class: 3 is out of range [0, 1]"
    { echo "$HEADER2"; row a.png 0 0.9 0.1 one ""; } > "$T/bad.tsv"
    rejected "evaluate: <stdin>: line 2: label or predicted class: 'one' is not an integer"

    # the second row, on line 3, has no patient
    { echo "$HEADER2"; row a.png 0 0.9 0.1 0 14-2523; row b.png 1 0.2 0.8 1 ""; } > "$T/bad.tsv"
    rejected "evaluate: <stdin>: line 3: no patient: --by patient needs BreakHis names (bagify writes the patient from them)" --by patient
    # without --by patient the same table is fine
    evaluate < "$T/bad.tsv" > /dev/null
}

@test "evaluate: the real pipeline, bagify to classify -t" {
    model=$DATA/torch-state-dict.safetensors
    { bagify -l 0 "$BREAKHIS"; bagify -l 1 "$IHC"; } > "$T/bags"
    featurize -m "$model" < "$T/bags" | attend -m "$model" | classify -m "$model" -t > "$T/table"
    evaluate "$T/table" > "$T/got"
    grep -qx "images	2" "$T/got"
    grep -qx "classes	2" "$T/got"
    # the confusion matrix's rows: one image of each label, so each sums to 1
    [ "$(tail -n 2 "$T/got" | awk '{ print $1, $2 + $3 }')" = "0 1
1 1" ]
    # the IHC image's name is not BreakHis's: no patient
    run bash -c "evaluate --by patient '$T/table' > '$T/out'"
    [ "$status" -eq 1 ]
    [[ "$output" == "evaluate: $T/table: line 3: no patient"* ]]
    assert_empty "$T/out"
}
