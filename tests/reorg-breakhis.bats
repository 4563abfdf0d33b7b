#!/usr/bin/env bats
# reorg-breakhis on generated trees that follow BreakHis's real naming rules:
# a Kaggle fold and the official BreaKHis_v1 tree, both with a space in the
# path, every image a real PNG (one of them 700x456).

bats_require_minimum_version 1.5.0
load lib

# Patients as "class type patient": four per class for the Kaggle fold (the
# last of each class is its test patient), eight per class for the official
# tree so that different seeds give different splits.
KAGGLE_PATIENTS=("B A 14-22549G" "B F 14-9133" "B PT 14-21998AB" "B TA 14-3411F"
                 "M DC 14-2523" "M LC 14-15570C" "M MC 14-13418DE" "M PC 14-9146")
OFFICIAL_PATIENTS=("B A 14-22549AB" "B A 14-29960CD" "B F 14-9133" "B F 14-14134"
                   "B PT 14-21998AB" "B PT 14-22704" "B TA 14-3411F" "B TA 14-13200"
                   "M DC 14-2523" "M DC 14-10926" "M LC 14-15570C" "M LC 14-12204"
                   "M MC 14-13418DE" "M MC 14-18842" "M PC 14-9146" "M PC 14-15687B")

type_folder() {
    case $1 in
    A) echo adenosis ;; F) echo fibroadenoma ;; PT) echo phyllodes_tumor ;;
    TA) echo tubular_adenoma ;; DC) echo ductal_carcinoma ;;
    LC) echo lobular_carcinoma ;; MC) echo mucinous_carcinoma ;;
    PC) echo papillary_carcinoma ;;
    esac
}

setup_file() {
    local tmp=$BATS_FILE_TMPDIR entry cls code patient mag seq split dir
    cp "$BREAKHIS" "$tmp/full.png"          # a real 700x460 BreakHis image
    chmod 644 "$tmp/full.png"
    pngtopam "$tmp/full.png" | pamcut -height 456 | pamtopng > "$tmp/short.png"

    # Kaggle fold: 2 images per patient and magnification, so per
    # magnification train has 6 benign and 6 malignant, test 2 and 2.
    export KAGGLE="$tmp/my data/fold1"
    for entry in "${KAGGLE_PATIENTS[@]}"; do
        read -r cls code patient <<<"$entry"
        split=train
        [[ $patient == 14-3411F || $patient == 14-9146 ]] && split=test
        for mag in 40 100 200 400; do
            dir="$KAGGLE/$split/${mag}X/${cls}_${mag}X"
            mkdir -p "$dir"
            for seq in 001 002; do
                cp "$tmp/full.png" "$dir/SOB_${cls}_$code-$patient-$mag-$seq.png"
            done
        done
    done
    cp "$tmp/short.png" "$KAGGLE/train/400X/M_400X/SOB_M_DC-14-2523-400-002.png"
    echo 'not an image' > "$KAGGLE/train/40X/B_40X/Thumbs.db"
    echo 'notes' > "$KAGGLE/notes.txt"

    # Official tree: 1 image per patient and magnification, 64 in all.
    export OFFICIAL="$tmp/official tree"
    local breast="$OFFICIAL/BreaKHis_v1/histology_slides/breast"
    for entry in "${OFFICIAL_PATIENTS[@]}"; do
        read -r cls code patient <<<"$entry"
        local class=benign
        [[ $cls == M ]] && class=malignant
        for mag in 40 100 200 400; do
            dir="$breast/$class/SOB/$(type_folder "$code")/SOB_${cls}_${code}_$patient/${mag}X"
            mkdir -p "$dir"
            cp "$tmp/full.png" "$dir/SOB_${cls}_$code-$patient-$mag-001.png"
        done
    done
}

# The count table for every magnification: train/0 train/1 test/0 test/1.
table() {
    printf 'magnification\tsplit\tclass\tfiles\n'
    local mag
    for mag in 40X 100X 200X 400X; do
        printf '%s\ttrain\t0\t%s\n%s\ttrain\t1\t%s\n%s\ttest\t0\t%s\n%s\ttest\t1\t%s\n' \
            "$mag" "$1" "$mag" "$2" "$mag" "$3" "$mag" "$4"
    done
}

# The files under a directory with inode, type and size, to prove a run
# changed nothing.
snapshot() {
    (cd "$1" && find . -printf '%p %i %y %s %T@\n' | sort)
}

# A small Kaggle fold of its own, for tests that add bad files to it.
small_kaggle() {
    local src=$1
    mkdir -p "$src/train/40X/B_40X" "$src/test/40X/M_40X"
    cp "$BATS_FILE_TMPDIR/full.png" "$src/train/40X/B_40X/SOB_B_A-14-22549G-40-001.png"
    cp "$BATS_FILE_TMPDIR/full.png" "$src/test/40X/M_40X/SOB_M_DC-14-2523-40-001.png"
}

@test "kaggle: counts, paths and split.tsv" {
    dst=$BATS_TEST_TMPDIR/out
    run --separate-stderr reorg-breakhis "$KAGGLE" "$dst"
    [ "$status" -eq 0 ]
    [ "$output" = "$(table 6 6 2 2)" ]
    [ "${stderr_lines[-1]}" = "reorg-breakhis: placed 64, already there 0, unknown 2, errors 0" ]
    [ "$(find "$dst" -type f -name '*.png' | wc -l)" -eq 64 ]
    [ "$(ls "$dst")" = "$(printf '100X\n200X\n400X\n40X\nsplit.tsv')" ]
    [ "$(ls "$dst/40X/test/1")" = "$(printf 'SOB_M_PC-14-9146-40-001.png\nSOB_M_PC-14-9146-40-002.png')" ]
    [ "$(ls "$dst/400X/train/0" | wc -l)" -eq 6 ]
    [ -f "$dst/200X/train/1/SOB_M_MC-14-13418DE-200-002.png" ]
    # the 700x456 image went where its name says, unchanged
    [ "$(pngtopam "$dst/400X/train/1/SOB_M_DC-14-2523-400-002.png" | pamfile)" = "stdin:	PPM raw, 700 by 456  maxval 255" ]
    cmp "$BATS_FILE_TMPDIR/short.png" "$dst/400X/train/1/SOB_M_DC-14-2523-400-002.png"
    # split.tsv: header, one row per image, patient from the name
    [ "$(head -1 "$dst/split.tsv")" = "$(printf 'file\tpatient\tsplit\tmagnification\tclass')" ]
    [ "$(wc -l < "$dst/split.tsv")" -eq 65 ]
    grep -qxF "$(printf '40X/test/0/SOB_B_TA-14-3411F-40-002.png\t14-3411F\ttest\t40X\t0')" "$dst/split.tsv"
    [ "$(awk -F'\t' 'NR > 1 && $3 == "test" { print $2 }' "$dst/split.tsv" | sort -u | tr '\n' ' ')" = "14-3411F 14-9146 " ]
}

@test "kaggle: hard links by default share the source's inode" {
    dst=$BATS_TEST_TMPDIR/out
    run --separate-stderr reorg-breakhis -n "$KAGGLE" "$dst"
    [ "$status" -eq 0 ]
    plan=$(grep -- ' -> ' <<<"$output")
    run reorg-breakhis "$KAGGLE" "$dst"
    [ "$status" -eq 0 ]
    pairs=0
    while IFS= read -r line; do
        src=${line% -> *} target=${line#* -> }
        [ ! -L "$target" ]
        [ "$(stat -c %i "$src")" = "$(stat -c %i "$target")" ]
        pairs=$((pairs + 1))
    done <<<"$plan"
    [ "$pairs" -eq 64 ]
    [ "$(stat -c %h "$KAGGLE/test/40X/M_40X/SOB_M_PC-14-9146-40-001.png")" -ge 2 ]
}

@test "kaggle: --link sym makes symlinks to absolute source paths" {
    dst=$BATS_TEST_TMPDIR/out
    run reorg-breakhis --link sym "$KAGGLE" "$dst"
    [ "$status" -eq 0 ]
    [ "$(find "$dst" -type l | wc -l)" -eq 64 ]
    [ "$(find "$dst" -type f | wc -l)" -eq 1 ]      # split.tsv only
    target="$dst/40X/train/0/SOB_B_A-14-22549G-40-001.png"
    [ -L "$target" ]
    [ "$(readlink "$target")" = "$(realpath "$KAGGLE")/train/40X/B_40X/SOB_B_A-14-22549G-40-001.png" ]
    # a second run finds them all in place
    run --separate-stderr reorg-breakhis --link sym "$KAGGLE" "$dst"
    [ "$status" -eq 0 ]
    [ "${stderr_lines[-1]}" = "reorg-breakhis: placed 0, already there 64, unknown 2, errors 0" ]
}

@test "kaggle: --link copy makes independent copies" {
    dst=$BATS_TEST_TMPDIR/out
    run reorg-breakhis --link copy "$KAGGLE" "$dst"
    [ "$status" -eq 0 ]
    [ "$(find "$dst" -type f -name '*.png' | wc -l)" -eq 64 ]
    [ "$(find "$dst" -type l | wc -l)" -eq 0 ]
    [ "$(find "$dst" -name '.reorg-breakhis.*' | wc -l)" -eq 0 ]
    src="$KAGGLE/train/400X/M_400X/SOB_M_DC-14-2523-400-002.png"
    target="$dst/400X/train/1/SOB_M_DC-14-2523-400-002.png"
    [ "$(stat -c %i "$src")" != "$(stat -c %i "$target")" ]
    [ "$(stat -c %h "$target")" -eq 1 ]
    cmp "$src" "$target"
    run --separate-stderr reorg-breakhis --link copy "$KAGGLE" "$dst"
    [ "$status" -eq 0 ]
    [ "${stderr_lines[-1]}" = "reorg-breakhis: placed 0, already there 64, unknown 2, errors 0" ]
}

# A copy that cannot be written (here files over 4 KiB, SIGXFSZ ignored, as
# a full disk would refuse them) says why, and split.tsv, which says the
# layout is whole, is not written.
@test "kaggle: --link copy that fails names the error and writes no split.tsv" {
    dst=$BATS_TEST_TMPDIR/out
    run bash -c 'trap "" XFSZ; ulimit -f 4; reorg-breakhis --link copy "$1" "$2"' _ "$KAGGLE" "$dst"
    [ "$status" -eq 1 ]
    [[ "$output" == *": copying "*": File too large"* ]] || { echo "$output"; return 1; }
    [[ "$output" != *"File exists"* ]]
    [ ! -e "$dst/split.tsv" ]
    [ "$(find "$dst" -name '.reorg-breakhis.*' | wc -l)" -eq 0 ]
}

@test "-n prints the plan and creates nothing" {
    dst=$BATS_TEST_TMPDIR/out
    run --separate-stderr reorg-breakhis -n "$KAGGLE" "$dst"
    [ "$status" -eq 0 ]
    [ ! -e "$dst" ]
    [ "$(grep -c -- ' -> ' <<<"$output")" -eq 64 ]
    [ "${lines[0]}" = "$KAGGLE/test/100X/B_100X/SOB_B_TA-14-3411F-100-001.png -> $dst/100X/test/0/SOB_B_TA-14-3411F-100-001.png" ]
    grep -qxF "$KAGGLE/train/400X/M_400X/SOB_M_DC-14-2523-400-002.png -> $dst/400X/train/1/SOB_M_DC-14-2523-400-002.png" <<<"$output"
    [ "$(grep -v -- ' -> ' <<<"$output")" = "$(table 6 6 2 2)" ]
    [ "${stderr_lines[-1]}" = "reorg-breakhis: to place 64, already there 0, unknown 2, errors 0" ]
}

@test "a second run changes nothing and succeeds" {
    dst=$BATS_TEST_TMPDIR/out
    run reorg-breakhis "$KAGGLE" "$dst"
    [ "$status" -eq 0 ]
    before=$(snapshot "$dst")
    sleep 0.01
    run --separate-stderr reorg-breakhis "$KAGGLE" "$dst"
    [ "$status" -eq 0 ]
    [ "$output" = "$(table 6 6 2 2)" ]
    [ "${stderr_lines[-1]}" = "reorg-breakhis: placed 0, already there 64, unknown 2, errors 0" ]
    [ "$(snapshot "$dst")" = "$before" ]
}

@test "a different file in the target stops the run and is left alone" {
    dst=$BATS_TEST_TMPDIR/out
    mkdir -p "$dst/40X/train/0"
    echo 'someone else' > "$dst/40X/train/0/SOB_B_F-14-9133-40-002.png"
    run --separate-stderr reorg-breakhis "$KAGGLE" "$dst"
    [ "$status" -eq 1 ]
    [ "$output" = "" ]
    grep -qF "reorg-breakhis: $dst/40X/train/0/SOB_B_F-14-9133-40-002.png: a different file is already there" <<<"$stderr"
    [ "${stderr_lines[-1]}" = "reorg-breakhis: 1 file in the way in $dst; nothing was changed" ]
    [ "$(cat "$dst/40X/train/0/SOB_B_F-14-9133-40-002.png")" = "someone else" ]
    [ "$(find "$dst" -type f | wc -l)" -eq 1 ]
    # the same file, with the same bytes but not the same inode, is still
    # different for hard links; for copies it is the same
    cp "$KAGGLE/train/40X/B_40X/SOB_B_F-14-9133-40-002.png" "$dst/40X/train/0/"
    run reorg-breakhis "$KAGGLE" "$dst"
    [ "$status" -eq 1 ]
    run --separate-stderr reorg-breakhis --link copy "$KAGGLE" "$dst"
    [ "$status" -eq 0 ]
    [ "${stderr_lines[-1]}" = "reorg-breakhis: placed 63, already there 1, unknown 2, errors 0" ]
}

@test "hard links across file systems fall back to copies" {
    [ -d /dev/shm ] && [ "$(stat -c %d /dev/shm)" != "$(stat -c %d "$BATS_TEST_TMPDIR")" ] ||
        skip "no second file system at /dev/shm"
    src=$BATS_TEST_TMPDIR/fold
    small_kaggle "$src"
    shm=$(mktemp -d /dev/shm/reorg-breakhis.XXXXXX)
    run --separate-stderr reorg-breakhis "$src" "$shm/out"
    first_status=$status first_last=${stderr_lines[-1]}
    target="$shm/out/40X/train/0/SOB_B_A-14-22549G-40-001.png"
    copied=$( [ -f "$target" ] && [ ! -L "$target" ] && cmp -s "$src/train/40X/B_40X/SOB_B_A-14-22549G-40-001.png" "$target" && echo yes)
    run --separate-stderr reorg-breakhis "$src" "$shm/out"
    rm -rf "$shm"
    [ "$first_status" -eq 0 ]
    [ "$first_last" = "reorg-breakhis: placed 2, already there 0, unknown 0, errors 0" ]
    [ "$copied" = yes ]
    [ "$status" -eq 0 ]
    [ "${stderr_lines[-1]}" = "reorg-breakhis: placed 0, already there 2, unknown 0, errors 0" ]
}

@test "a symlink pointing elsewhere is a different file for --link sym" {
    dst=$BATS_TEST_TMPDIR/out
    mkdir -p "$dst/40X/test/1"
    ln -s /etc/hostname "$dst/40X/test/1/SOB_M_PC-14-9146-40-001.png"
    run --separate-stderr reorg-breakhis --link sym "$KAGGLE" "$dst"
    [ "$status" -eq 1 ]
    grep -qF "$dst/40X/test/1/SOB_M_PC-14-9146-40-001.png: a different file is already there" <<<"$stderr"
    [ "$(readlink "$dst/40X/test/1/SOB_M_PC-14-9146-40-001.png")" = /etc/hostname ]
    [ "$(find "$dst" | wc -l)" -eq 5 ]      # out, 40X, test, 1, the link
}

@test "an extra file in a class folder fails the count check" {
    dst=$BATS_TEST_TMPDIR/out
    run reorg-breakhis "$KAGGLE" "$dst"
    [ "$status" -eq 0 ]
    echo extra > "$dst/100X/test/1/leftover.png"
    run --separate-stderr reorg-breakhis "$KAGGLE" "$dst"
    [ "$status" -eq 1 ]
    [ "$output" = "$(table 6 6 2 2)" ]
    grep -qxF "reorg-breakhis: $dst/100X/test/1: 3 files, but 2 planned" <<<"$stderr"
    [ "${stderr_lines[-1]}" = "reorg-breakhis: placed 0, already there 64, unknown 2, errors 1" ]
}

@test "unknown files are reported one per line, counted, and fail only with --strict" {
    dst=$BATS_TEST_TMPDIR/out
    run --separate-stderr reorg-breakhis "$KAGGLE" "$dst"
    [ "$status" -eq 0 ]
    [ "${#stderr_lines[@]}" -eq 3 ]
    [ "${stderr_lines[0]}" = "reorg-breakhis: $KAGGLE/notes.txt: unknown file (not in {train,test}/<mag>/{B,M}_<mag>/)" ]
    [ "${stderr_lines[1]}" = "reorg-breakhis: $KAGGLE/train/40X/B_40X/Thumbs.db: unknown file (not a .png)" ]
    [ ! -e "$dst/40X/train/0/Thumbs.db" ]
    run --separate-stderr reorg-breakhis --strict "$KAGGLE" "$BATS_TEST_TMPDIR/strict"
    [ "$status" -eq 1 ]
    [ "${stderr_lines[-1]}" = "reorg-breakhis: placed 64, already there 0, unknown 2, errors 0" ]
}

@test "a .png that is not a PNG is reported and the rest is placed" {
    src=$BATS_TEST_TMPDIR/fold
    small_kaggle "$src"
    echo 'just text' > "$src/train/40X/B_40X/SOB_B_A-14-22549G-40-002.png"
    run --separate-stderr reorg-breakhis "$src" "$BATS_TEST_TMPDIR/out"
    [ "$status" -eq 1 ]
    grep -qxF "reorg-breakhis: $src/train/40X/B_40X/SOB_B_A-14-22549G-40-002.png: not a PNG" <<<"$stderr"
    [ "${stderr_lines[-1]}" = "reorg-breakhis: placed 2, already there 0, unknown 0, errors 1" ]
    [ "$(ls "$BATS_TEST_TMPDIR/out/40X/train/0")" = "SOB_B_A-14-22549G-40-001.png" ]
    [ -f "$BATS_TEST_TMPDIR/out/40X/test/1/SOB_M_DC-14-2523-40-001.png" ]
}

@test "class or magnification in the name must agree with the folder" {
    src=$BATS_TEST_TMPDIR/fold
    small_kaggle "$src"
    cp "$BATS_FILE_TMPDIR/full.png" "$src/train/40X/B_40X/SOB_M_DC-14-2523-40-002.png"
    cp "$BATS_FILE_TMPDIR/full.png" "$src/train/40X/B_40X/SOB_B_A-14-22549G-100-003.png"
    run --separate-stderr reorg-breakhis "$src" "$BATS_TEST_TMPDIR/out"
    [ "$status" -eq 1 ]
    grep -qxF "reorg-breakhis: $src/train/40X/B_40X/SOB_M_DC-14-2523-40-002.png: class M in the name, but the folder is B_40X" <<<"$stderr"
    grep -qxF "reorg-breakhis: $src/train/40X/B_40X/SOB_B_A-14-22549G-100-003.png: magnification 100 in the name, but the folder is 40X" <<<"$stderr"
    [ "${stderr_lines[-1]}" = "reorg-breakhis: placed 2, already there 0, unknown 0, errors 2" ]
    [ "$(find "$BATS_TEST_TMPDIR/out" -name '*.png' | wc -l)" -eq 2 ]
}

@test "official tree, seeded split: patient-disjoint, 70/30 per class" {
    dst=$BATS_TEST_TMPDIR/out
    run --separate-stderr reorg-breakhis "$OFFICIAL" "$dst"
    [ "$status" -eq 0 ]
    # 8 patients per class: round(0.7 × 8) = 6 train, 2 test, 1 image per magnification
    [ "$output" = "$(table 6 6 2 2)" ]
    [ "${stderr_lines[-1]}" = "reorg-breakhis: placed 64, already there 0, unknown 0, errors 0" ]
    [ "$(wc -l < "$dst/split.tsv")" -eq 65 ]
    # no patient on both sides
    both=$(awk -F'\t' 'NR > 1 { seen[$2, $3] = 1; p[$2] = 1 }
        END { for (x in p) if (((x, "train") in seen) && ((x, "test") in seen)) n++; print n + 0 }' "$dst/split.tsv")
    [ "$both" -eq 0 ]
    # 2 test patients of each class, each with all 4 magnifications
    [ "$(awk -F'\t' 'NR > 1 && $3 == "test" { print $5, $2 }' "$dst/split.tsv" | sort -u | cut -d' ' -f1 | uniq -c | awk '{ print $1 }' | tr '\n' ' ')" = "2 2 " ]
    [ "$(awk -F'\t' 'NR > 1 && $3 == "test"' "$dst/split.tsv" | wc -l)" -eq 16 ]
    # a patient's images all go one way: the folder agrees with split.tsv
    awk -F'\t' 'NR > 1 { split($1, f, "/"); if (f[1] != $4 || f[2] != $3 || f[3] != $5) exit 1 }' "$dst/split.tsv"
    [ "$(find "$dst" -type f -name '*.png' | wc -l)" -eq 64 ]
}

@test "official tree: the same seed gives the same split, another seed another" {
    run reorg-breakhis --seed 7 "$OFFICIAL" "$BATS_TEST_TMPDIR/a"
    [ "$status" -eq 0 ]
    run reorg-breakhis --seed 7 --link sym "$OFFICIAL" "$BATS_TEST_TMPDIR/b"
    [ "$status" -eq 0 ]
    cmp "$BATS_TEST_TMPDIR/a/split.tsv" "$BATS_TEST_TMPDIR/b/split.tsv"
    run reorg-breakhis --seed 8 "$OFFICIAL" "$BATS_TEST_TMPDIR/c"
    [ "$status" -eq 0 ]
    ! cmp -s "$BATS_TEST_TMPDIR/a/split.tsv" "$BATS_TEST_TMPDIR/c/split.tsv" || false
    test_patients() { awk -F'\t' 'NR > 1 && $3 == "test" { print $2 }' "$1" | sort -u | tr '\n' ' '; }
    [ "$(test_patients "$BATS_TEST_TMPDIR/a/split.tsv")" != "$(test_patients "$BATS_TEST_TMPDIR/c/split.tsv")" ]
    # --ratio 0.5: 4 patients of each class on each side
    run --separate-stderr reorg-breakhis --ratio 0.5 "$OFFICIAL" "$BATS_TEST_TMPDIR/d"
    [ "$status" -eq 0 ]
    [ "$output" = "$(table 4 4 4 4)" ]
    # the default seed is 1
    run reorg-breakhis -n --seed 1 "$OFFICIAL" "$BATS_TEST_TMPDIR/e"
    first=$output
    run reorg-breakhis -n "$OFFICIAL" "$BATS_TEST_TMPDIR/e"
    [ "$output" = "$first" ]
}

@test "a second run with another seed into the same DST changes nothing" {
    dst=$BATS_TEST_TMPDIR/out
    run reorg-breakhis --seed 1 "$OFFICIAL" "$dst"
    [ "$status" -eq 0 ]
    before=$(snapshot "$dst")
    run --separate-stderr reorg-breakhis --seed 8 "$OFFICIAL" "$dst"
    [ "$status" -eq 1 ]
    grep -qxF "reorg-breakhis: $dst/split.tsv: a different split is already there" <<<"$stderr"
    [ "$(snapshot "$dst")" = "$before" ]
}

@test "official tree with Folds.csv follows the csv" {
    csv=$BATS_TEST_TMPDIR/Folds.csv
    # fold 1: 14-9133 and 14-13200 (benign), 14-2523 (malignant) are test;
    # fold 2: everything test, to show that only the chosen fold counts.
    {
        echo 'fold,mag,grp,filename'
        (cd "$OFFICIAL" && find BreaKHis_v1 -name '*.png' | sort) | while IFS= read -r f; do
            base=${f##*/} mag=${base%-*}; mag=${mag##*-}
            grp=train
            case $base in *-14-9133-* | *-14-13200-* | *-14-2523-*) grp=test ;; esac
            echo "1,$mag,$grp,$f"
            echo "2,$mag,test,$f"
        done
    } > "$csv"
    [ "$(wc -l < "$csv")" -eq 129 ]
    dst=$BATS_TEST_TMPDIR/out
    run --separate-stderr reorg-breakhis --folds "$csv" --fold 1 "$OFFICIAL" "$dst"
    [ "$status" -eq 0 ]
    [ "$output" = "$(table 6 7 2 1)" ]
    # every image's split is its row's group, matched by base name
    awk -F'\t' 'NR == FNR { if ($1 == 1) { n = split($4, p, "/"); grp[p[n]] = $3 }; next }
        FNR > 1 { n = split($1, p, "/"); if (grp[p[n]] != $3) bad++; rows++ }
        END { exit !(rows == 64 && bad == 0) }' FS=, "$csv" FS='\t' "$dst/split.tsv"
    [ "$(awk -F'\t' '$3 == "test" { print $2 }' "$dst/split.tsv" | sort -u | tr '\n' ' ')" = "14-13200 14-2523 14-9133 " ]
    [ -f "$dst/100X/test/0/SOB_B_F-14-9133-100-001.png" ]
    # a row missing from the fold is an error for that image
    grep -v 'SOB_M_PC-14-9146-40-001' "$csv" > "$BATS_TEST_TMPDIR/short.csv"
    run --separate-stderr reorg-breakhis -n --folds "$BATS_TEST_TMPDIR/short.csv" --fold 1 "$OFFICIAL" "$BATS_TEST_TMPDIR/x"
    [ "$status" -eq 1 ]
    grep -qF "SOB_M_PC-14-9146-40-001.png: not in fold 1 of $BATS_TEST_TMPDIR/short.csv" <<<"$stderr"
    [ "$(grep -c -- ' -> ' <<<"$output")" -eq 63 ]
    # a patient on both sides is said, and the csv is still followed
    sed 's|^1,200,train,\(.*SOB_B_A-14-22549AB-200-001.png\)$|1,200,test,\1|' "$csv" > "$BATS_TEST_TMPDIR/mixed.csv"
    [ "$(cmp "$csv" "$BATS_TEST_TMPDIR/mixed.csv" | wc -l)" -eq 1 ]
    run --separate-stderr reorg-breakhis -n --folds "$BATS_TEST_TMPDIR/mixed.csv" --fold 1 "$OFFICIAL" "$BATS_TEST_TMPDIR/x"
    [ "$status" -eq 0 ]
    [ "${stderr_lines[0]}" = "reorg-breakhis: patient 14-22549AB is in both train and test in fold 1 of $BATS_TEST_TMPDIR/mixed.csv" ]
    grep -qF "/SOB_B_A-14-22549AB-200-001.png -> $BATS_TEST_TMPDIR/x/200X/test/0/SOB_B_A-14-22549AB-200-001.png" <<<"$output"
}

@test "a bad Folds.csv stops the run before anything is written" {
    printf 'fold,grp,filename\n1,train,x.png\n' > "$BATS_TEST_TMPDIR/bad.csv"
    run --separate-stderr reorg-breakhis --folds "$BATS_TEST_TMPDIR/bad.csv" --fold 1 "$OFFICIAL" "$BATS_TEST_TMPDIR/out"
    [ "$status" -eq 1 ]
    [ "$output" = "" ]
    [ "$stderr" = "reorg-breakhis: $BATS_TEST_TMPDIR/bad.csv: line 1: not the header fold,mag,grp,filename" ]
    [ ! -e "$BATS_TEST_TMPDIR/out" ]
    printf 'fold,mag,grp,filename\n1,40,validation,a/SOB_B_A-14-22549AB-40-001.png\n' > "$BATS_TEST_TMPDIR/bad.csv"
    run --separate-stderr reorg-breakhis --folds "$BATS_TEST_TMPDIR/bad.csv" --fold 1 "$OFFICIAL" "$BATS_TEST_TMPDIR/out"
    [ "$status" -eq 1 ]
    [ "$stderr" = "reorg-breakhis: $BATS_TEST_TMPDIR/bad.csv: line 2: group 'validation' is not train or test" ]
    [ ! -e "$BATS_TEST_TMPDIR/out" ]
}

@test "layout: detected, forced, or neither" {
    run --separate-stderr reorg-breakhis -n --layout official "$KAGGLE" "$BATS_TEST_TMPDIR/out"
    [ "$status" -eq 0 ]
    [ "$(grep -c -- ' -> ' <<<"$output")" -eq 0 ]
    [ "${stderr_lines[-1]}" = "reorg-breakhis: to place 0, already there 0, unknown 66, errors 0" ]
    mkdir "$BATS_TEST_TMPDIR/empty"
    run --separate-stderr reorg-breakhis "$BATS_TEST_TMPDIR/empty" "$BATS_TEST_TMPDIR/out"
    [ "$status" -eq 1 ]
    [ "$stderr" = "reorg-breakhis: $BATS_TEST_TMPDIR/empty: neither a Kaggle fold (train/, test/) nor the official tree (histology_slides/, breast/)" ]
    # options that need the official tree, on a detected Kaggle fold
    run --separate-stderr reorg-breakhis --seed 3 "$KAGGLE" "$BATS_TEST_TMPDIR/out"
    [ "$status" -eq 1 ]
    [[ $stderr == *"a Kaggle fold is already split: --folds, --ratio and --seed apply to the official tree only" ]]
    [ ! -e "$BATS_TEST_TMPDIR/out" ]
}

@test "bad usage exits 2 with the usage on stderr" {
    for args in "" "a" "a b c" "--link soft a b" "--layout x a b" "--fold 1 a b" \
                "--folds f a b" "--folds f --fold 1 --layout kaggle a b" \
                "--folds f --fold 1 --seed 2 a b" "--ratio 0.5 --layout kaggle a b" \
                "--ratio 1 a b" "--ratio x a b" "--fold 6 --folds f a b" "--seed -1 a b" "--bogus a b"; do
        run --separate-stderr reorg-breakhis $args
        [ "$status" -eq 2 ] || { echo "args: $args"; false; }
        [ "$output" = "" ]
        [[ $stderr == *"usage: reorg-breakhis "* ]]
    done
    run --separate-stderr reorg-breakhis --fold 1 a b
    [ "${stderr_lines[0]}" = "reorg-breakhis: --fold needs --folds" ]
    run --separate-stderr reorg-breakhis --ratio 1.5 a b
    [ "${stderr_lines[0]}" = "reorg-breakhis: --ratio: 1.5 is out of range [0, 1]" ]
}

@test "-h prints the usage to stdout" {
    run --separate-stderr reorg-breakhis -h
    [ "$status" -eq 0 ]
    [ "$stderr" = "" ]
    [[ ${lines[0]} == "usage: reorg-breakhis [-hn] [--link hard|sym|copy] [--layout kaggle|official]" ]]
    [[ $output == *"--ratio R"*"[0.7]"* ]]
}

@test "a missing SRC exits 1 with a message" {
    run --separate-stderr reorg-breakhis "$BATS_TEST_TMPDIR/nowhere" "$BATS_TEST_TMPDIR/out"
    [ "$status" -eq 1 ]
    [ "$output" = "" ]
    [ "$stderr" = "reorg-breakhis: $BATS_TEST_TMPDIR/nowhere: No such file or directory" ]
    [ ! -e "$BATS_TEST_TMPDIR/out" ]
}
