# pipelines/bach.mk: the paper's BACH study (ICIAR 2018 grand challenge on
# breast cancer histology, its microscopy part): four classes, the softmax
# head, as ordinary commands a user can copy and change.
#
#   make -f pipelines/bach.mk DATA=path/to/ICIAR2018_BACH_Challenge OUT=out/bach -j2
#
# DATA holds Photos/{Normal,Benign,InSitu,Invasive}/*.tif (or is Photos
# itself): classes 0 to 3 in that order.  BACH names no patients, so the
# split is a seeded stratified one: in each class, the images ordered by
# the MD5 of "SEED:name" (the same order on any machine), the first RATIO
# of them for training.  Each TIFF goes through netpbm (tifftopnm |
# pnmtopng, its own target: `make -j` converts in parallel) into the
# layout OUT/data/all/{train,test}/<class>/<name>.png, and from there the
# study is breakhis.mk's (study.mk): A-MIL, the CNN baselines, evaluate,
# heat maps, figures, curves, OUT/results.md.
THIS := $(lastword $(MAKEFILE_LIST))
HERE := $(dir $(THIS))
DATA ?=
OUT ?= out/bach
RATIO ?= 0.7
GROUPS = all
SOURCE_EXT = tif
GROUP_NAME = set
CLASSES = 4
LABEL_FROM = dir
BY = image

ifeq ($(DATA),)
$(error give DATA=path/to/ICIAR2018_BACH_Challenge)
endif

include $(HERE)study.mk

all: $(OUT)/results.md

# ---- 1. the split: OUT/source/all/{train,test}/<class>/<name>.tif links -----
$(OUT)/source/.done:
	@mkdir -p $(OUT)
	$(HERE)bach-split.sh '$(DATA)' $(OUT)/source $(SEED) $(RATIO) > $(OUT)/split.tsv
	touch $@

# (only here: in the second make, study.mk's rule makes results.md, and
# this one would call make again, without end)
ifneq ($(PHASE),2)
$(OUT)/results.md: $(OUT)/source/.done FORCE
	$(MAKE) -f $(THIS) PHASE=2 results
endif

FORCE:
.PHONY: all results FORCE

ifeq ($(PHASE),2)
# ---- 2. each TIFF through netpbm into a PNG ------------------------------------
# kept: stitch, gradcam and the figures draw on them
.PRECIOUS: $(OUT)/data/%.png
$(OUT)/data/%.png: $(OUT)/source/%.tif
	@mkdir -p $(@D)
	tifftopnm -quiet $< | pnmtopng > $@.tmp && mv $@.tmp $@
endif
