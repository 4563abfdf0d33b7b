# breakhis_tree DIR: a small BreakHis tree in the official archive's exact
# layout and file names (DIR/BreaKHis_v1/histology_slides/breast/<class>/
# SOB/<type>/SOB_<B|M>_<type>_<patient>/<mag>X/SOB_<B|M>_<type>-<patient>-
# <mag>-<seq>.png), made from the committed BreakHis image: 4 benign and 4
# malignant patients, 40X and 100X, 2 images each, 32 in all.  Each image is
# a 256x224 crop at its own place, mirrored for the second image; the
# malignant ones are darkened (pamfunc), so there is something to learn.
breakhis_tree() {
    local root=$1/BreaKHis_v1/histology_slides/breast entry cls code patient mag seq n=0
    local -a patients=("B A 14-22549AB" "B F 14-9133" "B PT 14-21998AB" "B TA 14-3411F"
                       "M DC 14-2523" "M LC 14-15570C" "M MC 14-13418DE" "M DC 14-13412")
    pngtopam "$BREAKHIS" > "$1/full.pam"
    for entry in "${patients[@]}"; do
        read -r cls code patient <<< "$entry"
        local class=benign type
        [[ $cls == M ]] && class=malignant
        case $code in
        A) type=adenosis ;; F) type=fibroadenoma ;; PT) type=phyllodes_tumor ;;
        TA) type=tubular_adenoma ;; DC) type=ductal_carcinoma ;;
        LC) type=lobular_carcinoma ;; MC) type=mucinous_carcinoma ;;
        PC) type=papillary_carcinoma ;;
        esac
        for mag in ${BREAKHIS_MAGS:-40 100}; do
            local dir=$root/$class/SOB/$type/SOB_${cls}_${code}_$patient/${mag}X
            mkdir -p "$dir"
            for seq in 001 002; do
                n=$((n + 1))
                pamcut -left $((n * 13 % 444)) -top $((n * 7 % 236)) -width 256 -height 224 "$1/full.pam" |
                    { [[ $seq == 002 ]] && pamflip -lr || cat; } |
                    { [[ $cls == M ]] && pamfunc -multiplier=0.7 || cat; } |
                    pnmtopng > "$dir/SOB_${cls}_$code-$patient-$mag-$seq.png"
            done
        done
    done
    rm "$1/full.pam"
}
