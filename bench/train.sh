#!/usr/bin/env bash
# bench/train.sh: amil's training step and inference against PyTorch's
# (Debian's python3-torch, which runs its convolutions on oneDNN's AVX-512
# code), the same model on the same bags and thread counts, side by side in
# one go.  Each side runs ROUNDS times, alternating, each run a fresh
# process pinned with taskset; a figure is the minimum over the runs, so
# that each side is compared at its best (PyTorch's training step is
# bimodal here from process to process).
#
# Also measured in the same run: the FMA peak of one core (bench/peak.c, a
# loop of our own, not a BLAS), so that GFLOP/s can be read as a share of
# what the hardware can do.
#
#   bench/train.sh [ROUNDS] [SECONDS] [ISA...]   (defaults: 5, 1, the best)
#
# ISA: avx512, avx2 or portable (AMIL_ISA for amil's side); several give a
# table each.  Cases: a BreakHis bag (400 patches, 3x28x28) and an
# MNIST-bags bag (10 instances, 1x28x28), at 1 and 2 threads (cores 0 and
# 0-1).
#
# Then the same two steps through the programs: train's own time a step
# (the per-epoch seconds it prints, the fastest epoch after the first, over
# the bags of the epoch) on real bags that bagify cut: 20 bags of the
# BreakHis image's 400 patches, and 200 MNIST-bags of 10 digits
# (mnist-bags -s 0), against PyTorch's best step of this run.
set -eu
cd "$(dirname "$0")/.."
rounds=${1:-5}
seconds=${2:-1}
shift $(($# < 2 ? $# : 2))
python=/usr/bin/python3
"$python" -c 'import torch' 2>/dev/null || { echo "bench/train.sh: python3-torch is missing (apt-get install python3-torch)"; exit 1; }
make -s bench
build=build/bench

min() { awk -v a="$1" -v b="$2" 'BEGIN { print (b == "" || a < b) ? a : b }'; }

peak512=$(taskset -c 0 "$build/peak" avx512 2>/dev/null || echo 0)
peak256=$(taskset -c 0 "$build/peak" avx2 2>/dev/null || echo 0)
echo "FMA peak, one core: AVX-512 $peak512 GFLOP/s, AVX2 $peak256 GFLOP/s"
echo "(figures: the minimum over $rounds alternating runs of each side, each of ${seconds} s;"
echo " GFLOP/s counts a direct convolution's operations: the convolutions run as Winograd's,"
echo " with fewer, so the share of the peak can pass 100%)"
declare -A torch_best   # PyTorch's best training step of each case, over every table
isas=${*:-}
[ -n "$isas" ] || isas=$("$build/step" --isa)
for isa in $isas; do
    case $isa in avx512) peak=$peak512 ;; avx2) peak=$peak256 ;; *) peak=$peak256 ;; esac
    echo
    echo "amil's $isa kernels against PyTorch"
    printf '%-22s %9s %9s %7s %8s %7s\n' case amil_ms torch_ms ratio GFLOP/s of_peak
    for threads in 1 2; do
        cores=$([ "$threads" = 1 ] && echo 0 || echo 0-1)
        for shape in "400 3" "10 1"; do
            set -- $shape
            ot= oi= tt= ti=
            for ((r = 0; r < rounds; r++)); do
                read -r a b gtrain ginfer < <(AMIL_ISA=$isa taskset -c "$cores" \
                    "$build/step" "$1" "$2" "$threads" "$seconds")
                ot=$(min "$a" "$ot") oi=$(min "$b" "$oi")
                read -r a b < <(taskset -c "$cores" "$python" bench/torch_step.py \
                    "$1" "$2" "$threads" "$seconds")
                tt=$(min "$a" "$tt") ti=$(min "$b" "$ti")
            done
            torch_best[$1x$2j$threads]=$(min "$tt" "${torch_best[$1x$2j$threads]:-}")
            for what in train infer; do
                if [ $what = train ]; then a=$ot b=$tt g=$gtrain; else a=$oi b=$ti g=$ginfer; fi
                awk -v w="$what $1x${2}x28x28 j$threads" -v a="$a" -v b="$b" -v g="$g" \
                    -v p="$peak" -v t="$threads" 'BEGIN {
                        r = g / a * 1e3
                        printf "%-22s %9.2f %9.2f %6.2fx %8.1f %6.0f%%\n", w, a, b, b / a, r,
                            (p > 0 ? 100 * r / (p * t) : 0) }'
            done
        done
    done
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
bin=build/bin image=tests/data/SOB_B_A-14-22549G-40-001.png mnist=tests/data/mnist
for ((i = 0; i < 10; i++)); do
    "$bin/bagify" -b 0 -l 0 "$image" && "$bin/bagify" -b 0 -l 1 "$image"
done > "$work/400x3.bags"
"$bin/mnist-bags" -o "$work/mnist" -n 200 -s 0 "$mnist/train-images-idx3-ubyte.gz" \
    "$mnist/train-labels-idx1-ubyte.gz" 2> /dev/null
"$bin/bagify" -g -b 0 -L dir "$work"/mnist/*/*.png > "$work/10x1.bags"

# ms a step of `train -j THREADS` on FILE of BAGS bags: its fastest epoch
# after the first
program_step() {
    local cores=$([ "$3" = 1 ] && echo 0 || echo 0-1)
    taskset -c "$cores" "$bin/train" -q -e 3 -j "$3" -o "$work/model.st" "$1" |
        awk -v n="$2" 'NR > 2 && (m == "" || $NF < m) { m = $NF } END { print m * 1e3 / n }'
}

echo
echo "through the programs: train's step on real bags ($("$build/step" --isa | cut -d' ' -f1) kernels)"
printf '%-22s %9s %9s %7s\n' case train_ms torch_ms ratio
for threads in 1 2; do
    for shape in "400 3 20" "10 1 200"; do
        set -- $shape
        best=
        for ((r = 0; r < rounds; r++)); do
            best=$(min "$(program_step "$work/$1x$2.bags" "$3" "$threads")" "$best")
        done
        awk -v w="train $1x${2}x28x28 j$threads" -v a="$best" -v b="${torch_best[$1x$2j$threads]}" \
            'BEGIN { printf "%-22s %9.2f %9.2f %6.2fx\n", w, a, b, b / a }'
    done
done
