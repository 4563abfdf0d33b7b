# pipelines/breakhis.mk: the paper's whole BreakHis study, for every
# magnification (its run_for_all_zoom), as ordinary commands a user can
# copy and change.
#
#   make -f pipelines/breakhis.mk DATA=path/to/BreaKHis_v1 OUT=out/breakhis -j2
#
# DATA is the official archive (BreaKHis_v1, or anything above its
# histology_slides/) or a Kaggle fold ({train,test}/...).  For each
# magnification: reorg-breakhis into the paper's layout (a seeded,
# patient-disjoint split, or the official folds: REORG_FLAGS="--folds
# Folds.csv --fold 1"); bagify over every image, each image its own target
# (so `make -j` runs them in parallel and an interrupted run resumes where
# it stopped); A-MIL trained for EPOCHS; the CNN baselines (net; vgg19 and
# resnet18 with a frozen backbone, their tile features cached once);
# classify and evaluate each at image and patient level; A-MIL's attention
# over every test image; the comparison figure for the first FIGURES test
# images; training curves; and a summary table.  Results:
#
#   OUT/results.md, OUT/results.tsv   accuracy, AUC, patient recognition rate
#   OUT/<mag>/<model>/                model.st, log.tsv, table.tsv, metrics.txt
#   OUT/<mag>/amil/heat/              attention over every test image
#   OUT/<mag>/figures/                image | attention | Grad-CAM | Guided Grad-CAM
#   OUT/<mag>/curves.png              loss and accuracy per epoch, every model
#
# ImageNet weights for the backbones cannot be downloaded here; give them as
# VGG19_WEIGHTS and RESNET18_WEIGHTS (torchvision state_dicts saved with
# safetensors: see train(1)).  Without them the backbones are random, which
# tests the plumbing and nothing else.
THIS := $(lastword $(MAKEFILE_LIST))
HERE := $(dir $(THIS))
DATA ?=
OUT ?= out/breakhis
MAGS ?= 40X 100X 200X 400X
REORG_FLAGS ?=
GROUPS = $(MAGS)
SOURCE_EXT = png
GROUP_NAME = magnification
CLASSES = 2
LABEL_FROM = breakhis
BY = patient

ifeq ($(DATA),)
$(error give DATA=path/to/BreaKHis_v1 (or a Kaggle fold))
endif

include $(HERE)study.mk

all: $(OUT)/results.md

# ---- 1. the paper's layout: OUT/data/<mag>/{train,test}/{0,1}/*.png --------
$(OUT)/data/.done:
	@mkdir -p $(OUT)
	$(call bin,reorg-breakhis) $(REORG_FLAGS) --seed $(SEED) '$(DATA)' $(OUT)/data > $(OUT)/reorg.tsv
	touch $@

# Which images there are is known once the layout exists: everything else
# is made by a second make that reads it.
# (only here: in the second make, study.mk's rule makes results.md, and
# this one would call make again, without end)
ifneq ($(PHASE),2)
$(OUT)/results.md: $(OUT)/data/.done FORCE
	$(MAKE) -f $(THIS) PHASE=2 results
endif

FORCE:
.PHONY: all results FORCE
