# The rule every directory of clang-built test objects below tests/verifier/ shares. A
# directory's Makefile says what its objects depend on (HEADERS) and includes this file.
# The compiled .o files are committed: the tests need neither clang nor root; `make` in a
# directory rebuilds them (clang 14+).
CLANG ?= clang
ARCH_INCLUDE ?= /usr/include/$(shell uname -m)-linux-gnu
CFLAGS := -target bpf -O2 -g -D__TARGET_ARCH_x86 -I$(ARCH_INCLUDE) -I. -I../objects -Wall \
          -Wno-unused-variable -Wno-unused-function

SRCS := $(wildcard *.c)
OBJS := $(SRCS:.c=.o)

all: $(OBJS)

%.o: %.c $(HEADERS)
	$(CLANG) $(CFLAGS) -c $< -o $@

clean:
	rm -f $(OBJS)

.PHONY: all clean
