# Two commands do all set-up on a fresh Debian machine (root): `make run` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
BASE_IMAGE ?= local/debian:bookworm
SAMPLE_DIR ?= .cache/sample_data
SAMPLE_IMAGES ?= 48
CLUSTER ?= host_configs/local.yaml

.PHONY: setup venv venv-test sample run test lint bench bench-spine

setup: venv
	bash scripts/setup_system.sh
	bash scripts/ensure_dockerd.sh
	bash scripts/ensure_base_image.sh $(BASE_IMAGE)
	PYTHON=$(PY) bash scripts/fetch_cpu_sdk.sh .cache/sdk/cpu

# The control side only (no torch); `make test` adds the runner's and the test stack to the same venv.
venv:
	VENV=$(VENV) bash scripts/setup_venv.sh host

venv-test:
	VENV=$(VENV) bash scripts/setup_venv.sh test

# Generated ImageNet-layout sample set for the embedded default (idempotent).
sample: venv
	@[ -d $(SAMPLE_DIR)/val ] || $(PY) -m runner_in_container.data.generate $(SAMPLE_DIR) \
		--images $(SAMPLE_IMAGES) --layout imagefolder

run: setup sample
	$(PY) -m orchestrator run --cluster $(CLUSTER)

lint: venv-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/vermin --target=3.8- --no-tips --violations --eval-annotations runner_in_container
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy  # what it checks: [tool.mypy] in pyproject.toml

test: setup venv-test lint
	$(PY) -m pytest -q

bench:  # on an NVIDIA host (the team H200): issue 5's table, every data and compute path side by side
	python3 -m bench.h200_bench --dest results/bench_h200

bench-spine:  # on an NVIDIA host: the orchestrator end to end, runtime bare
	bash bench/h200_spine.sh
