#!/usr/bin/env bats
# Files the programs write hold either what was there before or the whole
# new output, never a part (through a temporary beside them and a rename),
# failures say why, and no program writes over one of its own inputs.

load lib

setup() {
    T=$BATS_TEST_TMPDIR
    bagify "$BREAKHIS" | recpass -a darkness > "$T/attended"
    bagify -l 1 "$BREAKHIS" > "$T/labelled"
}

# the files in $T whose names hold ".tmp.": none may be left
no_temporaries() {
    local left
    left=$(find "$T" -name '*.tmp.*')
    [ -z "$left" ] || { echo "left behind: $left"; return 1; }
}

@test "outputs: a failed write keeps the old file whole and says why" {
    printf 'the old picture' > "$T/old.png"
    # at most 4 KiB a file, SIGXFSZ ignored: writes past it fail with EFBIG
    run bash -c 'trap "" XFSZ; ulimit -f 4; stitch -o "$1" < "$2"' _ "$T/old.png" "$T/attended"
    [ "$status" -eq 1 ]
    [[ "$output" == "stitch: <stdin>: record 0: $T/old.png: "*"File too large"* ]] || { echo "$output"; return 1; }
    [ "$(cat "$T/old.png")" = "the old picture" ]
    run bash -c 'trap "" XFSZ; ulimit -f 4; gradcam -m "$1" -o "$2" "$3" < "$4"' _ "$M" \
        "$T/old.png" "$BREAKHIS" "$T/labelled"
    [ "$status" -eq 1 ]
    [[ "$output" == "gradcam: "*"$T/old.png: write error: File too large"* ]] || { echo "$output"; return 1; }
    [ "$(cat "$T/old.png")" = "the old picture" ]
    printf 'the old model' > "$T/model"
    run bash -c 'trap "" XFSZ; ulimit -f 64; train -q -e 1 -o "$1" "$2"' _ "$T/model" "$T/labelled"
    [ "$status" -eq 1 ]
    [[ "$output" == *"File too large"* ]] || { echo "$output"; return 1; }
    [ "$(cat "$T/model")" = "the old model" ]
    no_temporaries
    # a device is written in place, and its error named
    run stitch -o /dev/full < "$T/attended"
    [ "$status" -eq 1 ]
    [[ "$output" == *"/dev/full: "*"No space left on device"* ]] || { echo "$output"; return 1; }
}

@test "outputs: a good write replaces the file whole and leaves nothing else" {
    printf 'old' > "$T/new.png"
    stitch -o "$T/new.png" < "$T/attended"
    [[ "$(pngtopam "$T/new.png" | pamfile)" == *"700 by 460"* ]]
    no_temporaries
}

@test "outputs: no program writes over one of its inputs" {
    cp "$T/labelled" "$T/same.bags"
    run train -q -e 1 -o "$T/same.bags" "$T/same.bags"
    [ "$status" -eq 1 ]
    [[ "$output" == "train: $T/same.bags is also an input: it would be overwritten" ]]
    cmp "$T/same.bags" "$T/labelled"
    run bash -c 'train -q -e 1 -o "$1" < "$1"' _ "$T/same.bags"
    [ "$status" -eq 1 ]
    [[ "$output" == *"is also an input (standard input)"* ]]
    run train -q -e 1 -o "$T/m" --test "$T/same.bags" --checkpoint "$T/same.bags" "$T/labelled"
    [ "$status" -eq 1 ]
    cmp "$T/same.bags" "$T/labelled"
    # stitch over the image it draws on, or its standard input
    cp "$BREAKHIS" "$T/x.png"
    bagify "$T/x.png" | recpass -a darkness > "$T/x.att"
    run bash -c 'stitch -o "$1" < "$2"' _ "$T/x.png" "$T/x.att"
    [ "$status" -eq 1 ]
    [[ "$output" == *"$T/x.png is also an input: it would be overwritten"* ]]
    run bash -c 'stitch -d "$1" < "$2"' _ "$T" "$T/x.att"
    [ "$status" -eq 1 ]
    cmp "$T/x.png" "$BREAKHIS"
    run bash -c 'stitch -o "$1" < "$1"' _ "$T/x.att"
    [ "$status" -eq 1 ]
    [[ "$output" == *"is also an input (standard input)"* ]]
    # gradcam over its image or model
    run gradcam -m "$M" -o "$T/x.png" "$T/x.png" < "$T/labelled"
    [ "$status" -eq 1 ]
    [[ "$output" == "gradcam: $T/x.png is also an input: it would be overwritten" ]]
    cmp "$T/x.png" "$BREAKHIS"
    no_temporaries
}

@test "outputs: not over a record's source, a model, or another output" {
    cp "$BREAKHIS" "$T/x.png"
    (cd "$T" && bagify -l 0 x.png) > "$T/x.bags"
    # the source a record names, however the output names it
    for o in "$T/x.png" "$T/./x.png" x.png; do
        run bash -c 'cd "$1" && gradcam -m "$2" -o "$3" < x.bags' _ "$T" "$M" "$o"
        [ "$status" -eq 1 ]
        [[ "$output" == "gradcam: "*"x.png is also an input"*": it would be overwritten" ]] || { echo "$output"; return 1; }
        cmp "$T/x.png" "$BREAKHIS"
    done
    run bash -c 'cd "$1" && gradcam -m "$2" -f record -o x.png < x.bags' _ "$T" "$M"
    [ "$status" -eq 1 ]
    cmp "$T/x.png" "$BREAKHIS"
    # a record's source found through source_dir, from another folder
    mkdir "$T/elsewhere"
    recpass -m source_dir="$T" "$T/x.bags" > "$T/dir.bags"
    run bash -c 'cd "$1/elsewhere" && gradcam -m "$2" -o ../x.png < ../dir.bags' _ "$T" "$M"
    [ "$status" -eq 1 ]
    [[ "$output" == *"is also an input ($T/x.png): it would be overwritten" ]] || { echo "$output"; return 1; }
    cmp "$T/x.png" "$BREAKHIS"
    # the model
    cp "$M" "$T/m.st"
    run gradcam -m "$T/m.st" -o "$T/m.st" "$T/x.png" < "$T/x.bags"
    [ "$status" -eq 1 ]
    cmp "$T/m.st" "$M"
    # a slide, and stitch -d into the slide's folder under its own name
    cp "$DATA/CMU-1-Small-Region.svs" "$T/s.svs"
    bagify -p 224 -s 448 "$T/s.svs" | recpass -a darkness > "$T/s.att"
    run bash -c 'stitch -o "$1" < "$2"' _ "$T/s.svs" "$T/s.att"
    [ "$status" -eq 1 ]
    cmp "$T/s.svs" "$DATA/CMU-1-Small-Region.svs"
    # the model and its checkpoint, one file under two names
    run train -q -e 1 -o "$T/c.st" --checkpoint "$T/./c.st" "$T/x.bags"
    [ "$status" -eq 2 ] || [ "$status" -eq 1 ]
    [[ "$output" == "train: the model and the checkpoint are one file"* ]] || { echo "$output"; return 1; }
    [ ! -e "$T/c.st" ]
    no_temporaries
}

@test "outputs: a record's source that is not a regular file is refused at once" {
    bagify "$BREAKHIS" | recpass -a darkness > "$T/a.bags"
    recpass -m source=/dev/zero "$T/a.bags" > "$T/zero.bags"
    run bash -c 'timeout 10 stitch -o "$1" < "$2"' _ "$T/z.png" "$T/zero.bags"
    [ "$status" -eq 1 ]
    [[ "$output" == "stitch: "*"/dev/zero is not a regular file"* ]] || { echo "$output"; return 1; }
    run timeout 10 gradcam -m "$M" -o "$T/z.png" < "$T/zero.bags"
    [ "$status" -eq 1 ]
    [[ "$output" == "gradcam: "*"/dev/zero is not a regular file"* ]] || { echo "$output"; return 1; }
    mkfifo "$T/fifo"
    recpass -m source="$T/fifo" "$T/a.bags" > "$T/fifo.bags"
    run bash -c 'timeout 10 stitch -o "$1" < "$2"' _ "$T/z.png" "$T/fifo.bags"
    [ "$status" -eq 1 ]
    [[ "$output" == *"$T/fifo is not a regular file"* ]] || { echo "$output"; return 1; }
    [ ! -e "$T/z.png" ]
}

@test "outputs: records and pictures are not written to a terminal unless forced" {
    run script -qec "bagify '$BREAKHIS'" /dev/null
    [ "$status" -eq 1 ]
    [[ "$output" == "bagify: will not write binary to a terminal: redirect it to a file or a program (or give --force)"* ]]
    run script -qec "stitch < '$T/attended'" /dev/null
    [ "$status" -eq 1 ]
    [[ "$output" == "stitch: will not write binary to a terminal: give -o FILE or -d DIR"* ]]
    run script -qec "gradcam -m '$M' '$BREAKHIS' < '$T/labelled'" /dev/null
    [ "$status" -eq 1 ]
    [[ "$output" == "gradcam: will not write binary to a terminal: give -o FILE"* ]]
    # forced, or not a terminal: written
    [ "$(script -qec "bagify --force '$BREAKHIS' | recinfo -j | wc -l" /dev/null | tr -d '\r')" -eq 1 ]
    run script -qec "stitch -o '$T/p.png' < '$T/attended'" /dev/null
    [ "$status" -eq 0 ]
}

@test "outputs: an image where records are expected says so" {
    run featurize -m "$M" < "$BREAKHIS"
    [ "$status" -eq 1 ]
    [ "$output" = "featurize: <stdin>: record 0: this is a PNG image, not a record: cut it into a bag with bagify first" ]
    pngtopam "$BREAKHIS" > "$T/x.pam"
    run attend -m "$M" "$T/x.pam"
    [ "$status" -eq 1 ]
    [[ "$output" == *"this is a netpbm image, not a record"* ]]
}

@test "outputs: a progress line on a terminal, never on a pipe" {
    files=()
    for i in $(seq 200); do files+=("$BREAKHIS"); done
    # about two seconds of work: the line is drawn every half second
    script -qec "bagify ${files[*]} > /dev/null" /dev/null > "$T/tty"
    grep -aq $'\rbagify: [0-9]* records, [0-9]* files/s' "$T/tty" || { cat -v "$T/tty"; return 1; }
    grep -aq $'\r\033\[K' "$T/tty"   # erased at the end
    bagify "${files[@]}" 2> "$T/err" > /dev/null
    assert_empty "$T/err"
    # a message first erases the line, so that it starts a line of its own
    printf 'not an image' > "$T/bad.png"
    run script -qec "bagify -k ${files[*]} $T/bad.png > /dev/null" /dev/null
    [ "$status" -eq 1 ]
    printf '%s' "$output" > "$T/tty"
    grep -aq $'\r\033\[Kbagify: '"$T/bad.png: " "$T/tty" || { cat -v "$T/tty"; return 1; }
}

@test "outputs: stitch's progress line counts records and patches" {
    bagify "$BREAKHIS" | recpass -a darkness > "$T/one"
    for i in $(seq 40); do cat "$T/one"; done > "$T/many"
    script -qec "stitch --no-legend -d $T/out < $T/many" /dev/null > "$T/tty"
    grep -aq $'\rstitch: [0-9]* records, [0-9]* patches/s' "$T/tty" || { cat -v "$T/tty"; return 1; }
    [ "$(ls "$T/out" | wc -l)" -eq 40 ]
    stitch --no-legend -d "$T/out2" < "$T/many" 2> "$T/err"
    assert_empty "$T/err"
}

@test "outputs: an output that cannot be written is found before any work" {
    # the message names no record: it came before the first was read
    for cmd in "stitch -o /no/such/x.png" "gradcam -m $M -o /no/such/x.png" \
               "stainnorm -r $BREAKHIS -o /no/such/x.png" "train -q -o /no/such/m.st"; do
        run bash -c "$cmd < '$T/labelled' > '$T/out'"
        [ "$status" -eq 1 ] || { echo "$cmd: status $status: $output"; return 1; }
        [[ "$output" == *": cannot write /no/such/"*": No such file or directory" ]] || { echo "$cmd: $output"; return 1; }
        [[ "$output" != *"record"* ]] || { echo "$cmd: $output"; return 1; }
    done
    # -d: a folder that cannot be made
    printf 'a file' > "$T/file"
    for cmd in "stitch -d $T/file/sub" "stainnorm -r $BREAKHIS -d $T/file/sub"; do
        run bash -c "$cmd < '$T/attended' > '$T/out'"
        [ "$status" -eq 1 ] || { echo "$cmd: status $status: $output"; return 1; }
        [[ "$output" == *"$T/file/sub: Not a directory" ]] || { echo "$cmd: $output"; return 1; }
    done
}

@test "outputs: stitch -d replaces nothing a later record reads, nor through source_dir" {
    mkdir -p "$T/x" "$T/out"
    cp "$BREAKHIS" "$T/x/a.png"
    pngtopam "$BREAKHIS" | pamflip -lr | pnmtopng > "$T/out/a.png"
    cp "$T/out/a.png" "$T/kept.png"
    cp "$BREAKHIS" "$T/x/b.png"
    # record 0's picture would be out/a.png, record 2's source, read after
    # record 0 is drawn: the pictures are renamed when the input is read
    run bash -c 'cd "$1" && { bagify x/a.png; bagify x/b.png; bagify out/a.png; } |
        recpass -a darkness | stitch -d out' _ "$T"
    [ "$status" -eq 1 ]
    [ "$output" = "stitch: out/a.png is also an input: it would be overwritten" ]
    cmp "$T/out/a.png" "$T/kept.png"
    [ -s "$T/out/b.png" ]     # the others are written
    [ -s "$T/out/a-2.png" ]
    no_temporaries
    # the file under source_dir is noted even when a file of that name here
    # is the one read
    mkdir "$T/sdir" "$T/other"
    cp "$BREAKHIS" "$T/sdir/y.png"
    cp "$BREAKHIS" "$T/other/y.png"
    (cd "$T/sdir" && bagify -l 0 y.png) > "$T/sdir/y.bags"
    run bash -c 'cd "$1/other" && gradcam -m "$2" -o ../sdir/y.png < ../sdir/y.bags' _ "$T" "$M"
    [ "$status" -eq 1 ]
    cmp "$T/sdir/y.png" "$BREAKHIS"
}

@test "outputs: standard output is never an input, mnist-bags's table never one" {
    cp "$BREAKHIS" "$T/x.png"
    run bash -c 'bagify "$1" 1<> "$1"' _ "$T/x.png"
    [ "$status" -eq 1 ]
    [[ "$output" == *"it is also standard output: it would read what is written" ]] || { echo "$output"; return 1; }
    cmp "$T/x.png" "$BREAKHIS"
    cp "$T/labelled" "$T/l.bags"
    run timeout 20 bash -c 'stainnorm -r "$1" < "$2" >> "$2"' _ "$BREAKHIS" "$T/l.bags"
    [ "$status" -eq 1 ]
    [[ "$output" == "stainnorm: <stdin> is also standard output: it would read what it writes" ]] || { echo "$output"; return 1; }
    cmp "$T/l.bags" "$T/labelled"
    # mnist-bags wrote its table in place, over its images
    mkdir "$T/mb"
    cp "$DATA/mnist/t10k-images-idx3-ubyte.gz" "$T/mb/bags.tsv"
    run mnist-bags -n 3 -o "$T/mb" "$T/mb/bags.tsv" "$DATA/mnist/t10k-labels-idx1-ubyte.gz"
    [ "$status" -eq 1 ]
    cmp "$T/mb/bags.tsv" "$DATA/mnist/t10k-images-idx3-ubyte.gz"
}

@test "outputs: a device is written in place by any user; a link's file is replaced, not the link" {
    chmod 755 "$T"
    chmod 644 "$T/attended"
    # the paper's picture needs no image: the clone's folder may be closed to nobody
    run setpriv --reuid=65534 --regid=65534 --clear-groups stitch --style paper -o /dev/null < "$T/attended"
    [ "$status" -eq 0 ] || { echo "$output"; return 1; }
    [ -z "$(find /dev -maxdepth 1 -name 'null.tmp.*')" ]
    printf 'old' > "$T/target.png"
    ln -s "$T/target.png" "$T/link.png"
    stitch -o "$T/link.png" < "$T/attended"
    [ -L "$T/link.png" ]
    [[ "$(pngtopam "$T/target.png" | pamfile)" == *"700 by 460"* ]]
    # -o and --save-stains one file; --save-stains where -d writes
    run stainnorm -r "$BREAKHIS" --save-stains "$T/z.st" -o "$T/./z.st" "$T/labelled"
    [ "$status" -eq 1 ]
    [ ! -e "$T/z.st" ]
    mkdir "$T/sd"
    cp "$BREAKHIS" "$T/y.png"
    run stainnorm -r "$BREAKHIS" --save-stains "$T/sd/y.png" -d "$T/sd" "$T/y.png"
    [ "$status" -eq 1 ]
    recinfo "$T/sd/y.png" | grep -q "kind = stains"
    # a source that is an empty file (as /proc/kmsg looks) is refused
    : > "$T/empty.png"
    recpass -m source="$T/empty.png" "$T/attended" > "$T/e.att"
    run bash -c 'timeout 10 stitch -o "$1" < "$2"' _ "$T/e.png" "$T/e.att"
    [ "$status" -eq 1 ]
    [[ "$output" == *"$T/empty.png is empty" ]] || { echo "$output"; return 1; }
}
