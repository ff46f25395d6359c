# zosnode: `make demo` runs the main job, `make test` the whole suite.
PY      ?= python3
VENV    := .venv
VPY     := $(VENV)/bin/python
WHEELS  := build/wheels
PYZ     := dist/zosnode.pyz
STAMP   := $(VENV)/.installed

.PHONY: all test lint unit fuzz demo zipapp wheels bench initramfs vm clean system

# The Debian packages the build and the tests need: installs what is missing
# (as root), says what is missing otherwise; quick when all are present.
system:
	@bash vendor/install-system.sh

all: zipapp

wheels: $(WHEELS)/vendored.json
$(WHEELS)/vendored.json: vendor/runtime.lock vendor/source.lock vendor/build.lock vendor/wheelhouse.py \
		| system
	$(PY) vendor/wheelhouse.py --wheelhouse $(WHEELS)

# The runtime set comes from the hash-checked wheelhouse (pyfuse3 is built
# there); only the test tools come from the index.
$(STAMP): $(WHEELS)/vendored.json pyproject.toml
	$(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --disable-pip-version-check --no-index --find-links $(WHEELS) \
		$(WHEELS)/*.whl
	$(VPY) -m pip install -q --disable-pip-version-check -e '.[test]'
	touch $@

zipapp: $(WHEELS)/vendored.json
	$(PY) build_zipapp.py --wheelhouse $(WHEELS) -o $(PYZ)

lint: $(STAMP)
	$(VENV)/bin/ruff check zosnode tests bench build_zipapp.py vendor/wheelhouse.py
	$(VENV)/bin/mypy

test: system $(STAMP) zipapp lint
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(VENV)/bin/pytest -q $(PYTEST_ARGS)

# The quick loop: everything but the end-to-end tests.
unit: $(STAMP)
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(VENV)/bin/pytest -q -m "not slow" $(PYTEST_ARGS)

# The standing fuzz suite with a long budget per fuzz test (make test runs the
# same tests at 1.5 s each); crashers land in tests/fuzz/regressions/.
FUZZ_SECONDS ?= 60
fuzz: $(STAMP)
	ZOSNODE_FUZZ_SECONDS=$(FUZZ_SECONDS) PATH=$(CURDIR)/$(VENV)/bin:$$PATH \
		$(VENV)/bin/pytest -q -rA tests/fuzz $(PYTEST_ARGS)

# A hub and a node booting from it in network namespaces (needs root).
demo: system $(STAMP) zipapp
	$(VPY) -m zosnode audit $(PYZ) | head -4
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(VPY) examples/demo.py

# The node's boot files: an artifact whose shebang is the initramfs's own
# interpreter (optionally with a trust anchor: make initramfs ANCHOR=FILE),
# packed with the pinned Debian runtime and kernel modules into dist/boot.
initramfs: $(STAMP)
	$(VPY) build_zipapp.py --wheelhouse $(WHEELS) --python /usr/bin/python3.11 \
		-o build/zosnode-node.pyz $(if $(ANCHOR),--anchor $(ANCHOR))
	$(VPY) -m zosnode initramfs build --zipapp build/zosnode-node.pyz -o dist/boot

# Netboot the demo node in QEMU on this terminal (root; Ctrl-A X quits).
vm: $(STAMP)
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(VPY) initramfs/vm.py

bench: $(STAMP) zipapp
	$(VPY) bench/run_all.py

clean:
	rm -rf $(VENV) build dist .mypy_cache .ruff_cache .pytest_cache
