# jmvaec: a compiler from multimodal VAE specs to straight-line C.
# `make help` lists the targets. Build products go to build/.

PREFIX   ?= /usr/local
DESTDIR  ?=
BUILD    ?= build
CC       ?= cc
SANITIZE ?=
WERROR   ?=

WARN     := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wvla \
            -Wpointer-arith -Wcast-qual -Wwrite-strings -Wformat=2 -Wundef
CSTD     := -std=c11 -D_POSIX_C_SOURCE=200809L -fno-math-errno -fno-trapping-math -ffp-contract=off
OPT      ?= -O2 -g
CFLAGS_ALL = $(CSTD) $(OPT) $(WARN) $(if $(WERROR),-Werror) \
             $(if $(SANITIZE),-fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all) \
             $(CFLAGS)
LDFLAGS_ALL = $(if $(SANITIZE),-fsanitize=$(SANITIZE)) $(LDFLAGS)
BLAS_LIBS := -lopenblas -ldeflate -lz -lm -lpthread

# -------------------------------------------------------------- sources --
GRAMMAR_Y   := grammar/parser.y
GRAMMAR_L   := grammar/lexer.l
COMPILER_C  := $(filter-out compiler/main.c,$(wildcard compiler/*.c))
RUNTIME_C   := $(wildcard runtime/*.c)
RUNTIME_H   := $(wildcard runtime/*.h)
# the headers generated code and users include; the others are the runtime's own
PUBLIC_H    := runtime/jv_model.h runtime/jv_runtime.h runtime/jv_trainer.h runtime/jv_gradcheck.h
TEST_C      := $(wildcard tests/test_*.c)
SPECS       := $(wildcard specs/*.spec)

GEN_PARSER  := $(BUILD)/gen/parser.c $(BUILD)/gen/parser.h
GEN_LEXER   := $(BUILD)/gen/lexer.c $(BUILD)/gen/lexer.h
COMPILER_O  := $(COMPILER_C:%.c=$(BUILD)/%.o) $(BUILD)/gen/parser.o $(BUILD)/gen/lexer.o $(BUILD)/gen/torch_runtime.o
RUNTIME_O   := $(RUNTIME_C:%.c=$(BUILD)/%.o)
TEST_BIN    := $(TEST_C:tests/%.c=$(BUILD)/tests/%)

COMPILER_LIB := $(BUILD)/libjmvaecc.a
RUNTIME_LIB  := $(BUILD)/libjmvaec.a
# The runtime's MPI part (runtime/mpi/), built when Open MPI's mpicc is there:
# trainers built with MPI=1 link it before libjmvaec.a.
MPICC        ?= mpicc
HAVE_MPI     := $(shell command -v $(MPICC) >/dev/null 2>&1 && echo 1)
RUNTIME_MPI_LIB := $(if $(HAVE_MPI),$(BUILD)/libjmvaec_mpi.a)


.PHONY: all help deps test generated-trainers check-specs demo bench bench-epoch bench-torch bench-mpi fuzz install uninstall clean update-golden
.DEFAULT_GOAL := all

all: jmvaec $(RUNTIME_LIB) $(RUNTIME_MPI_LIB) ## build the compiler (./jmvaec) and the runtime library

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 16

deps: ## install the Debian packages that are missing (as root), or print the command
	@sh .ci/install-deps

# ------------------------------------------------------------- compiler --
$(BUILD)/gen/parser.c $(BUILD)/gen/parser.h: $(GRAMMAR_Y)
	@mkdir -p $(@D)
	bison -Wall -Werror --defines=$(BUILD)/gen/parser.h -o $(BUILD)/gen/parser.c $<

$(BUILD)/gen/lexer.c $(BUILD)/gen/lexer.h: $(GRAMMAR_L) $(BUILD)/gen/parser.h
	@mkdir -p $(@D)
	flex --header-file=$(BUILD)/gen/lexer.h -o $(BUILD)/gen/lexer.c $<

# The PyTorch back end's runtime (runtime/jv_torch.py), which emit_torch.c
# copies into every module it writes, as one C string.
$(BUILD)/gen/torch_runtime.c: runtime/jv_torch.py
	@mkdir -p $(@D)
	{ echo '/* generated from runtime/jv_torch.py by the Makefile */'; echo 'const char jv_torch_runtime[] ='; \
	  sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/?/\\?/g' -e 's/^/    "/' -e 's/$$/\\n"/' $<; echo '    ;'; } > $@.tmp
	mv $@.tmp $@

# Generated scanner/parser: our warnings apply, less those flex's skeleton trips.
$(BUILD)/gen/%.o: $(BUILD)/gen/%.c $(BUILD)/gen/parser.h $(BUILD)/gen/lexer.h $(wildcard compiler/*.h)
	$(CC) $(CFLAGS_ALL) -Wno-unused-function -Wno-missing-prototypes -Wno-sign-compare -Icompiler -I$(BUILD)/gen -c $< -o $@

# The compiler answers --cflags/--libs from the tree it was built in.
$(BUILD)/compiler/driver.o: CFLAGS_ALL += -DJMVAEC_SOURCE_DIR='"$(CURDIR)"' -DJMVAEC_BUILD_DIR='"$(abspath $(BUILD))"'

$(BUILD)/compiler/%.o: compiler/%.c $(wildcard compiler/*.h) $(BUILD)/gen/parser.h $(BUILD)/gen/lexer.h
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) -Icompiler -I$(BUILD)/gen -c $< -o $@

$(COMPILER_LIB): $(COMPILER_O)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/jmvaec: $(BUILD)/compiler/main.o $(COMPILER_LIB)
	$(CC) $(LDFLAGS_ALL) $^ -o $@

jmvaec: $(BUILD)/jmvaec
	ln -sf $(BUILD)/jmvaec jmvaec

# -------------------------------------------------------------- runtime --
$(BUILD)/runtime/%.o: runtime/%.c $(RUNTIME_H)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) -Iruntime -c $< -o $@

# The optimiser's loops stream every parameter: built to vectorise (jv_adam.c).
$(BUILD)/runtime/jv_adam.o: CFLAGS_ALL += -O3

$(RUNTIME_LIB): $(RUNTIME_O)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/runtime/mpi/%.o: runtime/mpi/%.c $(RUNTIME_H)
	@mkdir -p $(@D)
	$(MPICC) $(CFLAGS_ALL) -Iruntime -c $< -o $@

$(BUILD)/libjmvaec_mpi.a: $(BUILD)/runtime/mpi/jv_comm_mpi.o
	rm -f $@ && ar rcs $@ $^

# ---------------------------------------------------------------- tests --
# (some suites include a committed generated model)
$(BUILD)/tests/%: tests/%.c $(COMPILER_LIB) $(RUNTIME_LIB) $(wildcard tests/*.h) $(wildcard generated/*/*.[ch])
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) -Icompiler -I$(BUILD)/gen -Iruntime -Itests $< $(COMPILER_LIB) $(RUNTIME_LIB) \
	    $(LDFLAGS_ALL) -lcriterion $(BLAS_LIBS) -o $@

GENERATED_MODELS := $(notdir $(wildcard generated/*))

# The committed trainers of generated/ build against this tree's runtime. Their
# Makefiles relink when the library changes but cannot see the flags, so a
# trainer older than the library (after make clean, e.g. before a SANITIZE=
# build) is built again from scratch.
generated-trainers: all
	@for m in $(GENERATED_MODELS); do \
	    if [ $(RUNTIME_LIB) -nt generated/$$m/$$m ]; then $(MAKE) -s -C generated/$$m clean; fi; \
	    $(MAKE) -s -C generated/$$m CFLAGS='-O2 -Wall -Wextra $(if $(WERROR),-Werror) $(if $(SANITIZE),-DJV_NO_CLONES -fsanitize=$(SANITIZE))' \
	        LDFLAGS='$(if $(SANITIZE),-fsanitize=$(SANITIZE))' || exit 1; done

$(BUILD)/tests/blas_kernel: tests/blas_kernel.c $(RUNTIME_LIB)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) -Iruntime $< $(RUNTIME_LIB) $(LDFLAGS_ALL) $(BLAS_LIBS) -o $@

# Every suite runs on the OpenBLAS kernel the trainers choose for this CPU
# (OPENBLAS_CORETYPE, if set, wins); then the numerical tests (values,
# gradient checks, determinism across threads and resumes) run again on the
# generic kernel, which OpenBLAS falls back to on CPUs it does not know
# (in the plain build only: under the sanitizers the arithmetic is the same
# and the point is memory). Criterion's own leaks are not ours (tests/lsan.supp names them).
LSAN_ENV := $(if $(SANITIZE),LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp:print_suppressions=0)
NUMERIC_TESTS := test_values: test_step: test_codegen:gradcheck/* test_gradcheck: \
                 test_e2e:e2e/runs_are_deterministic* test_e2e:e2e/resuming* test_e2e:e2e/eval_gives* \
                 test_mpi:mpi/checkpoints_are*
test: deps all generated-trainers $(TEST_BIN) $(BUILD)/tests/blas_kernel ## install what is missing, build, run every test
	@set -e; kernel=$${OPENBLAS_CORETYPE:-$$($(BUILD)/tests/blas_kernel)}; \
	for t in $(TEST_BIN); do echo "== $$t (BLAS kernel $$kernel)"; s=$$(date +%s); \
	    OPENBLAS_CORETYPE=$$kernel JMVAEC_ROOT=$(CURDIR) SANITIZE='$(SANITIZE)' $(LSAN_ENV) $$t --jobs 2 || exit 1; \
	    echo "   $$(( $$(date +%s) - s )) s"; done; \
	for n in $(if $(SANITIZE),,$(NUMERIC_TESTS)); do t=$${n%%:*}; f=$${n#*:}; echo "== $(BUILD)/tests/$$t $$f (generic BLAS kernel Prescott)"; \
	    s=$$(date +%s); OPENBLAS_CORETYPE=Prescott JMVAEC_ROOT=$(CURDIR) SANITIZE='$(SANITIZE)' $(LSAN_ENV) $(BUILD)/tests/$$t --jobs 2 \
	        $${f:+--filter "$$f"} || exit 1; echo "   $$(( $$(date +%s) - s )) s"; done
	@echo "all test suites passed"

# Installs what is missing first (bison and the data may not be there yet),
# then builds; examples/demo.sh says which variables change the run.
demo: ## install what is missing, build, train JMVAE-kl on Fashion-MNIST, evaluate, draw (3 min once built)
	@sh .ci/install-deps
	@$(MAKE) --no-print-directory all
	@BUILD='$(BUILD)' JMVAEC='$(CURDIR)/jmvaec' sh examples/demo.sh

check-specs: jmvaec ## check every spec in specs/ and examples/
	@for s in $(SPECS) $(wildcard examples/*.spec examples/*/*.spec); do ./jmvaec --check $$s || exit 1; done

update-golden: jmvaec ## rewrite the golden files (generated/, tests/bad/*.expected) on purpose; review the diff
	@sh tests/update-golden.sh

# ------------------------------------------------------------ benchmark --
# make bench: each spec of BENCH_SPECS is emitted afresh into build/bench/<model>/
# (the file name must be the model's name), compiled with BENCH_OPT and
# -DJV_GEMM_HOOK, and linked with the driver tests/bench.c, which times one
# training step, and the optimiser step after it, against the same step's
# GEMM calls alone, on 1 and 2 threads. BENCH_ARGS go to the driver
# (--threads 1,2,4, --reps N, --budget SECONDS, --batch N, --top N, ...).
BENCH_SPECS  ?= specs/jmvae.spec specs/jmvae_kl.spec specs/jmvae_h.spec examples/mvae.spec examples/mmvae.spec \
                examples/mopoe.spec examples/fashion-mnist/conv/conv_jmvae_kl.spec examples/fashion-mnist/conv/conv_mvae.spec
BENCH_OPT    ?= -O2
# as the generated Makefile does: GCC's dynamic vectoriser cost model, if $(CC) has it
JV_VECT      := $(shell $(CC) -Werror -fvect-cost-model=dynamic -x c -c /dev/null -o /dev/null 2>/dev/null \
                  && echo -fvect-cost-model=dynamic)
BENCH_ARGS   ?=
BENCH_DIR    := $(BUILD)/bench
BENCH_MODELS := $(basename $(notdir $(BENCH_SPECS)))
BENCH_MODEL_O := $(BENCH_MODELS:%=$(BENCH_DIR)/%.o)

define bench_model_rules
$(BENCH_DIR)/$(1)/$(1).c: $(2) $(BUILD)/jmvaec
	@mkdir -p $$(@D)
	$(BUILD)/jmvaec $(2) -o $$(@D)
$(BENCH_DIR)/$(1).o: $(BENCH_DIR)/$(1)/$(1).c $(RUNTIME_H)
	$$(CC) -std=c11 -fno-math-errno -fno-trapping-math -ffp-contract=off $$(JV_VECT) $$(BENCH_OPT) -g -Wall -Wextra $$(if $$(WERROR),-Werror) -DJV_GEMM_HOOK \
	    -Iruntime -I$(BENCH_DIR)/$(1) -c $$< -o $$@
endef
$(foreach s,$(BENCH_SPECS),$(eval $(call bench_model_rules,$(basename $(notdir $(s))),$(s))))

# The list of models the driver links, rewritten only when it changes.
$(BENCH_DIR)/bench_models.h: FORCE
	@mkdir -p $(@D)
	@echo '$(foreach m,$(BENCH_MODELS),X($(m)))' > $@.tmp
	@cmp -s $@.tmp $@ && rm -f $@.tmp || mv $@.tmp $@

$(BENCH_DIR)/bench.o: tests/bench.c $(BENCH_DIR)/bench_models.h $(RUNTIME_H)
	$(CC) $(CFLAGS_ALL) -DJV_GEMM_HOOK -Iruntime -I$(BENCH_DIR) -c $< -o $@

$(BENCH_DIR)/bench: $(BENCH_DIR)/bench.o $(BENCH_MODEL_O) $(RUNTIME_LIB)
	$(CC) $(LDFLAGS_ALL) $^ $(BLAS_LIBS) -o $@

bench: deps all $(BENCH_DIR)/bench ## time a training step of each reference spec against its GEMMs alone, on 1 and 2 threads
	$(BENCH_DIR)/bench --flags '$(strip $(JV_VECT) $(BENCH_OPT))' --out $(BENCH_DIR)/results.txt $(BENCH_ARGS)

# make bench-epoch: a real epoch of each reference trainer (generated/) on
# Fashion-MNIST, on 1 and 2 threads; make bench-torch: the same beside the
# PyTorch models of tests/bench_torch.py, in the same run, with the ratio.
# make bench-epoch then times MVAE and the semi-supervised JMVAE-kl with 0%,
# 50% and 90% of the labels hidden (--missing, --missing-models).
# BENCH_EPOCH_ARGS go to tests/bench_epoch.py (--reps R, --threads 1,2,
# --models jmvae,..., --limit N, --missing 0,0.5,0.9).
PYTHON ?= $(firstword $(wildcard /usr/bin/python3) python3)
BENCH_EPOCH_ARGS ?=

bench-epoch: deps all generated-trainers ## a real epoch of each reference trainer on Fashion-MNIST, 1 and 2 threads
	@mkdir -p $(BENCH_DIR)
	$(PYTHON) tests/bench_epoch.py --out $(BENCH_DIR)/epoch.txt $(BENCH_EPOCH_ARGS)

bench-torch: deps all generated-trainers $(BUILD)/tests/blas_kernel ## the same epochs beside PyTorch's (Debian's python3-torch), ratios from one run
	@/usr/bin/python3 -c 'import torch' 2>/dev/null || { echo "bench-torch: needs PyTorch from Debian: apt-get install python3-torch" >&2; exit 1; }
	@mkdir -p $(BENCH_DIR)
	/usr/bin/python3 tests/bench_epoch.py --torch --kernel $$($(BUILD)/tests/blas_kernel) --out $(BENCH_DIR)/torch.txt $(BENCH_EPOCH_ARGS)

# make bench-mpi: the reference trainers on 2 MPI processes against one
# (tests/bench_mpi.py: epochs, the block's exchange, the scaling model).
# BENCH_MPI_ARGS go to it (--reps R, --models jmvae,..., --limit N).
bench-mpi: deps all generated-trainers $(BUILD)/tests/blas_kernel $(BENCH_DIR)/bench_exchange ## the trainers on 2 MPI processes against one, the exchange's time, the scaling model
	@command -v mpirun >/dev/null || { echo "bench-mpi: needs Open MPI: apt-get install libopenmpi-dev openmpi-bin" >&2; exit 1; }
	$(PYTHON) tests/bench_mpi.py --out $(BENCH_DIR)/mpi.txt $(BENCH_MPI_ARGS)

$(BENCH_DIR)/bench_exchange: tests/bench_exchange.c $(RUNTIME_LIB) $(RUNTIME_MPI_LIB)
	@mkdir -p $(@D)
	$(if $(HAVE_MPI),,@echo "bench_exchange: needs Open MPI's mpicc" >&2; exit 1)
	$(MPICC) $(CFLAGS_ALL) -Iruntime $< -Wl,--whole-archive $(RUNTIME_MPI_LIB) -Wl,--no-whole-archive \
	    $(RUNTIME_LIB) $(LDFLAGS_ALL) $(BLAS_LIBS) -o $@

FORCE:

# ---------------------------------------------------------------- fuzz --
# make fuzz: the libFuzzer harnesses of tests/fuzz/, built with clang under
# ASan and UBSan into build/fuzz/, each run for FUZZ_SECONDS on a working
# corpus (build/fuzz/corpus/NAME) seeded from the committed one
# (tests/fuzz/corpus/NAME) and, for specs, from specs/, examples/ and
# tests/bad/. A crash, leak, timeout or huge allocation stops make, with the
# input in build/fuzz/artifacts/. FUZZ_TARGETS picks harnesses.
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= spec specgen data checkpoint
FUZZ_DIR     := $(BUILD)/fuzz
FUZZ_CFLAGS  := -std=c11 -D_POSIX_C_SOURCE=200809L -g -O1 -fno-omit-frame-pointer \
                -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all
FUZZ_COMPILER_O := $(patsubst %.c,$(FUZZ_DIR)/obj/%.o,$(COMPILER_C)) $(FUZZ_DIR)/obj/gen/parser.o $(FUZZ_DIR)/obj/gen/lexer.o \
                   $(FUZZ_DIR)/obj/gen/torch_runtime.o
FUZZ_RUNTIME_O  := $(patsubst %.c,$(FUZZ_DIR)/obj/%.o,$(RUNTIME_C))

$(FUZZ_DIR)/obj/compiler/%.o: compiler/%.c $(wildcard compiler/*.h) $(GEN_PARSER) $(GEN_LEXER)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -Icompiler -I$(BUILD)/gen -DJMVAEC_SOURCE_DIR='"$(CURDIR)"' -DJMVAEC_BUILD_DIR='"$(abspath $(BUILD))"' -c $< -o $@
$(FUZZ_DIR)/obj/gen/%.o: $(BUILD)/gen/%.c $(GEN_PARSER) $(GEN_LEXER) $(BUILD)/gen/torch_runtime.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -Icompiler -I$(BUILD)/gen -c $< -o $@
$(FUZZ_DIR)/obj/runtime/%.o: runtime/%.c $(RUNTIME_H)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -Iruntime -c $< -o $@
$(FUZZ_DIR)/obj/runtime/jv_checkpoint_nocrc.o: runtime/jv_checkpoint.c $(RUNTIME_H)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -DJV_FUZZ_SKIP_CRC -Iruntime -c $< -o $@

$(FUZZ_DIR)/fuzz_spec $(FUZZ_DIR)/fuzz_specgen: $(FUZZ_DIR)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/specgen.h $(FUZZ_COMPILER_O)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -Icompiler -I$(BUILD)/gen -Itests/fuzz $< $(FUZZ_COMPILER_O) -o $@
$(FUZZ_DIR)/fuzz_data: tests/fuzz/fuzz_data.c tests/fuzz/fuzz_util.h $(FUZZ_RUNTIME_O)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -Iruntime -Itests/fuzz $< $(FUZZ_RUNTIME_O) $(BLAS_LIBS) -o $@
$(FUZZ_DIR)/fuzz_checkpoint: tests/fuzz/fuzz_checkpoint.c tests/fuzz/fuzz_util.h $(filter-out %/jv_checkpoint.o,$(FUZZ_RUNTIME_O)) $(FUZZ_DIR)/obj/runtime/jv_checkpoint_nocrc.o
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -Iruntime -Itests/fuzz $(filter-out %.h,$^) $(BLAS_LIBS) -o $@

fuzz: ## run every libFuzzer harness for FUZZ_SECONDS each (installs clang first)
	@sh .ci/install-deps fuzz
	@$(MAKE) --no-print-directory $(FUZZ_TARGETS:%=$(FUZZ_DIR)/fuzz_%)
	@sh tests/fuzz/run.sh $(FUZZ_DIR) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

# ------------------------------------------------------------- install --
install: all ## install jmvaec, the runtime and its headers under $(DESTDIR)$(PREFIX)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include/jmvaec
	install -m 755 $(BUILD)/jmvaec $(DESTDIR)$(PREFIX)/bin/jmvaec
	install -m 644 $(RUNTIME_LIB) $(DESTDIR)$(PREFIX)/lib/libjmvaec.a
	$(if $(RUNTIME_MPI_LIB),install -m 644 $(RUNTIME_MPI_LIB) $(DESTDIR)$(PREFIX)/lib/libjmvaec_mpi.a)
	install -m 644 $(PUBLIC_H) $(DESTDIR)$(PREFIX)/include/jmvaec/
	sed -e 's|@PREFIX@|$(PREFIX)|' runtime/jmvaec.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/jmvaec.pc

uninstall: ## remove what install put in place
	rm -f $(DESTDIR)$(PREFIX)/bin/jmvaec $(DESTDIR)$(PREFIX)/lib/libjmvaec.a $(DESTDIR)$(PREFIX)/lib/libjmvaec_mpi.a \
	      $(DESTDIR)$(PREFIX)/lib/pkgconfig/jmvaec.pc
	rm -rf $(DESTDIR)$(PREFIX)/include/jmvaec

clean: ## remove build products
	rm -rf $(BUILD) jmvaec
