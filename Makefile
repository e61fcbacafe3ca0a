# airlock -- build, test, run.  `make run`, `make test`; see README.md.
#
#   make                      build build/airlock
#   make test                 install missing packages, build, run every test
#   make SANITIZE=address,undefined test
#                             the same with sanitizers (objects in build-san/)
#   make run                  serve the embedded default (SPEC §6)
#   make model                download a small instruct model into ./models/
#   make fuzz                 libFuzzer targets (clang) into build-fuzz/
#   make bench                run every bench/*.sh

CC       ?= cc
SANITIZE ?=
ifeq ($(SANITIZE),)
BUILD    ?= build
OPT      ?= -O2
else
BUILD    ?= build-san
OPT      ?= -O1
endif

PKGS     := libevent libevent_openssl libevent_pthreads openssl libcjson libsodium yaml-0.1 libhs
WARN     := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wformat=2 -Wvla \
            -Wno-format-nonliteral
CFLAGS   ?=
CFLAGS   += -std=c11 -D_GNU_SOURCE -g $(OPT) $(WARN) -I. -pthread \
            $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS   += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lhttp_parser -pthread -lm
ifneq ($(SANITIZE),)
CFLAGS   += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS  += -fsanitize=$(SANITIZE)
endif

MODULES  := common config policy audit engine proxy
LIB_SRC  := $(foreach m,$(MODULES),$(wildcard $(m)/*.c))
CLI_SRC  := main.c $(wildcard cli/*.c)
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
LIB      := $(BUILD)/libairlock.a
BIN      := $(BUILD)/airlock

TEST_SRC := $(foreach m,$(MODULES),$(wildcard tests/$(m)/test_*.c))
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
MOCK_SRC := $(wildcard tests/mock/*.c)
MOCK_BIN := $(BUILD)/mock_provider
FUZZ_SRC := $(wildcard fuzz/fuzz_*.c)

.PHONY: all deps test-deps test run model fuzz bench clean format
# deps first, then a second make: the flags above come from pkg-config, which knows the
# libraries only once deps has installed them (and -j must not compile while it does)
all: deps
	@$(MAKE) --no-print-directory $(BIN)

deps:
	@sh scripts/deps.sh build
test-deps:
	@sh scripts/deps.sh test

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	@$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

$(LIB): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BIN): $(CLI_OBJ) $(LIB)
	$(CC) $(LDFLAGS) -o $@ $(CLI_OBJ) $(LIB) $(LDLIBS)

$(BUILD)/tests/%: tests/%.c $(LIB) tests/harness.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -Itests $(LDFLAGS) -o $@ $< $(LIB) $(LDLIBS)

$(MOCK_BIN): $(MOCK_SRC) $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(MOCK_SRC) $(LIB) $(LDLIBS)

test: test-deps
	@$(MAKE) --no-print-directory $(BIN) $(MOCK_BIN) $(TEST_BIN)
	@sh tests/run.sh $(BUILD)

run: deps
	@$(MAKE) --no-print-directory $(BIN)
	@sh scripts/run.sh $(BIN)

model:
	@sh scripts/model.sh

fuzz: $(LIB_SRC)
	@sh scripts/fuzz.sh

bench: $(BIN) $(MOCK_BIN)
	@for b in bench/*.sh; do echo "== $$b"; sh $$b || exit 1; done

format:
	clang-format -i $(LIB_SRC) $(CLI_SRC) $(TEST_SRC) $(MOCK_SRC)

clean:
	rm -rf build build-san build-fuzz

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(TEST_BIN:=.d)
