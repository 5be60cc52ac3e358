# The two commands a user needs: `make demo` and `make test` (`make test-fast` skips the slow
# end-to-end runs). All set up .venv on first use.
PY := .venv/bin/python
SETUP_STAMP := .venv/.recsys-setup-v1

.PHONY: setup test test-fast demo clean

$(SETUP_STAMP): pyproject.toml scripts/setup.sh $(wildcard kernels/setup.py kernels/pyproject.toml kernels/recsys_kernels/*.py kernels/recsys_kernels/csrc/*.cpp kernels/recsys_kernels/csrc/*.h)
	bash scripts/setup.sh

setup: $(SETUP_STAMP)

test: $(SETUP_STAMP)
	$(PY) -m pytest -q -n 2 --timeout 600

# the quick local loop: everything but the end-to-end runs marked slow
test-fast: $(SETUP_STAMP)
	$(PY) -m pytest -q -n 2 --timeout 600 -m "not slow"

demo: $(SETUP_STAMP)
	bash scripts/demo.sh

clean:
	rm -rf outputs multirun demo_runs .pytest_cache
