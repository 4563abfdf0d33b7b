#!/usr/bin/env bats
# The PyTorch fixtures the unit tests compare against are what their
# generators make today (Debian's python3-torch and python3-torchvision, as
# make deps installs them): tests/torch/*.py write them anew and
# tests/torch/compare.py holds them to the committed ones, so that a
# fixture can never drift from its generator; so is the colour maps'
# (tests/colormaps.py, matplotlib's), byte for byte.  The CNN one computes
# VGG19 and ResNet18 in float64: several minutes.

load lib

setup() {
    T=$BATS_TEST_TMPDIR
    PY=/usr/bin/python3
}

# Skips the test unless Debian's Python has the modules named.
needs() {
    "$PY" -c "import $1" 2>/dev/null ||
        skip "Debian's Python lacks $1: install its packages (make deps)"
}

@test "fixtures: tests/torch/fixture.py makes the attention-MIL fixtures as committed" {
    needs torch,torchvision
    "$PY" "$BATS_TEST_DIRNAME/torch/fixture.py" "$T" > /dev/null
    for f in torch-fixture torch-state-dict; do
        "$PY" "$BATS_TEST_DIRNAME/torch/compare.py" "$T/$f.safetensors" "$DATA/$f.safetensors"
    done
}

@test "fixtures: tests/torch/cnn_fixture.py makes the CNN fixture as committed" {
    needs torch,torchvision
    "$PY" "$BATS_TEST_DIRNAME/torch/cnn_fixture.py" "$T" > /dev/null
    "$PY" "$BATS_TEST_DIRNAME/torch/compare.py" "$T/cnn-fixture.safetensors" "$DATA/cnn-fixture.safetensors"
}

@test "fixtures: tests/torch/clam_fixture.py makes the CLAM head's fixture as committed" {
    needs torch,torchvision
    "$PY" "$BATS_TEST_DIRNAME/torch/clam_fixture.py" "$T" > /dev/null
    "$PY" "$BATS_TEST_DIRNAME/torch/compare.py" "$T/clam-fixture.safetensors" "$DATA/clam-fixture.safetensors"
}

@test "fixtures: tests/colormaps.py makes the colour-map fixture as committed" {
    needs matplotlib
    "$PY" "$BATS_TEST_DIRNAME/colormaps.py" > "$T/colormaps.safetensors"
    cmp "$T/colormaps.safetensors" "$DATA/colormaps.safetensors"
}
