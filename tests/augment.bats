#!/usr/bin/env bats
# train --augment: Tellez et al.'s H&E jitter held to scikit-image's
# rgb2hed and hed2rgb (Debian's python3-skimage), its range on a real
# patch, the flips and quarter turns as the square's eight symmetries, and
# training with them: seeded, resumable, and nothing changed without them.

load lib

setup_file() {
    local d=$BATS_FILE_TMPDIR
    crop_bags "$d" 0:0 240:100 480:300 > "$d/train.bags"
    pamcut -left 300 -top 200 -width 28 -height 28 "$d/b.pam" > "$d/patch.pam"
}

setup() {
    T=$BATS_TEST_TMPDIR
    F=$BATS_FILE_TMPDIR
    bags=$F/train.bags
    PY=/usr/bin/python3
}

@test "augment: the H&E jitter is scikit-image's rgb2hed, scaled and shifted, then hed2rgb" {
    "$PY" -c 'import skimage' 2>/dev/null ||
        { echo "python3-skimage is missing: make deps" >&2; return 1; }
    cat > "$T/check.py" <<'EOF'
import sys
sys.path.insert(0, sys.argv[1])
import numpy as np
from skimage.color import combine_stains, hed_from_rgb, rgb_from_hed, rgb2hed
import safetensors
image = safetensors.read_pnm(sys.argv[2])
# scikit-image's separate_stains without its clamp at 0, in its units
# (OD over ln(10^6)); back through its own combine_stains
stains = (np.log(np.maximum(image / 255, 1e-6)) / np.log(1e-6)) @ hed_from_rgb
worst = 0
for path, s, b in zip(sys.argv[3::3], sys.argv[4::3], sys.argv[5::3]):
    scale, shift = np.array(s.split(","), float), np.array(b.split(","), float)
    rgb = combine_stains(stains * scale + shift / -np.log(1e-6), rgb_from_hed)
    want = np.floor(rgb * 255 + 0.5)
    ours = safetensors.read_pnm(path).astype(float)
    d = np.abs(ours - want)
    change = np.abs(ours - image).reshape(-1, 3).mean(axis=0)
    print("scale %s shift %s: |ours - skimage| at most %d (%.2f%% of values);"
          " mean change R %.1f G %.1f B %.1f" % (s, b, d.max(), 100 * (d > 0).mean(), *change))
    worst = max(worst, d.max())
clamped = np.floor(combine_stains(rgb2hed(image), rgb_from_hed) * 255 + 0.5)
print("rgb2hed's own round trip, its clamp at 0: mean change R %.1f G %.1f B %.1f"
      % tuple(np.abs(clamped - image).reshape(-1, 3).mean(axis=0)))
sys.exit(worst > 1)
EOF
    args=()
    for case in "1,1,1 0,0,0" "1.05,1.05,1.05 0.05,0.05,0.05" "0.95,0.95,0.95 -0.05,-0.05,-0.05" \
                "1.05,0.95,1 -0.05,0.05,0" "1.2,0.8,1.1 0.02,-0.02,0.01"; do
        set -- $case
        hejitter "$F/patch.pam" ${1//,/ } ${2//,/ } > "$T/$1_$2.pam"
        args+=("$T/$1_$2.pam" "$1" "$2")
    done
    run "$PY" "$T/check.py" "$BATS_TEST_DIRNAME" "$F/patch.pam" "${args[@]}"
    echo "$output"
    echo "$output" | sed 's/^/# /' >&3
    [ "$status" -eq 0 ]
    # the range of the defaults on a real patch: no jitter gives the patch
    # back (to its rounding), the defaults' corners move it a few levels
    [[ "${lines[0]}" == *"at most 0 "*"mean change R 0.0 G 0.0 B 0.0" ]]
    for i in 1 2; do
        mean=$(echo "${lines[$i]}" | sed 's/.*mean change R \([0-9.]*\).*/\1/')
        awk -v m="$mean" 'BEGIN { exit !(m >= 2 && m <= 30) }' || { echo "line $i: $mean"; return 1; }
    done
}

@test "augment: flip gives the square's eight symmetries, each about an eighth of the time" {
    hejitter "$F/patch.pam" flip 800 5 > "$T/flips.pam"
    cat > "$T/check.py" <<'EOF'
import sys
import numpy as np
data = open(sys.argv[2], "rb").read()
sys.path.insert(0, sys.argv[1])
import safetensors
patch = safetensors.read_pnm(sys.argv[3])
size = len(data) // 800
shapes = [np.rot90(np.fliplr(patch) if m else patch, k) for m in (0, 1) for k in range(4)]
assert len({s.tobytes() for s in shapes}) == 8, "the patch has a symmetry of its own"
counts = [0] * 8
for i in range(800):
    open("/dev/shm/one.pam" if False else sys.argv[4], "wb").write(data[i * size:(i + 1) * size])
    got = safetensors.read_pnm(sys.argv[4])
    which = [j for j, s in enumerate(shapes) if np.array_equal(got, s)]
    assert len(which) == 1, "draw %d is not a symmetry of the patch" % i
    counts[which[0]] += 1
print("mirror, turns: counts", counts)
sys.exit(not all(60 <= c <= 140 for c in counts))
EOF
    run "$PY" "$T/check.py" "$BATS_TEST_DIRNAME" "$T/flips.pam" "$F/patch.pam" "$T/one.pam"
    echo "$output"
    [ "$status" -eq 0 ]
}

@test "augment: train --augment is seeded and resumable; none changes nothing" {
    train -q -o "$T/plain" -e 2 "$bags" > /dev/null
    train -q -o "$T/none" -e 2 --augment none "$bags" > /dev/null
    cmp "$T/plain" "$T/none"
    train -q -o "$T/a" -e 2 --augment he,flip "$bags" > /dev/null
    train -q -o "$T/b" -e 2 --augment he,flip < "$bags" > /dev/null
    cmp "$T/a" "$T/b"
    ! cmp -s "$T/a" "$T/plain"
    run recinfo "$T/a"
    [[ "$output" == *"augment = he,flip"* && "$output" == *"he_sigma = 0.05"* &&
       "$output" == *"he_bias = 0.05"* ]]
    for aug in he flip; do
        train -q -o "$T/$aug" -e 2 --augment $aug "$bags" > /dev/null
        ! cmp -s "$T/$aug" "$T/a"
        ! cmp -s "$T/$aug" "$T/plain"
    done
    train -q -o "$T/s" -e 2 --augment he --he-sigma 0.2 --he-bias 0 "$bags" > /dev/null
    ! cmp -s "$T/s" "$T/he"
    # a run interrupted after epoch 1 and resumed is the run of 2 epochs
    train -q -o "$T/part" -e 1 --augment he,flip "$bags" > /dev/null
    train -q -o "$T/resumed" -e 2 --augment he,flip --resume "$T/part.ckpt" "$bags" > /dev/null
    cmp "$T/a" "$T/resumed"
}

@test "augment: with augmentation the model still learns the two stains apart" {
    train -q -o "$T/m" -e 10 --lr 5e-4 --augment he,flip --test "$bags" "$bags" > "$T/log"
    awk -F'\t' 'END { exit !($7 >= 0.8) }' "$T/log" || { cat "$T/log"; return 1; }
}

@test "augment: bad --augment options are usage errors" {
    for bad in "--augment hue" "--augment he,blur" "--augment ," "--he-sigma 2" "--he-bias -1" \
               "--augment he --arch net" "--augment flip --arch clam"; do
        run train -q -o "$T/m" $bad "$bags"
        [ "$status" -eq 2 ] || { echo "train $bad: $status"; return 1; }
        [[ "$output" == *"usage: train "* ]] || { echo "train $bad: $output"; return 1; }
    done
    # he needs colour
    bagify -g -l 0 "$BREAKHIS" > "$T/gray"
    run train -q -o "$T/m" -e 1 --augment he "$T/gray"
    [ "$status" -eq 1 ]
    [[ "$output" == *"--augment he needs RGB bags, not 1 channel"* ]]
}
