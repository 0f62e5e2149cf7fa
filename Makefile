# routerd: two commands on a fresh Debian machine as root.
#   make demo   set up, then run the healthcheck lab and show it through routerctl
#   make test   set up, then lint, type-check and run every test (real servers included)
#   make dist   wheels + sdists of every distribution, their dependencies and
#               dist/constraints.txt: installs offline (docs/packaging.md)
.PHONY: setup demo test bench lint clean dist packaging install-unit

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

dist: setup
	@.venv/bin/python scripts/dist.py --out dist

# Rewrite packaging/ (unit template, routerctl completions) from the code.
packaging: setup
	@PATH="$(CURDIR)/.venv/bin:$$PATH" .venv/bin/python scripts/pkgfiles.py generate

# The systemd unit for this checkout's venv (BINDIR=... for another installation).
install-unit:
	@.venv/bin/python scripts/pkgfiles.py install-unit $(if $(BINDIR),--bindir $(BINDIR))

clean:
	rm -rf .venv .tools bench/results dist
