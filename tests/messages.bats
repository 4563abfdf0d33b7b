#!/usr/bin/env bats
# A message says what was wrong, not only what to do: each case here once
# printed something else (a 40-line usage and no reason, "0x0x0", a header
# of 727905341920923785 bytes, a suggestion of the wrong program).

load lib

setup() {
    T=$BATS_TEST_TMPDIR
    bagify -l 1 "$BREAKHIS" > "$T/bag"
}

# says STATUS TEXT: the last run exited STATUS and its first line is TEXT
says() {
    [ "$status" -eq "$1" ] || { echo "status $status: $output"; return 1; }
    [ "${lines[0]}" = "$2" ] || { echo "$output"; return 1; }
}

@test "messages: misuse says why, then the synopsis, not every option" {
    run train -o "$T/m.st" "$T/bag" "$T/test.bags"
    says 2 "train: $T/test.bags: one FILE of training bags at most (test bags go with --test)"
    [ "${#lines[@]}" -lt 10 ]
    [ "${lines[-1]}" = "(train --help lists the options)" ]
    run featurize -model "$M" "$T/bag"
    says 2 "featurize: -model: a long option takes two dashes (--model)"
    run bagify -patch 28 "$BREAKHIS"
    says 2 "bagify: -patch: a long option takes two dashes (--patch)"
    run featurize -m "$M" "$T/bag" "$T/bag"
    says 2 "featurize: $T/bag: one FILE at most"
    run stitch "$BREAKHIS" "$BREAKHIS"
    says 2 "stitch: $BREAKHIS: one IMAGE at most; records come on standard input"
}

@test "messages: train names the model it needs and the file it was given" {
    featurize -m "$M" "$T/bag" > "$T/features"
    run train -q -o "$T/m.st" "$T/features"
    says 1 "train: $T/features: record 0: features, not patches: CLAM's head trains on a frozen backbone's features (--arch clam); the attention-MIL model on patches"
    cnnmodel resnet18 > "$T/backbone.st"
    for arch in amil clam resnet18; do
        run train -q --arch "$arch" -o "$T/m.st" -r "$T/backbone.st" "$T/bag"
        says 1 "train: $T/backbone.st: a model, not a checkpoint: train resumes from the checkpoint it wrote beside the model (MODEL.ckpt, or --checkpoint)"
    done
    # a random frozen backbone is said, once, on stderr
    bagify -w -l 1 "$BREAKHIS" > "$T/image"
    train -q --arch resnet18 -e 1 -o "$T/r.st" "$T/image" 2> "$T/err" > /dev/null
    [ "$(cat "$T/err")" = "train: warning: no -w: resnet18's frozen backbone is random, which is for tests; give torchvision's weights with -w FILE" ]
    train -q --arch resnet18 -e 1 -w "$T/backbone.st" -o "$T/w.st" "$T/image" 2> "$T/err" > /dev/null
    assert_empty "$T/err"
}

@test "messages: gradcam on a CLAM head, stainnorm -s on an image" {
    featurize -m "$M" "$T/bag" > "$T/features"
    train --arch clam -q -e 1 -o "$T/clam.st" "$T/features" > /dev/null
    run gradcam -m "$T/clam.st" -o "$T/g.png" < "$T/bag"
    says 1 "gradcam: $T/clam.st: a CLAM head has no Grad-CAM here: it pools a frozen backbone's features, not patches; give an attention-MIL model or a CNN"
    [ ! -e "$T/g.png" ]
    run stainnorm -s "$BREAKHIS" -o "$T/s.png" "$BREAKHIS"
    says 1 "stainnorm: $BREAKHIS: an image, not stains: a reference image goes with -r, the stains --save-stains wrote with -s"
    # a model file that is an image
    run attend -m "$BREAKHIS" "$T/features"
    says 1 "attend: $BREAKHIS: record 0: this is a PNG image, not a record"
}

@test "messages: records are not written to a terminal, nor into a picture's name" {
    featurize -m "$M" "$T/bag" > "$T/features"
    attend -m "$M" "$T/features" > "$T/att"
    for cmd in "featurize -m $M $T/bag" "attend -m $M $T/features" "classify -m $M $T/att"; do
        run script -qec "$cmd" /dev/null
        [ "$status" -eq 1 ] || { echo "$cmd: $status"; return 1; }
        [[ "$output" == "${cmd%% *}: will not write binary to a terminal: redirect it to a file or a program (or give --force)"* ]] || { echo "$output"; return 1; }
    done
    # -t is text, and --force forces
    run script -qec "classify -t -m $M $T/att" /dev/null
    [ "$status" -eq 0 ]
    [ "$(script -qec "classify --force -m $M $T/att | recinfo -j | wc -l" /dev/null | tr -d '\r')" -eq 1 ]
    # stainnorm: records into z.png
    run stainnorm -r "$BREAKHIS" -o "$T/z.png" "$T/bag"
    says 1 "stainnorm: $T/bag: records, which would go into $T/z.png, a picture's name: give -o a name for records (such as .bags)"
    [ ! -e "$T/z.png" ]
    stainnorm -r "$BREAKHIS" -o "$T/z.bags" "$T/bag"
    recinfo "$T/z.bags" | grep -q "stain_method = macenko"
}

@test "messages: stainnorm -d names a name given twice by its number in the run" {
    mkdir "$T/a" "$T/b"
    cp "$BREAKHIS" "$T/a/y.png"
    cp "$IHC" "$T/b.png"
    cp "$BREAKHIS" "$T/b/y.png"
    stainnorm -r "$BREAKHIS" -d "$T/out" "$T/a/y.png" "$T/b.png" "$T/b/y.png"
    [ "$(cd "$T/out" && ls | xargs)" = "b.png y-2.png y.png" ]
}

@test "messages: an option's value is not an option; abbreviations after one dash are said" {
    (cd "$T" && stainnorm -o -io.bags -r "$BREAKHIS" "$T/bag")
    [ -s "$T/-io.bags" ]
    run gradcam -mod "$M"
    says 2 "gradcam: -mod: a long option takes two dashes (--model)"
    run stitch -down 4
    says 2 "stitch: -down: a long option takes two dashes (--downsample)"
    run stitch -L
    [ "$status" -eq 2 ]
    [ "${lines[-1]}" = "(stitch --help lists the options)" ]
    # GeoJSON is text: written to a terminal
    recpass -a darkness "$T/bag" > "$T/att"
    run script -qec "stitch -f geojson < $T/att" /dev/null
    [ "$status" -eq 0 ]
    [[ "$output" == *'"type":"FeatureCollection"'* ]] || [[ "$output" == *'"FeatureCollection"'* ]]
}
