#!/usr/bin/env bash
# tests/layers.sh [BUILD]: the library's layers hold.  common/ is a folder
# per layer, lowest first:
#
#   base record media compute models tool
#
# and a file may include and call only its own layer and those below.
# Prints one line per breach and exits 1 when there is any:
#   - an #include "LAYER/x.h" of a higher layer;
#   - a call (an undefined symbol of BUILD/common/LAYER/x.o) to a function
#     defined in a higher layer;
#   - a circle among the library's files, by calls or by includes (tsort).
set -u
cd "$(dirname "$0")/.."
build=${1:-build}
layers="base record media compute models tool"
rank() {
    local i=0 l
    for l in $layers; do
        [ "$l" = "$1" ] && { echo $i; return; }
        i=$((i + 1))
    done
    echo 99
}
bad=0

# includes
for f in common/*/*.[ch]; do
    layer=${f#common/}; layer=${layer%%/*}
    r=$(rank "$layer")
    while read -r inc; do
        to=${inc%%/*}
        [ "$to" = "$inc" ] && { echo "$f: #include \"$inc\" names no layer"; bad=1; continue; }
        if [ "$(rank "$to")" -gt "$r" ]; then
            echo "$f: includes $inc, a layer above $layer"
            bad=1
        fi
    done < <(sed -n 's/^#include "\([^"]*\)".*/\1/p' "$f")
done

# calls, by the objects' symbols: which file defines each, which uses it
objects=$(ls "$build"/common/*/*.o 2>/dev/null)
if [ -z "$objects" ]; then
    echo "no objects under $build/common: build the library first"
    exit 1
fi
name_of() {   # build/common/compute/kernels_avx2.o -> compute/kernels
    local n=${1#"$build"/common/}
    n=${n%.o}
    n=${n%_avx512}; n=${n%_avx2}; n=${n%_portable}
    echo "$n"
}
defs=$(for o in $objects; do
           n=$(name_of "$o")
           nm --defined-only "$o" | awk -v n="$n" '$2 ~ /^[TDBR]$/ { print $3, n }'
       done | sort -u)
edges=$(for o in $objects; do
            n=$(name_of "$o")
            nm -u "$o" | awk -v n="$n" '{ print $2, n }'
        done | sort -u | join - <(printf '%s\n' "$defs") | awk '$2 != $3 { print $2, $3, $1 }')
while read -r from to symbol; do
    [ -n "$from" ] || continue
    if [ "$(rank "${to%%/*}")" -gt "$(rank "${from%%/*}")" ]; then
        echo "common/$from.c calls $symbol of common/$to.c, a layer above"
        bad=1
    fi
done <<< "$edges"

# circles
loops=$(awk '{ print $1, $2 }' <<< "$edges" | sort -u | tsort 2>&1 >/dev/null)
if [ -n "$loops" ]; then
    echo "a circle of calls:"
    printf '%s\n' "$loops" | sed 's/^/  /'
    bad=1
fi
loops=$(for f in common/*/*.[ch]; do
            sed -n 's/^#include "\([^"]*\)".*/\1/p' "$f" | sed "s|^|${f#common/} |"
        done | awk '$1 != $2' | tsort 2>&1 >/dev/null)
if [ -n "$loops" ]; then
    echo "a circle of includes:"
    printf '%s\n' "$loops" | sed 's/^/  /'
    bad=1
fi
exit $bad
