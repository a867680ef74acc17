# pybpf: the two entry points of the README.
#   make demo  — create .venv, install pybpf, run the main job on the shipped examples
#   make test  — create .venv, install pybpf with test extras, run lint, types and the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: venv demo test lint typecheck pytest bench examples clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

venv: $(BIN)/activate
	$(BIN)/pip install -q -e '.[test,jit]'

demo: venv
	$(BIN)/pybpf demo

lint: venv
	$(BIN)/ruff check src tests tools bench
	$(BIN)/mypy

# every test that runs programs runs on both tiers: the whole suite on the JIT (the default
# bpf_jit_enable=1), then the program-running directories again on the interpreter
INTERP_TIER_DIRS = tests/progs tests/helpers tests/net tests/hooks tests/maps tests/syscall \
                   tests/core tests/cli tests/verifier/test_ctx_convert_skb.py \
                   tests/verifier/test_ctx_convert_xdp.py tests/test_program_scapy.py \
                   tests/verifier/test_exceptions_vs_kernel.py \
                   tests/verifier/test_may_goto_xlated_vs_kernel.py \
                   tests/verifier/test_arena_vs_kernel.py

pytest: venv
	$(BIN)/pytest -q $(PYTEST_ARGS)
	PYBPF_JIT_ENABLE=0 $(BIN)/pytest -q $(INTERP_TIER_DIRS)

test: lint pytest

bench: venv
	$(BIN)/python bench/run.py

examples:
	$(MAKE) -C examples

clean:
	rm -rf $(VENV) build dist *.egg-info
