#!/usr/bin/env bash
# bench/stainnorm.sh: images per second of stainnorm on the 700 × 460
# BreakHis image (tests/data), torchstain's target as the reference, one
# core, Macenko and Reinhard; beside it the same work in NumPy
# (bench/stainnorm_numpy.py: tests/stains.py's transcription of the
# papers, PNG in and out with PIL).  Each side normalizes IMAGES copies
# [50] in one process, the reference fitted once; the figure is the best
# of RUNS [5] alternating runs.
set -eu -o pipefail
cd "$(dirname "$0")/.."
make -s all
bin=$PWD/build/bin
one_core="taskset -c ${CORE:-1}"
command -v taskset >/dev/null || one_core=
images=${IMAGES:-50} runs=${RUNS:-5}
py=/usr/bin/python3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for i in $(seq "$images"); do
    ln -s "$PWD/tests/data/SOB_B_A-14-22549G-40-001.png" "$tmp/image$i.png"
done
ref=tests/data/torchstain-target.png

seconds() {
    /usr/bin/time -f "%e" -o "$tmp/time" $one_core "$@" > /dev/null
    cat "$tmp/time"
}

echo "stainnorm on $images BreakHis images of 700x460, one core, best of $runs runs"
for method in macenko reinhard; do
    ours=1e9 theirs=1e9
    for run in $(seq "$runs"); do
        rm -rf "$tmp/ours" "$tmp/theirs" && mkdir "$tmp/theirs"
        s=$(seconds "$bin/stainnorm" -m $method -r $ref -d "$tmp/ours" "$tmp"/image*.png)
        ours=$(awk -v a="$ours" -v b="$s" 'BEGIN { print (b < a ? b : a) }')
        s=$(seconds "$py" bench/stainnorm_numpy.py $method $ref "$tmp/theirs" "$tmp"/image*.png)
        theirs=$(awk -v a="$theirs" -v b="$s" 'BEGIN { print (b < a ? b : a) }')
    done
    awk -v m=$method -v n="$images" -v o="$ours" -v t="$theirs" 'BEGIN {
        printf "%-9s stainnorm %6.1f images/s   NumPy %6.1f images/s   ratio %.1fx\n",
               m, n / o, n / t, t / o }'
done
