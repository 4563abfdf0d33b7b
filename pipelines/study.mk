# pipelines/study.mk: what breakhis.mk and bach.mk share, included by both:
# the settings of the study, and its second part: given the images in the
# paper's layout, OUT/data/<group>/{train,test}/<class>/*.png (a group is
# a magnification of BreakHis, or all of BACH), every model trained,
# scored and drawn.  The rules are read once the layout exists (PHASE=2),
# so that they know the images.
#
# From the including file, before it includes this one: OUT, HERE
# (pipelines/), GROUPS, GROUP_NAME (the summary's first column),
# SOURCE_EXT (png, or tif with a rule that makes OUT/data/%.png of
# OUT/source/%.tif), CLASSES, LABEL_FROM (bagify -L: breakhis or dir), BY
# (evaluate --by: patient or image).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DELETE_ON_ERROR:
.SUFFIXES:

MODELS ?= amil net vgg19 resnet18
EPOCHS ?= 20
CNN_EPOCHS ?= 10
SEED ?= 1
THREADS ?= 1
FIGURES ?= 3
VGG19_WEIGHTS ?=
RESNET18_WEIGHTS ?=
# ImageNet's normalization with ImageNet weights, none without (the paper's)
CNN_NORMALIZE ?= $(if $(VGG19_WEIGHTS)$(RESNET18_WEIGHTS),imagenet,none)
# the CNN whose Grad-CAM the figures show: the first CNN of MODELS
FIGURE_CNN ?= $(firstword $(filter net vgg19 resnet18,$(MODELS)))
# amil's programs: BIN/program, or from PATH
BIN ?=
bin = $(if $(BIN),$(BIN)/$(1),$(1))
weights_vgg19 = $(VGG19_WEIGHTS)
weights_resnet18 = $(RESNET18_WEIGHTS)

ifeq ($(PHASE),2)
# progress NAME: train's lines on stderr ("Epoch: 3, Loss: ...") with the
# group and model in front, so that parallel jobs can be told apart
progress = 2> >(sed -u 's/^/$(1): /' >&2)

# the images of a group's split: OUT/data/.../*.png, or for sources in
# another format (SOURCE_EXT: BACH's tif) the PNGs they become
images = $(patsubst $(OUT)/source/%.$(SOURCE_EXT),$(OUT)/data/%.png,\
    $(sort $(wildcard $(OUT)/$(if $(filter png,$(SOURCE_EXT)),data,source)/$(1)/$(2)/*/*.$(SOURCE_EXT))))
bags = $(patsubst $(OUT)/data/%.png,$(OUT)/bags/%.bag,$(call images,$(1),$(2)))
wholes = $(patsubst $(OUT)/data/%.png,$(OUT)/images/%.img,$(call images,$(1),$(2)))

# ---- 2. one record per image, each its own target --------------------------
# written to a temporary file first: a stopped run leaves no half record
$(OUT)/bags/%.bag: $(OUT)/data/%.png
	@mkdir -p $(@D)
	$(call bin,bagify) -L $(LABEL_FROM) $< > $@.tmp && mv $@.tmp $@

$(OUT)/images/%.img: $(OUT)/data/%.png
	@mkdir -p $(@D)
	$(call bin,bagify) -w -L $(LABEL_FROM) $< > $@.tmp && mv $@.tmp $@

# ---- 3. per group -------------------------------------------------------------
define group
$(OUT)/$(1)/train.bags: $(call bags,$(1),train)
	@mkdir -p $$(@D)
	cat $$^ > $$@
$(OUT)/$(1)/test.bags: $(call bags,$(1),test)
	@mkdir -p $$(@D)
	cat $$^ > $$@
$(OUT)/$(1)/train.img: $(call wholes,$(1),train)
	@mkdir -p $$(@D)
	cat $$^ > $$@
$(OUT)/$(1)/test.img: $(call wholes,$(1),test)
	@mkdir -p $$(@D)
	cat $$^ > $$@

# A-MIL: the paper's model and settings
$(OUT)/$(1)/amil/model.st: $(OUT)/$(1)/train.bags $(OUT)/$(1)/test.bags
	@mkdir -p $$(@D)
	$(call bin,train) -o $$@ -c $(CLASSES) -e $(EPOCHS) -s $(SEED) -j $(THREADS) \
	    --test $(OUT)/$(1)/test.bags $(OUT)/$(1)/train.bags > $$(@D)/log.tsv $(call progress,$(1) amil)
$(OUT)/$(1)/amil/table.tsv: $(OUT)/$(1)/amil/model.st
	$(call bin,featurize) -m $$< $(OUT)/$(1)/test.bags | $(call bin,attend) -m $$< | \
	    tee $$(@D)/attention.rec | $(call bin,classify) -m $$< -t > $$@
$(OUT)/$(1)/amil/heat/.done: $(OUT)/$(1)/amil/table.tsv
	@mkdir -p $$(@D)
	rm -f $$(@D)/*.png   # stitch -d never overwrites: a new model, new maps
	$(call bin,stitch) -d $$(@D) < $$(<D)/attention.rec
	touch $$@

# net: trained whole, on random 128x128 crops
$(OUT)/$(1)/net/model.st: $(OUT)/$(1)/train.img $(OUT)/$(1)/test.img
	@mkdir -p $$(@D)
	$(call bin,train) --arch net -o $$@ -c $(CLASSES) -e $(CNN_EPOCHS) -s $(SEED) -j $(THREADS) \
	    --normalize $(CNN_NORMALIZE) --test $(OUT)/$(1)/test.img $(OUT)/$(1)/train.img \
	    > $$(@D)/log.tsv $(call progress,$(1) net)
$(OUT)/$(1)/net/table.tsv: $(OUT)/$(1)/net/model.st
	$(call bin,classify) -m $$< -t $(OUT)/$(1)/test.img > $$@

# the frozen backbones: the starting model (train -e 0), its features of
# every tile of every image, once; then the last layer on them
$(foreach cnn,vgg19 resnet18,$(eval $(call backbone,$(1),$(cnn))))

$(OUT)/$(1)/%/metrics.txt: $(OUT)/$(1)/%/table.tsv
	$(call bin,evaluate) --by $(BY) $$< > $$@

$(OUT)/$(1)/curves.png: $(foreach m,$(MODELS),$(OUT)/$(1)/$(m)/model.st)
	$(HERE)plot-curves.sh $$@ '$(1)' $(foreach m,$(MODELS),$(m)=$(OUT)/$(1)/$(m)/log.tsv)

$(OUT)/$(1)/figures/.done: $(OUT)/$(1)/amil/model.st $(OUT)/$(1)/$(FIGURE_CNN)/model.st
	@mkdir -p $$(@D)
	for f in $$(wordlist 1,$(FIGURES),$$(call images,$(1),test)); do \
	    $(if $(BIN),PATH="$(BIN):$$$$PATH") $(HERE)compare.sh -a $(OUT)/$(1)/amil/model.st \
	        -c $(OUT)/$(1)/$(FIGURE_CNN)/model.st -o $$(@D)/$$$$(basename $$$$f) $$$$f; \
	done
	touch $$@
endef

define backbone
$(OUT)/$(1)/$(2)/init.st: $(OUT)/$(1)/train.img
	@mkdir -p $$(@D)
	$(call bin,train) -q --arch $(2) -c $(CLASSES) -e 0 -s $(SEED) --normalize $(CNN_NORMALIZE) \
	    $(if $(weights_$(2)),-w $(weights_$(2))) -o $$@ $$< > /dev/null
	rm -f $$@.ckpt
$(OUT)/$(1)/$(2)/%.feat: $(OUT)/$(1)/%.img $(OUT)/$(1)/$(2)/init.st
	$(call bin,featurize) -m $(OUT)/$(1)/$(2)/init.st -j $(THREADS) $$< > $$@.tmp && mv $$@.tmp $$@
$(OUT)/$(1)/$(2)/model.st: $(OUT)/$(1)/$(2)/train.feat $(OUT)/$(1)/$(2)/test.feat
	$(call bin,train) --arch $(2) -c $(CLASSES) -w $(OUT)/$(1)/$(2)/init.st -o $$@ -e $(CNN_EPOCHS) \
	    -s $(SEED) -j $(THREADS) --normalize $(CNN_NORMALIZE) \
	    --test $(OUT)/$(1)/$(2)/test.feat $(OUT)/$(1)/$(2)/train.feat > $$(@D)/log.tsv \
	    $(call progress,$(1) $(2))
$(OUT)/$(1)/$(2)/table.tsv: $(OUT)/$(1)/$(2)/model.st
	$(call bin,classify) -m $$< -t $(OUT)/$(1)/$(2)/test.feat > $$@
endef

$(foreach g,$(GROUPS),$(eval $(call group,$(g))))

# ---- 4. the summary ----------------------------------------------------------
metrics = $(foreach g,$(GROUPS),$(foreach m,$(MODELS),$(OUT)/$(g)/$(m)/metrics.txt))
figures = $(if $(and $(filter amil,$(MODELS)),$(FIGURE_CNN)),$(OUT)/$(1)/figures/.done)
# a file, not a phony target: a finished study has nothing left to do
results: $(OUT)/results.md
$(OUT)/results.md: $(metrics) $(foreach g,$(GROUPS),$(OUT)/$(g)/curves.png $(call figures,$(g)) \
                              $(if $(filter amil,$(MODELS)),$(OUT)/$(g)/amil/heat/.done))
	$(HERE)summarize.sh $(OUT) '$(GROUPS)' '$(MODELS)' $(GROUP_NAME)
endif
