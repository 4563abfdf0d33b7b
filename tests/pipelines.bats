#!/usr/bin/env bats
# The paper's studies as Makefiles (pipelines/breakhis.mk, bach.mk) end to
# end, on small trees in the datasets' exact layouts made from the committed
# BreakHis image (tests/breakhis_tree.bash, tests/bach_tree.bash): every
# image its own target, the patient split, the counts, the tables that
# agree with evaluate, the pictures, parallel runs, and a run interrupted
# and resumed to the same results as one that was not.  The CNN baselines
# are net and resnet18; vgg19 goes by resnet18's rules, at 20 times its
# cost.

load lib
load breakhis_tree
load bach_tree

PIPELINES=$BATS_TEST_DIRNAME/../pipelines
SMALL=(MAGS="40X 100X" MODELS="amil net resnet18" EPOCHS=3 CNN_EPOCHS=2 FIGURES=1)

setup_file() {
    local d=$BATS_FILE_TMPDIR
    breakhis_tree "$d"
    make -s -f "$PIPELINES/breakhis.mk" DATA="$d/BreaKHis_v1" OUT="$d/out" "${SMALL[@]}" -j2 \
        > "$d/make.log" 2>&1
}

setup() {
    T=$BATS_TEST_TMPDIR
    F=$BATS_FILE_TMPDIR
}

@test "breakhis.mk: the layout, one bag and one image record per image" {
    [ "$(find "$F/BreaKHis_v1" -name '*.png' | wc -l)" -eq 32 ]
    # reorg-breakhis's patient-disjoint split: 3 patients a class to train, 1 to test
    grep -q $'^40X\ttrain\t0\t6$' "$F/out/reorg.tsv"
    grep -q $'^40X\ttest\t1\t2$' "$F/out/reorg.tsv"
    [ "$(find "$F/out/bags" -name '*.bag' | wc -l)" -eq 32 ]
    [ "$(find "$F/out/images" -name '*.img' | wc -l)" -eq 32 ]
    [ "$(find "$F/out" -name '*.tmp' | wc -l)" -eq 0 ]
    # no patient on both sides of a split
    for mag in 40X 100X; do
        comm -12 <(recinfo "$F/out/$mag/train.bags" | awk '$1 == "patient" { print $3 }' | sort -u) \
                 <(recinfo "$F/out/$mag/test.bags" | awk '$1 == "patient" { print $3 }' | sort -u) > "$T/both"
        assert_empty "$T/both"
        [ "$(recinfo "$F/out/$mag/train.bags" | grep -c '^.*: record')" -eq 12 ]
    done
}

@test "breakhis.mk: every model of every magnification, and a table with evaluate's numbers" {
    [ "$(wc -l < "$F/out/results.tsv")" -eq 7 ]
    head -n 1 "$F/out/results.tsv" | grep -qx $'magnification\tmodel\timages\tpatients\taccuracy\tauc\tpatient_recognition_rate'
    for mag in 40X 100X; do
        for model in amil net resnet18; do
            evaluate --by patient "$F/out/$mag/$model/table.tsv" > "$T/metrics"
            row=$(awk -F'\t' -v m="$mag" -v n="$model" '$1 == m && $2 == n' "$F/out/results.tsv")
            expected=$(awk -F'\t' '$1 == "images" || $1 == "patients" || $1 == "accuracy" ||
                                   $1 == "auc" || $1 == "patient_recognition_rate" { v[$1] = $2 }
                                   END { print v["images"] "\t" v["patients"] "\t" v["accuracy"] "\t" \
                                         v["auc"] "\t" v["patient_recognition_rate"] }' "$T/metrics")
            [ "$row" = "$mag	$model	$expected" ] || { echo "$row / $expected"; return 1; }
            [ "$(wc -l < "$F/out/$mag/$model/log.tsv")" -eq $([ $model = amil ] && echo 4 || echo 3) ]
        done
        [ "$(ls "$F/out/$mag/amil/heat/"*.png | wc -l)" -eq 4 ]
        [ "$(ls "$F/out/$mag/figures/"*.png | wc -l)" -eq 1 ]
        pngtopam "$F/out/$mag/curves.png" | pamfile | grep -q '1200 by 450'
    done
    grep -q '^| 40X | amil | 4 | 2 |' "$F/out/results.md"
}

@test "breakhis.mk: a finished study is up to date; a lost bag is made again, and only what needs it" {
    cp -a "$F/out" "$T/out"
    run make -n -f "$PIPELINES/breakhis.mk" DATA="$F/BreaKHis_v1" OUT="$T/out" "${SMALL[@]}" PHASE=2 results
    [ "$status" -eq 0 ]
    [ "$(grep -c '^bagify\|^train\|^featurize\|^classify\|summarize' <<< "$output")" -eq 0 ] || { echo "$output"; return 1; }
    # from the top too: nothing but the second make, which has nothing to do
    run make -n -f "$PIPELINES/breakhis.mk" DATA="$F/BreaKHis_v1" OUT="$T/out" "${SMALL[@]}"
    [ "$status" -eq 0 ]
    [ "$(grep -vc 'PHASE=2 results\|^make\[[0-9]*\]: ' <<< "$output")" -eq 0 ] || { echo "$output"; return 1; }
    bag=$(ls "$T/out/bags/100X/test/1/"*.bag | head -n 1)
    rm "$bag"
    run make -n -f "$PIPELINES/breakhis.mk" DATA="$F/BreaKHis_v1" OUT="$T/out" "${SMALL[@]}" PHASE=2 results
    [ "$(grep -c '^bagify' <<< "$output")" -eq 1 ]
    grep -q "^bagify -L breakhis .*$(basename "${bag%.bag}").png" <<< "$output"
    grep -q "100X/test.bags" <<< "$output"
    ! grep -q "^\(train\|featurize\|classify\) .*\(40X/\|100X/net\|100X/resnet18\)" <<< "$output" || false
}

@test "breakhis.mk: an interrupted run resumes to the results of one that was not" {
    breakhis_tree "$T"
    make -s -f "$PIPELINES/breakhis.mk" DATA="$T/BreaKHis_v1" OUT="$T/out" "${SMALL[@]}" -j2 \
        > "$T/log" 2>&1 &
    local pid=$!
    # stop it once some models are being trained (SIGTERM: a background job
    # of a script ignores SIGINT), as a user's ^C or a killed job would
    for i in $(seq 300); do
        [ -e "$T/out/40X/amil/model.st.ckpt" ] && break
        sleep 0.1
    done
    pkill -TERM -P "$pid" make || true
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" || true
    [ ! -e "$T/out/results.md" ]
    [ -e "$T/out/40X/amil/model.st.ckpt" ]
    [ ! -e "$T/out/100X/amil/metrics.txt" ]
    make -s -f "$PIPELINES/breakhis.mk" DATA="$T/BreaKHis_v1" OUT="$T/out" "${SMALL[@]}" -j2 > "$T/log2" 2>&1
    cmp "$T/out/results.tsv" "$F/out/results.tsv"
    for mag in 40X 100X; do
        for model in amil net resnet18; do
            cmp "$T/out/$mag/$model/table.tsv" <(sed "s|$F|$T|g" "$F/out/$mag/$model/table.tsv")
        done
    done
}

@test "bach.mk: TIFFs through netpbm, a seeded stratified split, four classes" {
    bach_tree "$T"
    make -s -f "$PIPELINES/bach.mk" DATA="$T/ICIAR2018_BACH_Challenge" OUT="$T/out" \
        MODELS="amil net" EPOCHS=2 CNN_EPOCHS=2 FIGURES=1 -j2 > "$T/log" 2>&1 || { cat "$T/log"; return 1; }
    # 3 of each class's 4 to train, the same on any machine (MD5 order)
    [ "$(awk -F'\t' '$3 == "train"' "$T/out/split.tsv" | wc -l)" -eq 12 ]
    for class in 0 1 2 3; do
        [ "$(ls "$T/out/data/all/test/$class/"*.png | wc -l)" -eq 1 ]
    done
    # each PNG has the TIFF's pixels
    for f in "$T"/out/data/all/*/*/*.png; do
        name=$(basename "${f%.png}")
        tif=$(find "$T/ICIAR2018_BACH_Challenge" -name "$name.tif")
        cmp <(pngtopam "$f" | pamtopnm) <(tifftopnm -quiet "$tif") || { echo "$f"; return 1; }
    done
    recinfo "$T/out/all/amil/model.st" | grep -qx '  classes = 4'
    head -n 1 "$T/out/all/amil/table.tsv" | grep -qx $'source\tlabel\tprob_0\tprob_1\tprob_2\tprob_3\tpredicted\tpatient'
    [ "$(wc -l < "$T/out/results.tsv")" -eq 3 ]
    grep -q $'^all\tamil\t4\t-\t' "$T/out/results.tsv"
    # another seed, another split
    mkdir "$T/other"
    "$PIPELINES/bach-split.sh" "$T/ICIAR2018_BACH_Challenge" "$T/other" 2 0.7 > "$T/split2.tsv"
    ! cmp -s "$T/out/split.tsv" "$T/split2.tsv" || false
}
