#!/usr/bin/env bash
# pipelines/bach-split.sh DATA DEST SEED RATIO: BACH's seeded stratified
# split, as symbolic links DEST/all/{train,test}/<class>/<name>.tif, classes
# Normal 0, Benign 1, InSitu 2, Invasive 3.  In each class the images are
# ordered by the MD5 of "SEED:name" (the same on any machine) and the first
# round(RATIO n) go to training.  Prints the split as TSV (file, class,
# split) on stdout.
set -euo pipefail
[ $# -eq 4 ] || { echo "usage: bach-split.sh DATA DEST SEED RATIO" >&2; exit 2; }
data=$1 dest=$2 seed=$3 ratio=$4
[ -d "$data/Photos" ] && data=$data/Photos
classes=(Normal Benign InSitu Invasive)
printf 'file\tclass\tsplit\n'
for label in 0 1 2 3; do
    dir=$data/${classes[$label]}
    [ -d "$dir" ] || { echo "bach-split.sh: no $dir" >&2; exit 1; }
    mapfile -t files < <(find "$dir" -maxdepth 1 -name '*.tif' -printf '%f\n' |
        while read -r f; do printf '%s %s\n' "$(printf '%s:%s' "$seed" "$f" | md5sum | cut -c1-32)" "$f"; done |
        sort | cut -d' ' -f2-)
    [ ${#files[@]} -gt 0 ] || { echo "bach-split.sh: no .tif in $dir" >&2; exit 1; }
    train=$(awk -v n=${#files[@]} -v r="$ratio" 'BEGIN { t = int(n * r + 0.5); if (t < 1) t = 1; if (t >= n && n > 1) t = n - 1; print t }')
    for i in "${!files[@]}"; do
        split=test
        [ "$i" -lt "$train" ] && split=train
        mkdir -p "$dest/all/$split/$label"
        ln -sf "$(cd "$dir" && pwd)/${files[$i]}" "$dest/all/$split/$label/${files[$i]}"
        printf '%s\t%s\t%s\n' "${files[$i]}" "$label" "$split"
    done
done
