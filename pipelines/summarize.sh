#!/usr/bin/env bash
# pipelines/summarize.sh OUT 'GROUPS' 'MODELS' [GROUP_NAME]: the summary of
# a study (breakhis.mk, bach.mk): OUT/results.tsv and OUT/results.md, one
# row per group (magnification) and model, the numbers of evaluate's
# OUT/<group>/<model>/metrics.txt ("-" where it has none: patients, for
# BACH).
set -euo pipefail
[ $# -eq 3 ] || [ $# -eq 4 ] || { echo "usage: summarize.sh OUT 'GROUPS' 'MODELS' [GROUP_NAME]" >&2; exit 2; }
out=$1 mags=$2 models=$3 group_name=${4:-magnification}
keys="images patients accuracy auc patient_recognition_rate"
{
    printf '%s\tmodel' "$group_name"
    printf '\t%s' $keys
    printf '\n'
    for mag in $mags; do
        for model in $models; do
            printf '%s\t%s' "$mag" "$model"
            for key in $keys; do
                awk -F'\t' -v k="$key" '$1 == k { v = $2 } END { printf "\t%s", v == "" ? "-" : v }' \
                    "$out/$mag/$model/metrics.txt"
            done
            printf '\n'
        done
    done
} > "$out/results.tsv"
awk -F'\t' 'NR == 1 { printf "|"; for (i = 1; i <= NF; i++) printf " %s |", $i; printf "\n|";
                      for (i = 1; i <= NF; i++) printf "%s|", i <= 2 ? "---" : "---:"; printf "\n"; next }
            { printf "|"; for (i = 1; i <= NF; i++) printf " %s |", $i; printf "\n" }' \
    "$out/results.tsv" > "$out/results.md"
cat "$out/results.md"
