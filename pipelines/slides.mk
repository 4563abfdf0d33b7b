# pipelines/slides.mk: a folder of whole-slide images end to end, as CLAM
# runs them: each slide's tissue cut into patches and embedded once by a
# frozen backbone, CLAM's attention head trained on the labelled slides,
# every slide classified and drawn (a heat map, and a GeoJSON of its
# patches for QuPath), the held-out slides evaluated.
#
#   make -f pipelines/slides.mk SLIDES=slides LABELS=labels.tsv \
#        BACKBONE=resnet18.st OUT=out/slides -j2
#
# SLIDES    a folder of slides (SLIDE_EXT: svs; any format OpenSlide reads)
# LABELS    the training slides: a line each, its file name (no folder), a
#           tab, its class (0, 1, ...)
# TEST      the held-out slides, the same way; without it the table and
#           the metrics are of the training slides
# BACKBONE  a frozen vgg19 or resnet18 (train --arch resnet18 -w
#           imagenet.st -e 0 makes one from torchvision's weights; see
#           train(1)); its input side is the patch side
#
# Each slide is its own target, so that `make -j`, GNU parallel or a Slurm
# job array (amil(7)) cut and embed slides side by side, and a stopped run
# goes on where it was:
#
#   OUT/features/NAME.rec     bagify (tissue only) | featurize -m BACKBONE
#   OUT/head.st, head.log     train --arch clam on the LABELS slides
#   OUT/slides/NAME.rec       attend | classify, per slide
#   OUT/heat/NAME.png         stitch: attention over the slide
#   OUT/geojson/NAME.geojson  stitch -f geojson: the patches for QuPath
#   OUT/table.tsv, metrics.txt   classify -t and evaluate, TEST (or LABELS)
#
# Every one of them is kept, OUT/slides/NAME.rec too, though only the
# pictures need it (make would delete it as an intermediate): so a picture
# drawn again, with another DOWNSAMPLE or by hand with stitch --top, reads
# the classified slide instead of classifying it again.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DELETE_ON_ERROR:
.SUFFIXES:

SLIDES ?= slides
SLIDE_EXT ?= svs
LABELS ?= labels.tsv
TEST ?=
BACKBONE ?= backbone.st
OUT ?= out/slides
PATCH ?= 224
# bagify's resolution: e.g. --magnification 20 (CLAM's), --mpp 0.5; level 0
# when empty
RESOLUTION ?=
ARCH ?= clam
EPOCHS ?= 20
SEED ?= 1
DOWNSAMPLE ?= 16
# amil's programs: BIN/program, or from PATH
BIN ?=
bin = $(if $(BIN),$(BIN)/$(1),$(1))

# names: a labels file's slides, without their extension
names = $(basename $(shell cut -f 1 $(1)))
ALL := $(sort $(basename $(notdir $(wildcard $(SLIDES)/*.$(SLIDE_EXT)))))
TRAIN := $(call names,$(LABELS))
HELD := $(if $(TEST),$(call names,$(TEST)),$(TRAIN))

all: $(OUT)/metrics.txt \
     $(ALL:%=$(OUT)/heat/%.png) $(ALL:%=$(OUT)/geojson/%.geojson)
features: $(ALL:%=$(OUT)/features/%.rec)

# the label of slide $* from LABELS or TEST, as bagify -l wants it
label = $$(awk -F '\t' -v s='$*.$(SLIDE_EXT)' '$$1 == s { print "-l " $$2 }' \
             $(LABELS) $(TEST) /dev/null)

# ---- each slide: its patches' features, written whole or not at all -------
$(OUT)/features/%.rec: $(SLIDES)/%.$(SLIDE_EXT) $(BACKBONE)
	@mkdir -p $(@D)
	$(call bin,bagify) $(label) -p $(PATCH) $(RESOLUTION) $< | \
	    $(call bin,featurize) -m $(BACKBONE) > $@.tmp && mv $@.tmp $@

# ---- the head, on the training slides ---------------------------------------
$(OUT)/head.st: $(TRAIN:%=$(OUT)/features/%.rec)
	cat $^ | $(call bin,train) --arch $(ARCH) -e $(EPOCHS) -s $(SEED) -q -o $@ \
	    --checkpoint $(OUT)/head.ckpt > $(OUT)/head.log

# ---- each slide: classified, drawn ------------------------------------------
$(OUT)/slides/%.rec: $(OUT)/features/%.rec $(OUT)/head.st
	@mkdir -p $(@D)
	$(call bin,attend) -m $(OUT)/head.st $< | $(call bin,classify) -m $(OUT)/head.st \
	    > $@.tmp && mv $@.tmp $@

# kept: the pictures are drawn from them, again when asked
.SECONDARY: $(ALL:%=$(OUT)/slides/%.rec)

$(OUT)/heat/%.png: $(OUT)/slides/%.rec
	@mkdir -p $(@D)
	$(call bin,stitch) --downsample $(DOWNSAMPLE) -o $@ < $<

$(OUT)/geojson/%.geojson: $(OUT)/slides/%.rec
	@mkdir -p $(@D)
	$(call bin,stitch) -f geojson -o $@ < $<

# ---- the held-out slides' table and metrics ----------------------------------
$(OUT)/table.tsv: $(HELD:%=$(OUT)/features/%.rec) $(OUT)/head.st
	cat $(HELD:%=$(OUT)/features/%.rec) | $(call bin,attend) -m $(OUT)/head.st | \
	    $(call bin,classify) -m $(OUT)/head.st -t > $@.tmp && mv $@.tmp $@

$(OUT)/metrics.txt: $(OUT)/table.tsv
	$(call bin,evaluate) $< > $@

.PHONY: all features
