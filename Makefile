# Two commands for a new user: `make reproduce` runs the study, `make test` the tests.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

TASK ?= superclass
SEEDS ?= 1
EPOCHS ?= 10
MODELS ?= model_1,model_2,model_3,model_4,model_5,model_6
SEED_LIST := $(shell seq -s, 0 $$(($(SEEDS) - 1)))
PORT ?= 5000
# auto: a job whose config already finished in the store is skipped, an unfinished one
# resumed; RESUME=null retrains everything
RESUME ?= auto

.PHONY: install data test reproduce compare ui bench lint clean-store

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

# The Debian package where apt-get exists; otherwise a torchvision download, or the
# folder named by FASHION_MNIST_DIR.
data: install
	@if ! $(PY) -m fashion.data --no-download >/dev/null 2>&1 && command -v apt-get >/dev/null; then \
		echo "installing the Debian package dataset-fashion-mnist"; \
		$(SUDO) apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
		{ $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq dataset-fashion-mnist; } || true; \
	fi
	$(PY) -m fashion.data

test: install data
	$(PY) -m pytest -q

reproduce: install data
	@start=$$(date +%s); \
	$(PY) -m fashion.train -m model=$(MODELS) seed=$(SEED_LIST) data.task=$(TASK) \
		trainer.max_epochs=$(EPOCHS) augment=none trainer.enable_progress_bar=false \
		resume=$(RESUME) && \
	$(PY) -m fashion.compare --experiment fashion-$(TASK) && \
	echo "study wall time: $$(( $$(date +%s) - start )) s" && \
	echo "browse the runs: make ui, then open http://127.0.0.1:$(PORT)"

compare: install
	$(PY) -m fashion.compare --experiment fashion-$(TASK)

ui: install
	$(VENV)/bin/mlflow ui --backend-store-uri "sqlite:///$(CURDIR)/mlruns/mlflow.db" \
		--host 127.0.0.1 --port $(PORT)

bench: install data
	$(PY) scripts/bench.py

lint: install
	$(VENV)/bin/ruff check fashion scripts tests
	$(VENV)/bin/ruff format --check fashion scripts tests
