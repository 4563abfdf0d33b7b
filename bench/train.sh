#!/usr/bin/env bash
# bench/train.sh: amil's training step and inference against PyTorch's
# (Debian's python3-torch), the same model on the same bag sizes and thread
# counts, run side by side in one go, alternating, so that the machine's
# noise falls on both.  Prints the times, the ratios, and the GFLOP/s reached
# against this machine's SGEMM rate, measured here too.  floor_ms is the
# time the step's multiply-adds take at that SGEMM rate: no implementation
# of direct convolution can be faster, so torch_ms / floor_ms (max_ratio) is
# the largest ratio one could reach without doing fewer operations
# (Winograd or FFT convolution).
#
#   bench/train.sh [SECONDS]      (per measurement; default 3)
#
# Cases: a BreakHis-sized bag (400 patches, 3x28x28) and an MNIST-bags bag
# (10 instances, 1x28x28), at 1 and 2 threads.
set -eu
cd "$(dirname "$0")/.."
seconds=${1:-3}
python=/usr/bin/python3
"$python" -c 'import torch' 2>/dev/null || { echo "bench/train.sh: python3-torch is missing (apt-get install python3-torch)"; exit 1; }
make -s all
build=build/bench
mkdir -p "$build"
cc -O3 -g -fno-math-errno -std=c11 -D_POSIX_C_SOURCE=200809L -Icommon \
    -I/usr/include/x86_64-linux-gnu/openblas-pthread -o "$build/step" bench/step.c \
    build/libamil.a -lopenblas -lgsl -lcjson -lm
cc -O3 -std=c11 -D_POSIX_C_SOURCE=200809L -I/usr/include/x86_64-linux-gnu/openblas-pthread \
    -o "$build/sgemm" bench/sgemm.c -lopenblas

printf '%-26s %10s %10s %7s %12s %9s %9s\n' case amil_ms torch_ms ratio amil_GFLOP/s floor_ms max_ratio
for threads in 1 2; do
    peak=$("$build/sgemm" "$threads")
    for shape in "400 3" "10 1"; do
        set -- $shape
        ours=$("$build/step" "$1" "$2" "$threads" "$seconds")
        theirs=$("$python" bench/torch_step.py "$1" "$2" "$threads" "$seconds")
        read -r our_train our_infer gflop_train gflop_infer <<< "$ours"
        read -r torch_train torch_infer <<< "$theirs"
        for what in train infer; do
            if [ $what = train ]; then a=$our_train b=$torch_train g=$gflop_train
            else a=$our_infer b=$torch_infer g=$gflop_infer; fi
            floor=$(awk -v g="$g" -v p="$peak" 'BEGIN { print g / p * 1e3 }')
            printf '%-26s %10.2f %10.2f %6.2fx %12.1f %9.2f %8.2fx\n' \
                "$what $1x${2}x28x28 j$threads" "$a" "$b" \
                "$(awk -v a="$a" -v b="$b" 'BEGIN { print b / a }')" \
                "$(awk -v g="$g" -v a="$a" 'BEGIN { print g / a * 1e3 }')" \
                "$floor" "$(awk -v f="$floor" -v b="$b" 'BEGIN { print b / f }')"
        done
    done
    echo "SGEMM 1024^3 with $threads thread(s): $peak GFLOP/s"
done
