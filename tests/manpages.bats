#!/usr/bin/env bats
# The man pages against the programs: a program's usage (-h) and its page
# name the same options, in the option list and in the synopsis (stitch -h
# listed a -D that stitch(1) lacked); and no macro is left on a text line,
# where mdoc prints it as a word (train(1) read "U(- Ns Ar b , Ar b )").
# mandoc -Tlint (tests/run) sees neither.

load lib

MAN=$BATS_TEST_DIRNAME/../man
PROGRAMS="attend bagify classify evaluate featurize gradcam localize mnist-bags recinfo
          reorg-breakhis stainnorm stitch train"

# usage_options PROGRAM: the options of its -h list, one a line: of each
# line that starts with a dash, the words of the option column (up to two
# spaces) that are options ("-a, --alpha A" is -a and --alpha)
usage_options() {
    "$1" -h | awk '/^ +-/ { sub(/^ +/, ""); sub(/  .*/, ""); n = split($0, w, /[ ,]+/)
                            for (i = 1; i <= n; i++) if (w[i] ~ /^-/) print w[i] }' | sort
}

# usage_synopsis PROGRAM: the options of the usage lines above the list
# (-hn is -h and -n)
usage_synopsis() {
    "$1" -h | awk '/^ +-/ { exit } { print }' |
        grep -oE '(^|[[ (|])-(-[a-z0-9-]+|[A-Za-z0-9]+)' | sed -E 's/^[[ (|]//' |
        awk '/^--/ { print; next } { for (j = 2; j <= length($0); j++) print "-" substr($0, j, 1) }'
}

# man_options PAGE: the options of the .It lines of OPTIONS ("Fl Fl x" is
# reorg-breakhis(1)'s --x)
man_options() {
    sed -n '/^\.Sh OPTIONS/,/^\.Sh /{s/Fl Fl /Fl -/g; /^\.It Fl /p;}' "$1" |
        awk '{ for (i = 2; i < NF; i++) if ($i == "Fl") print "-" $(i + 1) }' | sort
}

# synopsis_options PAGE: the options SYNOPSIS names (Fl gk is -g and -k)
synopsis_options() {
    sed -n '/^\.Sh SYNOPSIS/,/^\.Sh /{s/Fl Fl /Fl -/g; s/^\.//; p;}' "$1" |
        awk '{ for (i = 1; i < NF; i++) if ($i == "Fl") {
                   o = $(i + 1)
                   if (o ~ /^-/) print "-" o
                   else for (j = 1; j <= length(o); j++) print "-" substr(o, j, 1) } }'
}

# canonical PAGE: the options on stdin, each long one that has a short
# name in PAGE's OPTIONS (".It Fl a , Fl -alpha") as that, -h left out
canonical() {
    awk 'NR == FNR { short[$2] = $1; next } { print ($1 in short) ? short[$1] : $1 }' \
        <(sed -n '/^\.Sh OPTIONS/,/^\.Sh /{s/Fl Fl /Fl -/g; /^\.It Fl /p;}' "$1" |
          awk '$2 == "Fl" && $4 == "," && $5 == "Fl" { print "-" $3, "-" $6 }') - |
        grep -vxE -- '-h|--help' | sort -u
}

@test "man pages: each program's usage and OPTIONS list the same options" {
    for p in $PROGRAMS; do
        diff <(usage_options "$p") <(man_options "$MAN/$p.1") ||
            { echo "$p: < its usage, > $p(1)'s OPTIONS"; return 1; }
    done
}

# The synopsis of the page names every option; the usage lines name the
# same, or some and "[options]" (train's are too many for them).
@test "man pages: SYNOPSIS and the usage lines name every option" {
    for p in $PROGRAMS; do
        page=$MAN/$p.1
        options=$(man_options "$page" | canonical "$page")
        synopsis=$(synopsis_options "$page" | canonical "$page")
        diff <(echo "$options") <(echo "$synopsis") ||
            { echo "$p: < OPTIONS, > SYNOPSIS"; return 1; }
        usage=$(usage_synopsis "$p" | canonical "$page")
        if "$p" -h | awk '/^ +-/ { exit } { print }' | grep -q '\[options\]'; then
            [ -z "$(comm -23 <(echo "$usage") <(echo "$synopsis"))" ] ||
                { echo "$p: its usage lines name options SYNOPSIS lacks"; return 1; }
        else
            diff <(echo "$usage") <(echo "$synopsis") ||
                { echo "$p: < its usage lines, > SYNOPSIS"; return 1; }
        fi
    done
}

@test "man pages: no macro on a text line" {
    for page in "$MAN"/*.[1-9]; do
        awk -v page="${page##*/}" '
            /^\.Bd -literal/ { literal = 1 } /^\.Ed/ { literal = 0 }
            /^[.\x27]/ || literal { next }
            / (Ns|Ar|Fl|Va|Cm|No|Pa|Li|Xr|Sx|Pq|Op|Ql|Sy|Em|Dq|Po|Pc) / {
                print page ":" NR ": " $0; bad = 1 }
            END { exit bad }' "$page" || return 1
    done
}
