#!/usr/bin/env bats
# pipelines/slides.mk over three slides, run twice: by make -j2, and as
# amil(7) says for a cluster, a Slurm job array (a task per slide's
# features) and a job that makes the rest once they succeed, on a one-node
# Slurm cluster started here (munged, slurmctld and slurmd on this host,
# from a slurm.conf written here, stopped at the end).  Both runs must
# give the same bytes.  The slides: OpenSlide's Aperio test slide and two
# of the committed images, made pyramidal TIFFs by libvips.

load lib

setup() {
    T=$BATS_TEST_TMPDIR
    MK=$BATS_TEST_DIRNAME/../pipelines/slides.mk
}

teardown() {
    local daemon pid
    for daemon in slurmd slurmctld munged; do
        [ -s "$T/cluster/$daemon.pid" ] || continue
        pid=$(cat "$T/cluster/$daemon.pid")
        kill "$pid" 2> /dev/null || continue
        for _ in $(seq 50); do   # gone before the next one is stopped
            kill -0 "$pid" 2> /dev/null || break
            sleep 0.2
        done
    done
    return 0
}

# A one-node cluster in $T/cluster, from $SLURM_CONF.  Returns 1, with why
# on stdout, when it does not come up.
start_cluster() {
    local c=$T/cluster host port
    host=$(hostname -s)
    port=$((20000 + RANDOM % 20000))
    mkdir -p "$c/state" "$c/spool" "$c/log"
    mungekey --create --keyfile "$c/munge.key" || { echo "mungekey failed"; return 1; }
    chmod 600 "$c/munge.key"
    munged --key-file="$c/munge.key" --socket="$c/munge.sock" --pid-file="$c/munged.pid" \
        --log-file="$c/log/munged.log" --seed-file="$c/munge.seed" --force ||
        { echo "munged does not start: $(tail -n 2 "$c/log/munged.log")"; return 1; }
    cat > "$SLURM_CONF" <<CONF
ClusterName=amiltest
SlurmctldHost=$host
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=$(id -un)
SlurmdUser=$(id -un)
AuthType=auth/munge
AuthInfo=socket=$c/munge.sock
CredType=cred/munge
StateSaveLocation=$c/state
SlurmdSpoolDir=$c/spool
SlurmctldPidFile=$c/slurmctld.pid
SlurmdPidFile=$c/slurmd.pid
SlurmctldLogFile=$c/log/slurmctld.log
SlurmdLogFile=$c/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
NodeName=$host CPUs=$(nproc) State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
    slurmctld -i || { echo "slurmctld does not start: $(tail -n 3 "$c/log/slurmctld.log")"; return 1; }
    slurmd || { echo "slurmd does not start: $(tail -n 3 "$c/log/slurmd.log")"; return 1; }
    for _ in $(seq 30); do
        [ "$(sinfo -h -o %t 2> /dev/null)" = idle ] && return 0
        sleep 1
    done
    echo "the node is not idle after 30 s: $(sinfo 2>&1 | tail -n 1); $(tail -n 3 "$c/log/slurmd.log")"
    return 1
}

@test "slurm: slides.mk as a job array on a one-node cluster gives make -j's bytes" {
    for p in slurmctld slurmd munged mungekey sbatch vips; do
        command -v "$p" > /dev/null || { echo "$p is missing: make deps installs it" >&2; return 1; }
    done
    cd "$T"
    mkdir slides
    vips tiffsave "$DATA/CMU-1-Small-Region.svs" slides/skin.tif --tile --pyramid \
        --compression jpeg --Q 90
    vips tiffsave "$BREAKHIS" slides/breast.tif --tile --pyramid --tile-width 128 \
        --tile-height 128 --compression deflate
    vips tiffsave "$IHC" slides/colon.tif --tile --pyramid --tile-width 128 \
        --tile-height 128 --compression deflate
    printf 'skin.tif\t1\nbreast.tif\t0\ncolon.tif\t1\n' > labels.tsv
    { bagify -w -l 0 "$BREAKHIS"; bagify -w -l 1 "$IHC"; } |
        train --arch resnet18 -e 0 -q -o backbone.st > /dev/null
    settings="SLIDES=slides SLIDE_EXT=tif LABELS=labels.tsv BACKBONE=backbone.st EPOCHS=3"
    make -s -f "$MK" $settings OUT=local -j2
    export SLURM_CONF=$T/cluster/slurm.conf
    if ! why=$(start_cluster); then
        # said on the TAP stream, and the test fails: Slurm was asked for
        echo "# slurm: the one-node cluster did not start here: $why" >&3
        return 1
    fi
    # amil(7)'s commands, OUT=cluster
    ls slides | sed -n 's/\.tif$//p' > names.txt
    make="make -s -f $MK $settings OUT=cluster"
    mkdir -p logs
    jid=$(sbatch --parsable --array=1-$(wc -l < names.txt) --output=logs/features-%a.out \
        --wrap "$make cluster/features/\$(sed -n \${SLURM_ARRAY_TASK_ID}p names.txt).rec")
    sbatch --parsable --wait --dependency=afterok:$jid --output=logs/rest.out --wrap "$make" \
        > /dev/null || { cat logs/*.out; return 1; }
    [ "$(ls cluster/features | wc -l)" -eq 3 ]
    for f in features/skin.rec features/breast.rec features/colon.rec head.st table.tsv \
             metrics.txt geojson/skin.geojson heat/skin.png; do
        cmp "local/$f" "cluster/$f"
    done
    # the array ran three tasks, one per slide
    [ "$(ls logs/features-*.out | wc -l)" -eq 3 ]
}

# make deleted OUT/slides/NAME.rec, an intermediate of the heat map and the
# GeoJSON, at the end of every run, so drawing a slide again (another
# --top or --downsample) classified it again; slides.mk keeps them.
@test "slides.mk: the classified slides are kept; a picture made again only draws" {
    cd "$T"
    mkdir slides
    cp "$DATA/CMU-1-Small-Region.svs" slides/a.svs
    cp "$DATA/CMU-1-Small-Region.svs" slides/b.svs
    printf 'a.svs\t1\nb.svs\t0\n' > labels.tsv
    bagify -w -l 0 "$BREAKHIS" | train --arch resnet18 -e 0 -q -o backbone.st > /dev/null
    settings="SLIDES=slides LABELS=labels.tsv BACKBONE=backbone.st EPOCHS=2 OUT=out"
    make -s -f "$MK" $settings -j2
    [ -s out/slides/a.rec ]
    [ -s out/slides/b.rec ]
    rm out/heat/a.png
    # --no-print-directory: under make check, a nested make says its folder
    run make --no-print-directory -n -f "$MK" $settings
    [ "$status" -eq 0 ]
    [ "${#lines[@]}" -eq 2 ] || { echo "$output"; return 1; }
    [[ "${lines[0]}" == "mkdir -p out/heat" ]] || { echo "$output"; return 1; }
    [[ "${lines[1]}" == "stitch --downsample 16 -o out/heat/a.png < out/slides/a.rec" ]] ||
        { echo "$output"; return 1; }
}
