# Shared by the bats files: paths, a record builder, and the NumPy finder.
DATA=${AMIL_TESTDATA:-$BATS_TEST_DIRNAME/data}
BREAKHIS=$DATA/SOB_B_A-14-22549G-40-001.png
IHC=$DATA/ihc.png

# record HEADER [DATA_BYTES]: one record with the header as given (ASCII)
# and that many zero bytes of data.
record() {
    local n=${#1}
    printf "$(printf '\\%03o' $((n & 255)) $((n >> 8 & 255)) $((n >> 16 & 255)) $((n >> 24 & 255)) 0 0 0 0)"
    printf '%s' "$1"
    head -c "${2:-0}" /dev/zero
}

# A Python that has NumPy: python3 on PATH, else Debian's.
numpy_python() {
    local p
    for p in python3 /usr/bin/python3; do
        if command -v "$p" >/dev/null && "$p" -c 'import numpy' 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    return 1
}

# Fails the test unless stdout was empty ($output holds stderr too, so
# programs are run with stdout to a file where it matters).
assert_empty() {
    if [ -s "$1" ]; then
        echo "expected $1 to be empty; it has $(wc -c < "$1") bytes" >&2
        return 1
    fi
}

# The PyTorch fixtures (tests/torch/fixture.py): a bare state_dict of a small
# model, and what PyTorch computed in float64 with it.
M=$DATA/torch-state-dict.safetensors
FIXTURE=$DATA/torch-fixture.safetensors

# expected TENSOR: PyTorch's values, one per line, from the fixture's
# "pipeline" record (the whole 400-patch bag of the BreakHis image).
expected() {
    recpass "$FIXTURE" | recinfo -t "$1" | tail -n 1 | tr '\t' '\n'
}

# close A B: the two columns of numbers agree to 1e-4 of the largest.
close() {
    paste "$1" "$2" | awk '{ d = $1 - $2; if (d < 0) d = -d; if (d > m) m = d;
                             a = $2 < 0 ? -$2 : $2; if (a > s) s = a }
                           END { printf "max relative error %.2e\n", m / s; exit !(m / s < 1e-4 && NR > 0) }'
}

# synthetic_images DIR: six image records (bagify -w) in DIR/images: the
# BreakHis image and two mirror images of it (class 0), and their
# negatives (class 1), a task any CNN can learn in a few steps.
synthetic_images() {
    local d=$1 f
    pngtopam "$BREAKHIS" > "$d/0.pam"
    pamflip -lr "$d/0.pam" > "$d/1.pam"
    pamflip -tb "$d/0.pam" > "$d/2.pam"
    for f in 0 1 2; do pnminvert "$d/$f.pam" > "$d/n$f.pam"; done
    { for f in 0 1 2; do bagify -w -l 0 "$d/$f.pam"; done
      for f in 0 1 2; do bagify -w -l 1 "$d/n$f.pam"; done; } > "$d/images"
}

# crop_bags DIR X:Y...: 112x112 crops of the BreakHis image at each X:Y
# (label 0) and of the IHC image at (2X/3, Y) (label 1), as 16-patch bags
# on stdout; DIR holds the images as PAM (b.pam, h.pam).
crop_bags() {
    local d=$1 xy x y
    shift
    [ -s "$d/b.pam" ] || pngtopam "$BREAKHIS" > "$d/b.pam"
    [ -s "$d/h.pam" ] || pngtopam "$IHC" > "$d/h.pam"
    for xy in "$@"; do
        x=${xy%:*} y=${xy#*:}
        pamcut -left "$x" -top "$y" -width 112 -height 112 "$d/b.pam" | bagify -l 0 -
        pamcut -left $((x * 2 / 3)) -top "$y" -width 112 -height 112 "$d/h.pam" | bagify -l 1 -
    done
}
