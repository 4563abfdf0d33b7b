#!/usr/bin/env bash
# bench/cnn.sh: the CNN baselines (torchvision's VGG19 and ResNet18, PyTorch's
# default initialization) on one 224x224 tile against torchvision's own, side
# by side in one go: the forward pass and Grad-CAM (forward, then backward of
# one class score down to the Grad-CAM layer only).  Each side runs ROUNDS
# times, alternating, each run a fresh process pinned with taskset; a figure
# is the minimum over the runs.  Then the start-up time of each program that
# loads a model, with each model and no input: the best of ROUNDS runs.
#
#   bench/cnn.sh [ROUNDS] [SECONDS] [ISA...]   (defaults: 5, 1, the best)
#
# ISA: avx512, avx2 or portable (AMIL_ISA for amil's side); several give a
# table each.
set -eu
cd "$(dirname "$0")/.."
rounds=${1:-5}
seconds=${2:-1}
shift $(($# < 2 ? $# : 2))
python=/usr/bin/python3
"$python" -c 'import torchvision' 2>/dev/null ||
    { echo "bench/cnn.sh: python3-torchvision is missing (apt-get install python3-torchvision)"; exit 1; }
make -s bench
build=build/bench
models=$(mktemp -d)
trap 'rm -rf "$models"' EXIT
for arch in vgg19 resnet18; do
    build/tests/cnnmodel $arch 1000 imagenet > "$models/$arch.st"
done
build/tests/cnnmodel net 2 > "$models/net.st"
build/bin/bagify -l 1 tests/data/SOB_B_A-14-22549G-40-001.png |
    build/bin/train -o "$models/amil.st" -e 1 - > /dev/null 2>&1
sync   # 600 MB just written: let its writeback finish before timing

min() { awk -v a="$1" -v b="$2" 'BEGIN { print (b == "" || a < b) ? a : b }'; }

peak512=$(taskset -c 0 "$build/peak" avx512 2>/dev/null || echo 0)
peak256=$(taskset -c 0 "$build/peak" avx2 2>/dev/null || echo 0)
echo "FMA peak, one core: AVX-512 $peak512 GFLOP/s, AVX2 $peak256 GFLOP/s"
echo "(figures: the minimum over $rounds alternating runs of each side, each of ${seconds} s;"
echo " GFLOP/s count a direct convolution's operations: Winograd's are fewer, so"
echo " its share of the peak can pass 100%)"
isas=${*:-}
[ -n "$isas" ] || isas=$("$build/step" --isa | cut -d' ' -f1)
for isa in $isas; do
    case $isa in avx512) peak=$peak512 ;; *) peak=$peak256 ;; esac
    echo
    echo "amil's $isa kernels against torchvision"
    printf '%-22s %9s %9s %7s %8s %7s\n' case amil_ms torch_ms ratio GFLOP/s of_peak
    for threads in 1 2; do
        cores=$([ "$threads" = 1 ] && echo 0 || echo 0-1)
        for arch in resnet18 vgg19; do
            af= ag= tf= tg=
            for ((r = 0; r < rounds; r++)); do
                read -r a b gflop _ < <(AMIL_ISA=$isa taskset -c "$cores" "$build/cnn" \
                    "$models/$arch.st" "$threads" "$seconds")
                af=$(min "$a" "$af") ag=$(min "$b" "$ag")
                read -r a b < <(taskset -c "$cores" "$python" bench/torch_cnn.py "$arch" \
                    "$threads" "$seconds")
                tf=$(min "$a" "$tf") tg=$(min "$b" "$tg")
            done
            for what in forward gradcam; do
                if [ $what = forward ]; then a=$af b=$tf; else a=$ag b=$tg; fi
                awk -v w="$arch $what j$threads" -v a="$a" -v b="$b" -v g="$gflop" \
                    -v p="$peak" -v t="$threads" 'BEGIN {
                        r = g / a * 1e3
                        printf "%-22s %9.2f %9.2f %6.2fx %8.1f %6.0f%%\n", w, a, b, b / a, r,
                            (p > 0 ? 100 * r / (p * t) : 0) }'
            done
        done
    done
done

# Start-up: a program given a model and an empty input, to its exit ("-":
# the program does not take that model).
echo
echo "start-up, ms (the best of $rounds runs; no input)"
printf '%-12s' program
for model in amil net resnet18 vgg19; do printf '%10s' "$model"; done
echo
for prog in featurize attend classify; do
    printf '%-12s' "$prog"
    for model in amil net resnet18 vgg19; do
        best=
        for ((r = 0; r < rounds; r++)); do
            start=$(date +%s%N)
            if taskset -c 0 build/bin/$prog -m "$models/$model.st" < /dev/null \
                > /dev/null 2>&1; then
                best=$(min $((($(date +%s%N) - start) / 1000000)) "$best")
            fi
        done
        printf '%10s' "${best:--}"
    done
    echo
done
