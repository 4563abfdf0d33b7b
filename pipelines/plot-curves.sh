#!/usr/bin/env bash
# pipelines/plot-curves.sh OUT.png TITLE NAME=LOG.tsv...: training curves of
# train's logs (loss and accuracy per epoch, training set solid, test set
# dashed), one colour per model, as a PNG (gnuplot, Debian's gnuplot-nox).
set -euo pipefail
[ $# -ge 3 ] || { echo "usage: plot-curves.sh OUT.png TITLE NAME=LOG.tsv..." >&2; exit 2; }
out=$1 title=$2
shift 2
loss= accuracy= colour=0
for pair in "$@"; do
    name=${pair%%=*} log=${pair#*=}
    colour=$((colour + 1))
    # columns: epoch train_loss train_error train_accuracy test_loss ... test_accuracy
    loss+="'$log' skip 1 using 1:2 with linespoints lc $colour dt 1 title '$name train', "
    loss+="'$log' skip 1 using 1:5 with linespoints lc $colour dt 2 title '$name test', "
    accuracy+="'$log' skip 1 using 1:4 with linespoints lc $colour dt 1 title '$name train', "
    accuracy+="'$log' skip 1 using 1:7 with linespoints lc $colour dt 2 title '$name test', "
done
gnuplot <<GNUPLOT
set terminal pngcairo size 1200,450 font ',10'
set output '$out'
set datafile missing 'nan'
set multiplot layout 1,2 title '$title'
set xlabel 'epoch'
set key outside right
set ylabel 'loss'
plot ${loss%, }
set ylabel 'accuracy'
set yrange [0:1]
plot ${accuracy%, }
unset multiplot
GNUPLOT
