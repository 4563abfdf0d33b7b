#!/usr/bin/env bash
# pipelines/compare.sh: the paper's comparison figure for one image: the
# image, A-MIL's attention over it (stitch), and a CNN's Grad-CAM and Guided
# Grad-CAM (gradcam), side by side in one PNG, with a caption row above.
#
#   pipelines/compare.sh -a AMIL_MODEL -c CNN_MODEL [-o FIGURE.png]
#                        [-m jet|viridis|gray] [-s STRIDE] IMAGE
#
# AMIL_MODEL is an attention-MIL model (train --arch amil), CNN_MODEL a CNN
# baseline (train --arch net, vgg19 or resnet18).  The attention is over
# bagify's patches of the model's side (-s: their stride, for a finer map);
# both maps are of the class each model predicts.  The figure goes to
# FIGURE.png [compare.png].  Needs amil's programs and netpbm on PATH.
set -euo pipefail

usage() {
    echo "usage: compare.sh -a AMIL_MODEL -c CNN_MODEL [-o FIGURE.png] [-m jet|viridis|gray] [-s STRIDE] IMAGE" >&2
    exit 2
}

amil= cnn= figure=compare.png cmap=jet stride=
while getopts a:c:o:m:s:h option; do
    case $option in
    a) amil=$OPTARG ;;
    c) cnn=$OPTARG ;;
    o) figure=$OPTARG ;;
    m) cmap=$OPTARG ;;
    s) stride=$OPTARG ;;
    *) usage ;;
    esac
done
shift $((OPTIND - 1))
[ $# -eq 1 ] && [ -n "$amil" ] && [ -n "$cnn" ] || usage
image=$1

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# the attention-MIL model's patch side, from its metadata (28 when a bare
# state_dict does not say)
patch=$(recinfo "$amil" | awk '$1 == "patch" && $2 == "=" { print $3 }')
bagify -p "${patch:-28}" ${stride:+-s "$stride"} "$image" |
    featurize -m "$amil" | attend -m "$amil" |
    stitch --cmap "$cmap" --no-legend -f pam "$image" > "$work/attention.pam"
gradcam -m "$cnn" --cmap "$cmap" --no-legend -f pam "$image" > "$work/gradcam.pam"
gradcam -m "$cnn" --method guided-gradcam -f pam "$image" > "$work/guided.pam"
pngtopam "$image" 2>/dev/null > "$work/image.pam" || anytopnm "$image" > "$work/image.pam"

# each panel under its caption, centred; 12 white columns between panels
panels=()
for panel in "image:image" "attention:A-MIL attention" "gradcam:Grad-CAM" \
             "guided:Guided Grad-CAM"; do
    name=${panel%%:*} caption=${panel#*:}
    pamtopnm "$work/$name.pam" > "$work/$name.pnm" 2>/dev/null ||
        cp "$work/$name.pam" "$work/$name.pnm"
    pbmtext -builtin fixed "$caption" | pamenlarge 2 > "$work/$name.caption.pbm"
    pnmcat -tb -jcenter -white "$work/$name.caption.pbm" "$work/$name.pnm" \
        > "$work/$name.panel.pnm"
    panels+=("$work/$name.panel.pnm")
    [ "$name" = guided ] || { pbmmake -white 12 1 > "$work/$name.gap.pbm"; panels+=("$work/$name.gap.pbm"); }
done
pnmcat -lr -jtop -white "${panels[@]}" | pnmtopng > "$figure"
