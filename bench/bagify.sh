#!/usr/bin/env bash
# bench/bagify.sh [N]: how fast bagify cuts the real 700×460 BreakHis PNG
# into its 400-patch bag, on one core, against peers run side by side in
# the same rounds (the machine is shared: compare ratios, not seconds).
#
#   bagify          one process over N images (how a dataset is cut)
#   bagify/exec     one process per image, as `xargs -n 1` would run it
#   pngtopam/exec   netpbm's libpng decoder, one process per image: the
#                   decoding alone, with no patches and no record
#
# The target is 100 images per second or more for `bagify`.
set -eu
cd "$(dirname "$0")/.."
n=${1:-300}
rounds=${ROUNDS:-3}
make -s all
bin=$PWD/build/bin
image=$PWD/tests/data/SOB_B_A-14-22549G-40-001.png
one_core="taskset -c 0"
command -v taskset >/dev/null || one_core=

files=()
for ((i = 0; i < n; i++)); do files+=("$image"); done

now() { date +%s.%N; }
rate() { awk -v n="$n" -v s="$1" 'BEGIN { printf "%.1f", n / s }'; }

declare -A total
for ((r = 1; r <= rounds; r++)); do
    t0=$(now); $one_core "$bin/bagify" "${files[@]}" > /dev/null; t1=$(now)
    for f in "${files[@]}"; do $one_core "$bin/bagify" "$f"; done > /dev/null; t2=$(now)
    for f in "${files[@]}"; do $one_core pngtopam "$f"; done > /dev/null; t3=$(now)
    total[bagify]=$(awk -v a="${total[bagify]:-0}" -v d="$(awk -v x="$t0" -v y="$t1" 'BEGIN{print y-x}')" 'BEGIN{print a+d}')
    total[exec]=$(awk -v a="${total[exec]:-0}" -v d="$(awk -v x="$t1" -v y="$t2" 'BEGIN{print y-x}')" 'BEGIN{print a+d}')
    total[pngtopam]=$(awk -v a="${total[pngtopam]:-0}" -v d="$(awk -v x="$t2" -v y="$t3" 'BEGIN{print y-x}')" 'BEGIN{print a+d}')
done
n=$((n * rounds))
printf '%-16s %10s %s\n' "" "images/s" "ratio to pngtopam/exec"
for k in bagify exec pngtopam; do
    name=$k; [ "$k" = exec ] && name=bagify/exec; [ "$k" = pngtopam ] && name=pngtopam/exec
    printf '%-16s %10s %.2f\n' "$name" "$(rate "${total[$k]}")" \
        "$(awk -v a="${total[pngtopam]}" -v b="${total[$k]}" 'BEGIN{print a / b}')"
done
awk -v s="${total[bagify]}" -v n="$n" 'BEGIN { exit !(n / s >= 100) }' &&
    echo "bagify: at least 100 images/s: yes" || echo "bagify: at least 100 images/s: NO"
