# amil: attention multiple-instance learning for histopathology, as Unix filters.
#
#   make          build the programs into build/bin
#   make deps     install the Debian packages the build and the tests need
#   make check    build, then run the C unit tests, the bats suites and mandoc -Tlint
#   make demo     a short run of the pipeline on the committed images
#   make install  PREFIX=/usr/local (programs in bin/, man pages in share/man/)
#   make check SAN=1   the same, built with AddressSanitizer and UBSan
#   make fuzz     libFuzzer on each parser of untrusted bytes (tests/fuzz/),
#                 FUZZ_SECONDS each [60]; FUZZ_TARGETS picks some

PREFIX  ?= /usr/local
CC      ?= cc
BUILD   ?= build
SAN     ?=

# CFLAGS is the user's (make CFLAGS=...); what the build needs is in
# AMIL_CFLAGS, so that overriding one does not lose the other.
# -fno-math-errno lets sqrtf and friends inline; it changes no result.
CFLAGS  ?= -O3 -g
AMIL_CFLAGS = -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -fno-math-errno \
           -Wall -Wextra -Werror -Icommon -I/usr/include/stb -I/usr/include/netpbm \
           -I/usr/include/x86_64-linux-gnu/openblas-pthread -I/usr/include/openslide
# OpenBLAS before GSL, so cblas_* resolve to OpenBLAS, not libgslcblas.
LDLIBS  += -lopenblas -lstb -ldeflate -lnetpbm -lgsl -lcjson -lopenslide -lm -lpthread
ifneq ($(SAN),)
BUILD   := build-san
AMIL_CFLAGS += -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS += -fsanitize=address,undefined
endif

# Debian packages: library headers, test tools, and what the tests compare against.
DEPS = build-essential pkg-config libnetpbm-dev netpbm libstb-dev libgsl-dev \
       libopenblas-dev libcjson-dev libdeflate-dev libcmocka-dev bats mandoc python3-numpy \
       gnuplot-nox jq python3-torch python3-torchvision python3-pil libopenslide-dev \
       openslide-tools time \
       libvips-tools slurm-wlm munge python3-skimage

PROGS   = bagify stitch reorg-breakhis recinfo featurize attend classify train evaluate \
          mnist-bags localize gradcam stainnorm
# The lane kernels (lanes.h) are compiled once per instruction set, into
# DIR/NAME_ISA.o (names unique in the archive); the rest once.
ISAS    = avx512 avx2 portable
KERNEL_SRC = common/compute/kernels.c common/compute/kernels_shift.c \
             common/compute/kernels_winograd.c common/compute/kernels_transformer.c \
             common/compute/kernels_bf16.c
kernel_objs = $(foreach isa,$(ISAS),$(KERNEL_SRC:common/%.c=$(1)/%_$(isa).o))
LIB_SRC = $(filter-out $(KERNEL_SRC),$(wildcard common/*/*.c))
# every header: a change to one rebuilds everything (the library is small)
HEADERS = $(wildcard common/*/*.h)
LIB_OBJ = $(LIB_SRC:common/%.c=$(BUILD)/common/%.o) $(call kernel_objs,$(BUILD)/common)
UNITS   = $(patsubst tests/unit/%.c,%,$(wildcard tests/unit/test_*.c))
HELPERS = $(patsubst tests/helpers/%.c,%,$(wildcard tests/helpers/*.c))
MANS    = $(wildcard man/*.[1-9])
# tests/fuzz: a target per parser of untrusted bytes; make check replays
# the committed corpus through each, under the sanitizers
FUZZ_TARGETS ?= stream model image breakhis evaluate localize
FUZZ_SECONDS ?= 60
SAN_FLAGS = -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer \
            -fno-sanitize-recover=all
REPLAY_OBJ  = $(LIB_SRC:common/%.c=$(BUILD)/replay/%.o) $(call kernel_objs,$(BUILD)/replay)
REPLAY_BINS = $(FUZZ_TARGETS:%=$(BUILD)/tests/fuzz_%)
FUZZ_OBJ    = $(LIB_SRC:common/%.c=build-fuzz/common/%.o) $(call kernel_objs,build-fuzz/common)
FUZZ_FLAGS  = -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer

BINS    = $(PROGS:%=$(BUILD)/bin/%)
UNIT_BINS   = $(UNITS:%=$(BUILD)/tests/%)
HELPER_BINS = $(HELPERS:%=$(BUILD)/tests/%)

all: $(BINS)

$(BUILD)/common/%.o: common/%.c $(HEADERS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(AMIL_CFLAGS) -c -o $@ $<
KERNEL_FLAGS_avx512   = -DLANES=16 -mavx512f -mfma -mavx2
KERNEL_FLAGS_avx2     = -DLANES=8 -mavx2 -mfma
KERNEL_FLAGS_portable = -DLANES=4
# $(call kernel_rule,DIR,ISA,FLAGS): DIR/NAME_ISA.o from common/NAME.c
define kernel_rule
$(1)/%_$(2).o: common/%.c $(HEADERS)
	@mkdir -p $$(@D)
	$$(CC) $(3) -ffp-contract=fast -DISA=$(2) $$(KERNEL_FLAGS_$(2)) -c -o $$@ $$<
endef
$(foreach isa,$(ISAS),$(eval $(call kernel_rule,$(BUILD)/common,$(isa),$$(CFLAGS) $$(AMIL_CFLAGS))))
# made anew, so that no member of a file since removed stays behind
$(BUILD)/libamil.a: $(LIB_OBJ)
	rm -f $@
	$(AR) rcs $@ $^
$(BUILD)/bin/%: tools/%.c $(BUILD)/libamil.a $(HEADERS) | $(BUILD)/bin
	$(CC) $(CFLAGS) $(AMIL_CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libamil.a $(LDLIBS)
$(BUILD)/tests/test_%: tests/unit/test_%.c $(BUILD)/libamil.a $(HEADERS) tests/unit/*.h | $(BUILD)/tests
	$(CC) $(CFLAGS) $(AMIL_CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libamil.a $(LDLIBS) -lcmocka
$(BUILD)/tests/%: tests/helpers/%.c $(BUILD)/libamil.a $(HEADERS) | $(BUILD)/tests
	$(CC) $(CFLAGS) $(AMIL_CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libamil.a $(LDLIBS)
# The fuzz targets: replayed (gcc, a sanitized copy of the library) and
# fuzzed (clang's libFuzzer); amil_die() is wrapped (tests/fuzz/fuzz.h).
$(BUILD)/replay/%.o: common/%.c $(HEADERS)
	@mkdir -p $(@D)
	$(CC) $(AMIL_CFLAGS) $(SAN_FLAGS) -c -o $@ $<
$(foreach isa,$(ISAS),$(eval $(call kernel_rule,$(BUILD)/replay,$(isa),$$(AMIL_CFLAGS) $$(SAN_FLAGS))))
$(BUILD)/replay/libamil.a: $(REPLAY_OBJ)
	rm -f $@
	$(AR) rcs $@ $^
$(BUILD)/tests/fuzz_%: tests/fuzz/%.c tests/fuzz/replay.c tests/fuzz/common.c tests/fuzz/fuzz.h \
                       tools/*.c $(BUILD)/replay/libamil.a | $(BUILD)/tests
	$(CC) $(AMIL_CFLAGS) $(SAN_FLAGS) -Itests/fuzz -Wl,--wrap=amil_die,--wrap=fopen,--wrap=fclose -o $@ tests/fuzz/$*.c \
	    tests/fuzz/replay.c tests/fuzz/common.c $(BUILD)/replay/libamil.a $(LDLIBS)
build-fuzz/common/%.o: common/%.c $(HEADERS)
	@mkdir -p $(@D)
	clang $(AMIL_CFLAGS) $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<
# the kernels are GCC's vector extensions (clang has no __builtin_shuffle)
# and no parser: compiled by $(CC), uninstrumented
$(foreach isa,$(ISAS),$(eval $(call kernel_rule,build-fuzz/common,$(isa),$$(CFLAGS) $$(AMIL_CFLAGS))))
build-fuzz/libamil.a: $(FUZZ_OBJ)
	rm -f $@
	$(AR) rcs $@ $^
build-fuzz/fuzz_%: tests/fuzz/%.c tests/fuzz/common.c tests/fuzz/fuzz.h tools/*.c build-fuzz/libamil.a
	clang $(AMIL_CFLAGS) $(FUZZ_FLAGS) -fsanitize=fuzzer -Itests/fuzz -Wl,--wrap=amil_die,--wrap=fopen,--wrap=fclose \
	    -o $@ tests/fuzz/$*.c tests/fuzz/common.c build-fuzz/libamil.a $(LDLIBS)
build-fuzz/common:
	mkdir -p $@
# bench/*.sh's programs: the peers of PyTorch's side (step, cnn) and the
# machine's own limits (peak, built without the library's flags).
BENCH_BINS = $(BUILD)/bench/step $(BUILD)/bench/cnn $(BUILD)/bench/peak
$(BUILD)/bench/peak: bench/peak.c | $(BUILD)/bench
	$(CC) -O2 -o $@ $<
$(BUILD)/bench/%: bench/%.c $(BUILD)/libamil.a $(HEADERS) | $(BUILD)/bench
	$(CC) $(CFLAGS) $(AMIL_CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libamil.a $(LDLIBS)
$(BUILD)/common $(BUILD)/bin $(BUILD)/tests $(BUILD)/bench $(BUILD)/replay:
	mkdir -p $@

# Installs only what is missing, so a second run is a no-op.
deps:
	@missing=$$(for p in $(DEPS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
	    | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "installing:" $$missing; \
	    sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	    $$sudo apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$missing; \
	fi

check: deps
	$(MAKE) all tests
	@BUILD=$(BUILD) tests/run

# the benchmarks' programs too, so that make check finds one the library
# has left behind
tests: $(BINS) $(UNIT_BINS) $(HELPER_BINS) $(REPLAY_BINS) $(BENCH_BINS)

bench: $(BINS) $(HELPER_BINS) $(BENCH_BINS)

demo: deps
	$(MAKE) all $(HELPER_BINS)
	@BUILD=$(BUILD) pipelines/demo.sh

install: $(BINS)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1 \
	    $(DESTDIR)$(PREFIX)/share/man/man5 $(DESTDIR)$(PREFIX)/share/man/man7
	install -m 755 $(BINS) $(DESTDIR)$(PREFIX)/bin
	for m in $(MANS); do \
	    s=$${m##*.}; install -m 644 $$m $(DESTDIR)$(PREFIX)/share/man/man$$s; done

# Each target FUZZ_SECONDS on its corpus (tests/fuzz/run.sh says how).
fuzz:
	@command -v clang >/dev/null || { echo "make fuzz needs clang (apt-get install clang)"; exit 1; }
	$(MAKE) $(FUZZ_TARGETS:%=build-fuzz/fuzz_%)
	tests/fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

clean:
	rm -rf build build-san build-fuzz

.PHONY: all deps check tests bench demo install clean fuzz
.SECONDARY:
