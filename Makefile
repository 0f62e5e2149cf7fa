# routerd: two commands on a fresh Debian machine as root.
#   make demo   set up, then run the healthcheck lab and show it through routerctl
#   make test   set up, then lint, type-check and run every test (real servers included)
.PHONY: setup demo test bench lint clean

setup:
	@scripts/setup.sh

demo: setup
	@.venv/bin/python scripts/demo.py

test: setup
	@scripts/test.sh

bench:
	@scripts/setup.sh --bench
	@.venv/bin/python bench/run_all.py

lint: setup
	@.venv/bin/ruff check .
	@.venv/bin/ruff format --check .
	@.venv/bin/mypy

clean:
	rm -rf .venv .tools bench/results
