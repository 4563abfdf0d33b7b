# bach_tree DIR: a small BACH tree of TIFFs in the challenge's layout
# (DIR/ICIAR2018_BACH_Challenge/Photos/{Normal,Benign,InSitu,Invasive}/
# {n,b,is,iv}NNN.tif), made from the committed BreakHis image: 4 images a
# class, 256x224 crops at their own places, each class its own colour
# (pamfunc), written by netpbm's pamtotiff.
bach_tree() {
    local photos=$1/ICIAR2018_BACH_Challenge/Photos class prefix i n=0
    local -a classes=(Normal:n:1.0 Benign:b:0.85 InSitu:is:0.7 Invasive:iv:0.55)
    pngtopam "$BREAKHIS" > "$1/full.pam"
    for entry in "${classes[@]}"; do
        IFS=: read -r class prefix shade <<< "$entry"
        mkdir -p "$photos/$class"
        for i in 1 2 3 4; do
            n=$((n + 1))
            pamcut -left $((n * 23 % 444)) -top $((n * 11 % 236)) -width 256 -height 224 "$1/full.pam" |
                pamfunc -multiplier="$shade" | pamtotiff -truecolor 2> /dev/null > "$photos/$class/$prefix$(printf %03d $i).tif"
        done
    done
    rm "$1/full.pam"
}
