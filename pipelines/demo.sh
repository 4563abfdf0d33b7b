#!/usr/bin/env bash
# make demo: the programs on the committed data, in about a minute.
# Everything lands in $OUT (build/demo by default); see README.
#
# 1. MNIST-bags (Ilse et al. 2018) from the committed MNIST subset: train
#    the paper's model on 200 bags with Ilse et al.'s settings (20 epochs,
#    Adam, lr 5e-4; about 11 s on one core), score 100 test bags, measure
#    how well the attention finds the 9s, draw it over a few test bags.
#    100 bags for 15 epochs, as before, called every test bag positive.
# 2. The real BreakHis image: its bag, and what stitch draws.  No BreakHis
#    model can be trained here (no dataset), so these maps use a stand-in
#    attention, the softmax of each patch's darkness (the test helper
#    recpass): they show stitch, not a model.
# 3. The paper's comparison figure on the real BreakHis image
#    (pipelines/compare.sh), with stand-in models: the small attention-MIL
#    model of the PyTorch tests (hash weights, untrained), and the paper's
#    CNN `net` trained for a few seconds to tell the image from its
#    negative.  They show the programs, not a finding.
# 4. reorg-breakhis on a tiny tree in the Kaggle layout.
set -eu
cd "$(dirname "$0")/.."
build=${BUILD:-build}
out=${OUT:-$build/demo}
export PATH="$PWD/$build/bin:$PWD/$build/tests:$PATH"
image=tests/data/SOB_B_A-14-22549G-40-001.png
rm -rf "$out"
mkdir -p "$out"

echo "== MNIST-bags: 200 training bags, 100 test bags (target digit 9)"
mnist=tests/data/mnist
m=$out/mnist
mnist-bags -o "$m/train" -n 200 -r 1 $mnist/train-images-idx3-ubyte.gz $mnist/train-labels-idx1-ubyte.gz
mnist-bags -o "$m/test" -n 100 -r 2 $mnist/t10k-images-idx3-ubyte.gz $mnist/t10k-labels-idx1-ubyte.gz
bagify -g -c none -L dir "$m"/train/*/*.png > "$m/train.bags"
bagify -g -c none -L dir "$m"/test/*/*.png > "$m/test.bags"
echo "training for 20 epochs (the log: $m/log.tsv)"
train -q -o "$m/model.st" -e 20 --lr 5e-4 --test "$m/test.bags" "$m/train.bags" > "$m/log.tsv"
featurize -m "$m/model.st" "$m/test.bags" | attend -m "$m/model.st" | tee "$m/attention.rec" |
    classify -m "$m/model.st" -t > "$m/table.tsv"
evaluate "$m/table.tsv" | tee "$m/metrics.txt"
echo "-- the attention against the digits, over the positive test bags:"
localize -i "$m/test/bags.tsv" "$m/attention.rec" | tee "$m/localize.txt"
# three positive test bags, their attention as heat over the strip
awk -F'\t' '$2 == 1 { print $1 }' "$m/test/bags.tsv" | head -n 3 > "$m/shown"
bagify -g -c none -L dir $(cat "$m/shown") | featurize -m "$m/model.st" |
    attend -m "$m/model.st" | stitch -d "$m/heat" --cmap viridis -a 0.6
echo "heat maps of three positive test bags in $m/heat/:"
paste "$m/shown" <(while read -r f; do awk -F'\t' -v f="$f" '$1 == f { print "digits " $4 }' "$m/test/bags.tsv"; done < "$m/shown")
# The paper's comparison, in small: the bag, the model's attention, and
# Grad-CAM of the same model, one above the other with captions (netpbm).
f=$(head -n 1 "$m/shown")
bagify -g -c none "$f" > "$m/one.bag"
featurize -m "$m/model.st" "$m/one.bag" | attend -m "$m/model.st" |
    stitch --cmap viridis -a 0.6 --no-legend -f pam | pamtopnm > "$m/attention.ppm"
gradcam -m "$m/model.st" --cmap viridis -a 0.6 -f pam < "$m/one.bag" | pamtopnm > "$m/gradcam.ppm"
pngtopam "$f" | pgmtoppm white > "$m/image.ppm"
for caption in image attention Grad-CAM; do
    pbmtext -builtin fixed "$caption" > "$m/caption-$caption.pbm"
done
pnmcat -tb -jleft -white "$m/caption-image.pbm" "$m/image.ppm" \
    "$m/caption-attention.pbm" "$m/attention.ppm" "$m/caption-Grad-CAM.pbm" "$m/gradcam.ppm" |
    pnmscale 2 | pnmtopng > "$m/compare.png"
rm -f "$m"/*.ppm "$m"/*.pbm "$m/one.bag"
echo "the bag, its attention and its Grad-CAM: $m/compare.png"

echo
echo "== bagify: the paper's 28x28 bag of a real BreakHis image"
bagify -L breakhis "$image" > "$out/breakhis.bag"
recinfo "$out/breakhis.bag" | grep -E 'record|label|patient|crop_|tensor'

echo
echo "== bagify -s 14 -b 0.5: overlapping patches, glass and fat dropped"
bagify -s 14 -b 0.5 "$image" > "$out/fine.bag"
recinfo "$out/fine.bag" | grep -E 'patches_dropped|tensor'

echo
echo "== stitch: heat maps and the paper's picture (stand-in attention, not a model's)"
recpass -a darkness < "$out/breakhis.bag" | stitch --top 5 -o "$out/heat.png"
recpass -a darkness < "$out/fine.bag" | stitch --cmap viridis -o "$out/heat-fine.png"
recpass -a darkness < "$out/breakhis.bag" | stitch --style paper -o "$out/paper.png"
ls -l "$out"/*.png | awk '{ print $5, $NF }'

echo
echo "== the paper's comparison figure (stand-in models, not trained on BreakHis)"
c=$out/compare
mkdir -p "$c"
pngtopam "$image" > "$c/0.pam"
pamflip -lr "$c/0.pam" > "$c/1.pam"
for f in 0 1; do pnminvert "$c/$f.pam" > "$c/n$f.pam"; done
{ bagify -w -l 0 "$c/0.pam" "$c/1.pam"; bagify -w -l 1 "$c/n0.pam" "$c/n1.pam"; } > "$c/images"
train -q --arch net -o "$c/net.st" -e 6 -b 4 --lr 1e-4 "$c/images" > "$c/net-log.tsv"
pipelines/compare.sh -a tests/data/torch-state-dict.safetensors -c "$c/net.st" \
    -o "$out/compare.png" "$image"
rm -f "$c"/*.pam "$c/images" "$c/net.st.ckpt"
echo "the image, A-MIL attention, net's Grad-CAM and Guided Grad-CAM: $out/compare.png"

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
echo "results in $out/: mnist/ (metrics.txt, localize.txt, log.tsv, heat/, compare.png),"
echo "  breakhis.bag fine.bag heat.png heat-fine.png paper.png compare.png data/"
