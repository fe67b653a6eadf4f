# bayesrobust — set-up, demo, tests and benchmarks. Everything runs in a local virtual environment.
# TORCH_SPEC pins the CPU build of PyTorch installed *before* the package, so pip never pulls a
# multi-GB CUDA build; override it on other platforms: make test TORCH_SPEC="torch==2.5.1".
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
TEST_WORKERS ?= auto
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA ?= $(if $(wildcard ../shared/data),../shared/data,)

.PHONY: install demo test test-avx2 lint bench bench-peers browser clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)  ## train + evaluate on the embedded offline data, write runs/quickstart/<time>/report.html
	$(BIN)/bayesrobust run experiments/quickstart.toml

# A worker that dies (a crash, or a test past pyproject's faulthandler_timeout) fails its test by name and ends
# the run: --max-worker-restart 0, because pytest-xdist 3.8's loadgroup scheduler can wait forever on the work
# of a replaced worker (pytest-xdist issues 1323, 1327).
PYTEST_RUN := $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup --max-worker-restart 0 --durations 20

# The model and attack contract tests, and the training loop that once hung oneDNN (tests/test_cpu_paths.py)
CONTRACT_TESTS := tests/models/test_models.py tests/models/test_any_model.py tests/models/test_dropout.py tests/models/test_gpdnn.py \
	tests/models/test_spectral.py tests/models/test_vae.py tests/attacks/test_attacks.py tests/attacks/test_criterion.py tests/attacks/test_apgd.py \
	tests/attacks/test_square_pgd.py tests/attacks/test_autoattack.py tests/test_cpu_paths.py
# What an AVX2-only CPU (many AMD machines) runs: oneDNN's kernels and ATen's vectorised kernels capped at AVX2
AVX2_ONLY := ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2

test: $(STAMP)  ## the whole test suite on every core (uses ../shared/data when present; TEST_WORKERS=0 runs it in one process)
	BAYESROBUST_DATA=$${BAYESROBUST_DATA:-$(DATA)} $(PYTEST_RUN)

test-avx2: $(STAMP)  ## the model and attack contract tests on the AVX2 CPU path, as an AVX2-only CPU runs them
	$(AVX2_ONLY) BAYESROBUST_DATA=$${BAYESROBUST_DATA:-$(DATA)} $(PYTEST_RUN) $(CONTRACT_TESTS)

browser:  ## Debian's chromium for the report's browser test (best effort: needs apt and root; the test skips without it)
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	    (apt-get install -y -q chromium >/dev/null 2>&1 || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1)) ; } || \
	  echo "chromium not installed: tests/report/test_report_browser.py will skip"

lint: $(STAMP)
	$(BIN)/ruff check bayesrobust tests benchmarks docs/examples

bench: $(STAMP)  ## MC-dropout throughput (ours vs the naive loop)
	$(BIN)/python benchmarks/mc_dropout.py

bench-peers: $(STAMP)  ## attacks beside torchattacks and ART, MC dropout beside torch-uncertainty (installs them; torchattacks and torch-uncertainty without their heavy deps)
	$(BIN)/python -m pip install --quiet -e ".[peers]"
	$(BIN)/python -m pip install --quiet --no-deps torchattacks torch-uncertainty einops
	BAYESROBUST_DATA=$${BAYESROBUST_DATA:-$(DATA)} $(BIN)/python benchmarks/attacks.py $(if $(DATA),--data-dir $(DATA),)
	$(BIN)/python benchmarks/mc_dropout.py

clean:
	rm -rf $(VENV) .pytest_cache
