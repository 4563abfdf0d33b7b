#!/usr/bin/env bats
# gradcam with the PyTorch state_dict of the small 3-channel model
# (tests/data/torch-state-dict.safetensors, $M) on the bag of the real
# BreakHis image: the raw map's shape, zeros and class, PyTorch's Grad-CAM
# of the same bag scaled and laid out as the page says, the pictures, and
# the refusals.
#
# On this bag the model predicts class 1, and class 1's map is 0 everywhere
# (every patch's sum of alpha_k A_k is negative); class 0's, its negation,
# is positive under every patch.  So the checks that need a map with
# something in it use --class 0.

load lib

# The bag and the raw maps of the default class and of class 0, made once:
# each gradcam run is a forward and a backward pass over 400 patches.
setup_file() {
    cd "$BATS_FILE_TMPDIR"
    bagify "$BREAKHIS" > bag
    gradcam -m "$M" -f record < bag > default.rec
    gradcam -m "$M" -f record --class 0 < bag > class0.rec
}

setup() {
    T=$BATS_TEST_TMPDIR
    F=$BATS_FILE_TMPDIR
}

@test "gradcam: usage" {
    run gradcam -h
    [ "$status" -eq 0 ]
    [[ "${lines[0]}" == "usage: gradcam -m MODEL "* ]]
    run gradcam < /dev/null
    [ "$status" -eq 2 ]
    [[ "$output" == "gradcam: no model: give -m MODEL"* && "$output" == *"usage: gradcam "* ]]
    for bad in "--format gif" "-f jpeg" "--class x" "--class -1" "--class 1001" \
               "--alpha 2" "--alpha -0.1" "--cmap rainbow" "a.png b.png" "--bogus" \
               "--downsample 0.5" "--width 0" "-D 2 -W 100" "--no-legend -f record" \
               "--no-legend --method guided"; do
        run gradcam -m "$M" $bad < /dev/null
        [ "$status" -eq 2 ] || { echo "gradcam $bad: $status"; return 1; }
        [[ "$output" == *"usage: gradcam "* ]] || { echo "gradcam $bad: $output"; return 1; }
    done
}

# cam_rows FILE: checks recinfo -t cam's rows: 460 of 700 values, none
# negative, all 0 in the 6 rows bagify's centre crop leaves out at the top
# and at the bottom (y < 6 or y >= 454); prints the number of positive
# values inside the crop.
cam_rows() {
    recinfo -t cam "$1" | awk -F'\t' '
        NF != 700 { print "row " NR - 1 ": " NF " values"; bad = 1 }
        { for (i = 1; i <= NF; i++) {
              if ($i < 0) { print "row " NR - 1 ": " $i; bad = 1 }
              if (NR <= 6 || NR > 454) { if ($i != 0) { print "cropped row " NR - 1 ": " $i; bad = 1 } }
              else if ($i > 0) positive++ } }
        END { if (NR != 460) { print NR " rows"; bad = 1 }
              print positive + 0; exit bad }'
}

@test "gradcam -f record: the raw map over the image, 0 outside the patches, never negative" {
    for rec in default.rec class0.rec; do
        run recinfo "$F/$rec"
        [[ "$output" == *"tensor cam F32 [460, 700]"* ]] || { echo "$output"; return 1; }
        [[ "$output" == *"cam_layer = feature_extractor_part1.3"* ]]
        [[ "$output" == *"tensor coords I32 [400, 2]"* ]]                  # passed on
        [[ "$output" == *"source = $BREAKHIS"* ]]
        [[ "$output" != *"tensor patches"* ]]                             # removed
    done
    run cam_rows "$F/default.rec"
    echo "$output"
    [ "$status" -eq 0 ]
    run cam_rows "$F/class0.rec"
    echo "$output"
    [ "$status" -eq 0 ]
    [ "${lines[-1]}" -gt 0 ]          # something to see
}

@test "gradcam: the default class is the one classify predicts" {
    bagify "$BREAKHIS" | featurize -m "$M" | attend -m "$M" | classify -m "$M" > "$T/c"
    predicted=$(recinfo -j "$T/c" | sed -n 's/.*"predicted": *"\([0-9]*\)".*/\1/p')
    [ -n "$predicted" ]
    run recinfo "$F/default.rec"
    [[ "$output" == *"cam_class = $predicted"* ]] || { echo "predicted $predicted; $output"; return 1; }
    gradcam -m "$M" -f record --class "$predicted" < "$F/bag" | cmp - "$F/default.rec"
}

@test "gradcam --class: another class, another map; a class the model lacks is refused" {
    recinfo "$F/class0.rec" | grep -qx '  cam_class = 0'
    gradcam -m "$M" -f record --class 1 < "$F/bag" > "$T/class1.rec"
    recinfo "$T/class1.rec" | grep -qx '  cam_class = 1'
    ! cmp -s <(recinfo -t cam "$F/class0.rec") <(recinfo -t cam "$T/class1.rec") || false
    run bash -c "gradcam -m '$M' -f record --class 2 < '$F/bag' > '$T/out'"
    [ "$status" -eq 1 ]
    [ "$output" = "gradcam: <stdin>: record 0: --class 2: the model has 2 classes" ]
    assert_empty "$T/out"
}

@test "gradcam -f record takes a stream" {
    bagify "$BREAKHIS" "$IHC" | gradcam -m "$M" -f record --class 0 > "$T/two"
    run recinfo "$T/two"
    [[ "$output" == *"record 1"* && "$output" == *"tensor cam F32 [512, 512]"* ]] || { echo "$output"; return 1; }
    # the first record's map is that of the bag alone
    recinfo -t cam "$T/two" | head -n 460 | cmp - <(recinfo -t cam "$F/class0.rec")
}

@test "gradcam: the map is PyTorch's Grad-CAM, scaled with F.interpolate and laid at the coords" {
    py=/usr/bin/python3
    "$py" -c 'import torch' 2>/dev/null || skip "python3-torch is missing: PyTorch agreement not checked"
    gradcam -m "$M" -f record --class 1 < "$F/bag" > "$T/class1.rec"
    # tests/torch/fixture.py's module and gradcam() in float64, the sizes
    # read off the state_dict; each (N, 8, 8) map scaled to 28x28 and put
    # at its coords (bagify's patches do not overlap)
    cat > "$T/reference.py" <<'EOF'
import sys
tests = sys.argv[1]
sys.path.insert(0, tests)
sys.path.insert(0, tests + "/torch")
import numpy as np
import torch
import torch.nn.functional as F
import safetensors
from fixture import Attention, gradcam

torch.set_num_threads(1)
(_, state), = list(safetensors.read(open(sys.argv[2], "rb")))
model = Attention(L=state["feature_extractor_part2.0.weight"].shape[0],
                  D=state["attention.0.weight"].shape[0],
                  K=state["attention.2.weight"].shape[0], classes=2)
model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()},
                      strict=True)
model.double()
(meta, bag), = list(safetensors.read(open(sys.argv[3], "rb")))
x = torch.from_numpy(np.array(bag["patches"])).permute(0, 3, 1, 2).contiguous()
x = x.double().div(255).unsqueeze(0)
refs, ours = [], []
for c, path in enumerate(sys.argv[4:]):
    (out_meta, out), = list(safetensors.read(open(path, "rb")))
    assert out_meta["cam_class"] == str(c), out_meta["cam_class"]
    cams = gradcam(model, x, c, 2)
    scaled = F.interpolate(cams.unsqueeze(1), size=(28, 28), mode="bilinear",
                           align_corners=False)[:, 0].numpy()
    ref = np.zeros((int(meta["image_height"]), int(meta["image_width"])))
    for (y, x0), cam in zip(bag["coords"], scaled):
        ref[y:y + 28, x0:x0 + 28] = cam
    refs.append(ref)
    ours.append(out["cam"].astype(np.float64))
scale = max(np.abs(r).max() for r in refs)
assert scale > 0, "every reference map is 0: the comparison proves nothing"
bad = False
for c, (a, b) in enumerate(zip(ours, refs)):
    err = np.abs(a - b).max() / scale
    print("class %d: largest %.3g, max relative error %.2e" % (c, np.abs(b).max(), err))
    bad |= not err < 1e-4
sys.exit(bad)
EOF
    run "$py" "$T/reference.py" "$BATS_TEST_DIRNAME" "$M" "$F/bag" "$F/class0.rec" "$T/class1.rec"
    echo "$output"
    [ "$status" -eq 0 ]
}

@test "gradcam: a PNG or PAM picture the size of the image" {
    gradcam -m "$M" < "$F/bag" > "$T/heat.png"
    [[ "$(pngtopam "$T/heat.png" | pamfile)" == *"PPM raw, 700 by 460 "* ]]
    gradcam -m "$M" -f pam -o "$T/heat.pam" < "$F/bag"
    [[ "$(pamfile "$T/heat.pam")" == *"PAM, 700 by 460 by 3 "* ]]
    pngtopam "$T/heat.png" | pamtopnm | cmp - <(pamtopnm "$T/heat.pam")
    # the record's own source, or IMAGE for a bag cut from standard input
    bagify < "$BREAKHIS" | gradcam -m "$M" -f pam "$BREAKHIS" | cmp - "$T/heat.pam"
}

@test "gradcam: alpha 0 is the image; alpha 1 the colour map from end to end" {
    gradcam -m "$M" --class 0 -a 0 --no-legend -f pam < "$F/bag" | pamtopnm > "$T/a0.ppm"
    pngtopam "$BREAKHIS" | pamtopnm | cmp - "$T/a0.ppm"
    # min-max over the covered pixels: gray from 0 to 255 inside the crop,
    # the image's own pixels in the 6 rows at the top and the bottom
    gradcam -m "$M" --class 0 -a 1 --cmap gray --no-legend -f pam < "$F/bag" | pamtopnm > "$T/a1.ppm"
    [ "$(pamcut -top 6 -height 448 "$T/a1.ppm" | pamsumm -min -brief)" = 0 ]
    [ "$(pamcut -top 6 -height 448 "$T/a1.ppm" | pamsumm -max -brief)" = 255 ]
    for rows in "-top 0 -height 6" "-top 454 -height 6"; do
        pamcut $rows "$T/a0.ppm" | cmp - <(pamcut $rows "$T/a1.ppm")
    done
    # and the colour maps differ
    for cmap in jet viridis gray; do
        gradcam -m "$M" --class 0 --cmap $cmap -f pam < "$F/bag" | md5sum
    done > "$T/sums"
    [ "$(sort -u "$T/sums" | wc -l)" -eq 3 ]
}

# Grad-CAM's picture has stitch's legend (common/media/legend.h): the map's
# least and greatest values at the ends of the colour bar, in the corner
# that hides least; --no-legend leaves it out.  safetensors.py legend
# finds it and reads it back.
@test "gradcam: a legend gives the map's values, as stitch's does" {
    py=$(numpy_python) || skip "python3-numpy is missing"
    gradcam -m "$M" --class 0 -a 1 -f pam < "$F/bag" > "$T/with.pam"
    gradcam -m "$M" --class 0 -a 1 --no-legend -f pam < "$F/bag" > "$T/without.pam"
    run "$py" "$BATS_TEST_DIRNAME/safetensors.py" legend "$T/with.pam" "$T/without.pam"
    echo "$output"
    [ "${lines[0]}" = "box 513 424 183 32" ]
    # the ends: the raw map's least and greatest value over the patches
    # (its 0s outside them are no patch's)
    ends=$(recinfo -t cam "$F/class0.rec" | tr '\t' '\n' | awk '$1 > 0' | sort -g |
           awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.2g %.2g", lo, hi }')
    [ "${lines[1]}" = "labels $ends" ]
}

@test "gradcam: bad input exits 1 with a message and writes nothing" {
    cat "$F/bag" "$F/bag" > "$T/two"
    recpass -r patches < "$F/bag" > "$T/nopatches"
    recpass -r coords < "$F/bag" > "$T/nocoords"
    bagify -g "$BREAKHIS" > "$T/gray"
    bagify < "$BREAKHIS" > "$T/nosource"
    head -c 1000 "$F/bag" > "$T/cut"
    for case in "two:<stdin>: record 1: more than one record; gradcam draws one picture" \
                "nopatches:<stdin>: record 0: no tensor 'patches' (cut the image into a bag with bagify)" \
                "nocoords:<stdin>: record 0: no tensor 'coords' (cut the image into a bag with bagify)" \
                "gray:<stdin>: record 0: patches of 28×28×1 do not fit the model, which takes 28×28×3" \
                "nosource:<stdin>: record 0: no image to draw on: give IMAGE" \
                "cut:<stdin>: record 0: truncated"; do
        run bash -c "gradcam -m '$M' < '$T/${case%%:*}' > '$T/out'"
        [ "$status" -eq 1 ] || { echo "$case: status $status"; return 1; }
        [[ "$output" == "gradcam: ${case#*:}"* ]] || { echo "$case: $output"; return 1; }
        assert_empty "$T/out"
    done
    # the records without patches and of the wrong channels, as records too
    for case in nopatches gray; do
        run bash -c "gradcam -m '$M' -f record < '$T/$case' > '$T/out'"
        [ "$status" -eq 1 ] || { echo "$case: status $status"; return 1; }
        assert_empty "$T/out"
    done
    # an image of another size than the bag's (and not its source: said first)
    run bash -c "gradcam -m '$M' '$IHC' < '$F/bag' > '$T/out'"
    [ "$status" -eq 1 ]
    [ "${lines[0]}" = "gradcam: warning: $IHC is not the record's source ($BREAKHIS); drawing on it as asked" ]
    [ "${lines[1]}" = "gradcam: <stdin>: record 0: $IHC is 512×512, but the record was cut from a 700×460 image" ]
    assert_empty "$T/out"
    # the source itself, or a copy under its name elsewhere, draws without a word
    cp "$BREAKHIS" "$T/x.png"
    run bash -c "gradcam -m '$M' -o '$T/a.png' '$BREAKHIS' < '$F/bag'"
    [ "$status" -eq 0 ]
    [ -z "$output" ]
    run bash -c "gradcam -m '$M' -o '$T/b.png' '$T/x.png' < '$F/bag'"
    [ "$status" -eq 0 ]
    [[ "$output" == "gradcam: warning: $T/x.png is not the record's source"* ]]
    run bash -c "gradcam -m '$M' < /dev/null > '$T/out'"
    [ "$status" -eq 1 ]
    [ "$output" = "gradcam: <stdin>: no records" ]
    assert_empty "$T/out"
    run bash -c "gradcam -m '$T/none.st' < '$F/bag' > '$T/out'"
    [ "$status" -eq 1 ]
    [[ "$output" == *"none.st: No such file or directory" ]]
    assert_empty "$T/out"
}

# ---- CNN models -------------------------------------------------------------
# net and resnet18 with PyTorch's default initialization (cnnmodel, seed 1)
# on the real BreakHis image, explained tile by tile: net's 128×128 tiles,
# 6 × 4 of them over 700×460; resnet18's 224×224, 4 × 3.  The numbers of a
# tile are test_cnn's, against torchvision; these check the programs.

cnn_models() {
    [ -s "$F/net.st" ] || cnnmodel net > "$F/net.st"
    [ -s "$F/resnet.st" ] || cnnmodel resnet18 2 imagenet > "$F/resnet.st"
}

@test "gradcam, CNN: -f record holds the maps over the whole image" {
    cnn_models
    gradcam -m "$F/net.st" -f record "$BREAKHIS" > "$T/cam"
    run recinfo "$T/cam"
    [[ "$output" == *"tensor cam F32 [460, 700]"* ]] || { echo "$output"; return 1; }
    [[ "$output" != *"tensor guided"* ]]
    [[ "$output" == *"cam_layer = relu5"* && "$output" == *"method = gradcam"* ]]
    [[ "$output" == *"model = net"* && "$output" == *"source = $BREAKHIS"* ]]
    # every pixel is under a tile; no value is negative, and some positive
    recinfo -t cam "$T/cam" | awk -F'\t' '{ for (i = 1; i <= NF; i++) { if ($i < 0) bad = 1; if ($i > 0) pos++ } }
                                          END { exit bad || NR != 460 || pos == 0 }'
    gradcam -m "$F/net.st" -f record --method guided-gradcam "$BREAKHIS" > "$T/both"
    run recinfo "$T/both"
    [[ "$output" == *"tensor cam F32 [460, 700]"* && "$output" == *"tensor guided F32 [3, 460, 700]"* ]]
    # the same cam whatever else is asked for
    cmp <(recinfo -t cam "$T/cam") <(recinfo -t cam "$T/both")
    gradcam -m "$F/net.st" -f record --method guided "$BREAKHIS" > "$T/guided"
    run recinfo "$T/guided"
    [[ "$output" == *"tensor guided F32 [3, 460, 700]"* && "$output" != *"tensor cam "* ]]
    cmp <(recinfo -t guided "$T/guided") <(recinfo -t guided "$T/both")
}

@test "gradcam, CNN: --layer and --class choose the map; ResNet's default is layer4" {
    cnn_models
    gradcam -m "$F/resnet.st" -f record --class 0 "$BREAKHIS" > "$T/l4"
    gradcam -m "$F/resnet.st" -f record --class 0 --layer layer4.1 "$BREAKHIS" | cmp - "$T/l4"
    recinfo "$T/l4" | grep -qx '  cam_layer = layer4.1'
    gradcam -m "$F/resnet.st" -f record --class 0 --layer layer3 "$BREAKHIS" > "$T/l3"
    recinfo "$T/l3" | grep -qx '  cam_layer = layer3.1'
    ! cmp -s <(recinfo -t cam "$T/l3") <(recinfo -t cam "$T/l4") || false
    gradcam -m "$F/net.st" -f record --class 0 "$BREAKHIS" > "$T/c0"
    gradcam -m "$F/net.st" -f record --class 1 "$BREAKHIS" > "$T/c1"
    recinfo "$T/c0" | grep -qx '  cam_class = 0'
    recinfo "$T/c1" | grep -qx '  cam_class = 1'
    ! cmp -s <(recinfo -t cam "$T/c0") <(recinfo -t cam "$T/c1") || false
    # the default class is one of the two
    gradcam -m "$F/net.st" -f record "$BREAKHIS" > "$T/default"
    c=$(recinfo "$T/default" | sed -n 's/^  cam_class = //p')
    cmp <(recinfo -t cam "$T/default") <(recinfo -t cam "$T/c$c")
}

@test "gradcam, CNN: pictures the size of the image, in colour and in grey" {
    cnn_models
    for method in gradcam guided guided-gradcam; do
        gradcam -m "$F/net.st" --method $method -o "$T/$method.png" "$BREAKHIS"
        pngtopam "$T/$method.png" | pamfile | grep -q '700 by 460'
    done
    # the three differ, and grey is grey
    for pair in "gradcam guided" "gradcam guided-gradcam" "guided guided-gradcam"; do
        set -- $pair
        ! cmp -s "$T/$1.png" "$T/$2.png" || { echo "$1 = $2"; return 1; }
    done
    gradcam -m "$F/net.st" --method guided --cmap gray -f pam "$BREAKHIS" > "$T/grey.pam"
    pamfile "$T/grey.pam" | grep -q '700 by 460'
    pamchannel -infile "$T/grey.pam" 0 | cmp - <(pamchannel -infile "$T/grey.pam" 1)
}

@test "gradcam, CNN: bad input exits 1 with a message and writes nothing" {
    cnn_models
    pngtopam "$BREAKHIS" | pamcut -width 100 -height 200 | pnmtopng > "$T/small.png"
    for case in "--layer fc9|--layer: net has no layer 'fc9'" \
                "--layer fc1|--layer: 'fc1' is not a layer of feature maps" \
                "--layer relu6|--layer: 'relu6' is not a layer of feature maps" \
                "--layer input|--layer: 'input' is not a layer of feature maps" \
                "--class 2|--class 2: the model has 2 classes" \
                "$T/small.png|$T/small.png: 100×200, smaller than net's 128×128 input" \
                "--downsample 2|--downsample and --width scale an attention-MIL model's map over a slide; a CNN's maps are at the image's size" \
                "|a CNN model explains an image: give IMAGE"; do
        args=${case%%|*}
        [[ "$args" == *.png ]] || args="$args $BREAKHIS"
        [[ "${case%%|*}" ]] || args=""
        run bash -c "gradcam -m '$F/net.st' -f record $args < /dev/null > '$T/out'"
        [ "$status" -eq 1 ] || { echo "$case: status $status"; return 1; }
        [ "$output" = "gradcam: ${case#*|}" ] || { echo "$case: $output"; return 1; }
        assert_empty "$T/out"
    done
    # Guided Backpropagation and other layers are the CNNs'
    bagify "$BREAKHIS" > "$T/bag"
    run bash -c "gradcam -m '$M' --method guided < '$T/bag' > '$T/out'"
    [ "$status" -eq 1 ]
    [ "$output" = "gradcam: --method guided: Guided Backpropagation is for CNN models; $M is an attention-MIL model" ]
    assert_empty "$T/out"
    run bash -c "gradcam -m '$M' --layer features.35 < '$T/bag' > '$T/out'"
    [ "$status" -eq 1 ]
    [[ "$output" == "gradcam: --layer: an attention-MIL model's Grad-CAM is at its second convolution, feature_extractor_part1.3, not 'features.35'" ]]
    assert_empty "$T/out"
    run gradcam -m "$F/net.st" --method bogus "$BREAKHIS"
    [ "$status" -eq 2 ]
}

@test "pipelines/compare.sh: the paper's figure for one image, four panels under captions" {
    cnn_models
    "$BATS_TEST_DIRNAME/../pipelines/compare.sh" -a "$M" -c "$F/net.st" -o "$T/figure.png" "$BREAKHIS"
    pngtopam "$T/figure.png" > "$T/figure.pam"
    read -r width height < <(pamfile "$T/figure.pam" | sed 's/.* \([0-9]*\) by \([0-9]*\).*/\1 \2/')
    [ "$width" -eq $((4 * 700 + 3 * 12)) ]
    caption=$((height - 460))
    [ "$caption" -gt 10 ]
    [ "$caption" -lt 100 ]
    # the panels, left to right: the image, stitch's attention, gradcam's
    # Grad-CAM and Guided Grad-CAM, each as the programs draw it
    panel() { pamcut -left $(($1 * 712)) -top "$caption" -width 700 -height 460 "$T/figure.pam" | pamtopnm; }
    panel 0 | cmp - <(pngtopam "$BREAKHIS")
    bagify "$BREAKHIS" | featurize -m "$M" | attend -m "$M" | stitch --no-legend -f pam "$BREAKHIS" |
        pamtopnm | cmp - <(panel 1)
    gradcam -m "$F/net.st" --no-legend -f pam "$BREAKHIS" | pamtopnm | cmp - <(panel 2)
    gradcam -m "$F/net.st" --method guided-gradcam -f pam "$BREAKHIS" | pamtopnm | cmp - <(panel 3)
    run "$BATS_TEST_DIRNAME/../pipelines/compare.sh" -a "$M" "$BREAKHIS"
    [ "$status" -eq 2 ]
}

@test "gradcam, CNN: the guided pictures are the paper's code's (save_gradient_images, convert_to_grayscale)" {
    py=$(numpy_python) || skip "no Python with NumPy: the pictures are not checked"
    cnn_models
    gradcam -m "$F/net.st" -f record --method guided "$BREAKHIS" > "$T/guided.rec"
    gradcam -m "$F/net.st" -f pam --method guided "$BREAKHIS" > "$T/colour.pam"
    gradcam -m "$F/net.st" -f pam --method guided --cmap gray "$BREAKHIS" > "$T/grey.pam"
    "$py" - "$BATS_TEST_DIRNAME" "$T" <<'PY'
import sys
sys.path.insert(0, sys.argv[1])
import numpy as np
import safetensors
t = sys.argv[2]
(_, rec), = list(safetensors.read(open(t + "/guided.rec", "rb")))
g = np.array(rec["guided"], dtype=np.float64)            # (3, H, W)
def pam(path):
    data = open(path, "rb").read()
    end = data.index(b"ENDHDR\n") + 7
    return np.frombuffer(data[end:], np.uint8).reshape(460, 700, 3).astype(int)
# misc_functions.save_gradient_images: g - min, / max, times 255
colour = (g - g.min()) / (g.max() - g.min())
colour = np.round(colour.transpose(1, 2, 0) * 255)
# misc_functions.convert_to_grayscale: sum |g|, clipped at the 99th percentile
s = np.abs(g).sum(axis=0)
grey = np.round(np.clip((s - s.min()) / (np.percentile(s, 99) - s.min()), 0, 1) * 255)
for name, want in (("colour", colour), ("grey", np.repeat(grey[:, :, None], 3, axis=2))):
    d = np.abs(pam(t + "/" + name + ".pam") - want).max()
    print(name, "largest difference", d)
    assert d <= 1, name
PY
}
