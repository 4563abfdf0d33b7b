#!/usr/bin/env bash
# make demo: the programs that exist so far, on the committed real images.
# Everything lands in $OUT (build/demo by default); see README.
#
# attend does not exist yet (issue 3), so the heat maps here use a stand-in
# attention, the softmax of each patch's darkness, made by the test helper
# recpass.  They show what stitch draws, not what a model attends to.
set -eu
cd "$(dirname "$0")/.."
build=${BUILD:-build}
out=${OUT:-$build/demo}
export PATH="$PWD/$build/bin:$PWD/$build/tests:$PATH"
image=tests/data/SOB_B_A-14-22549G-40-001.png
rm -rf "$out"
mkdir -p "$out"

echo "== bagify: the paper's 28x28 bag of a real BreakHis image"
bagify -L breakhis "$image" > "$out/breakhis.bag"
recinfo "$out/breakhis.bag" | grep -E 'record|label|patient|crop_|tensor'

echo
echo "== bagify -s 14 -b 0.5: overlapping patches, glass and fat dropped"
bagify -s 14 -b 0.5 "$image" > "$out/fine.bag"
recinfo "$out/fine.bag" | grep -E 'patches_dropped|tensor'

echo
echo "== stitch: heat maps and the paper's picture (stand-in attention)"
recpass -a darkness < "$out/breakhis.bag" | stitch --top 5 -o "$out/heat.png"
recpass -a darkness < "$out/fine.bag" | stitch --cmap viridis -o "$out/heat-fine.png"
recpass -a darkness < "$out/breakhis.bag" | stitch --style paper -o "$out/paper.png"
ls -l "$out"/*.png | awk '{ print $5, $NF }'

echo
echo "== reorg-breakhis: a Kaggle-style fold into the paper's layout"
src="$out/kaggle/fold1"
for split in train test; do
    for mag in 40 100; do
        mkdir -p "$src/$split/${mag}X/B_${mag}X" "$src/$split/${mag}X/M_${mag}X"
        p=$([ $split = train ] && echo 22549G || echo 13412)
        cp "$image" "$src/$split/${mag}X/B_${mag}X/SOB_B_A-14-$p-$mag-001.png"
        cp "$image" "$src/$split/${mag}X/M_${mag}X/SOB_M_DC-14-$p-$mag-001.png"
    done
done
reorg-breakhis "$src" "$out/data" | awk 'NR == 1 || $NF > 0'
echo
echo "results in $out/: breakhis.bag fine.bag heat.png heat-fine.png paper.png data/"
