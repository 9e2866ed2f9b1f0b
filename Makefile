# One command sets up and runs the demo; one sets up and runs the whole test suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
RUNTIME_STAMP := $(VENV)/.installed-runtime

.PHONY: demo test system-deps lint typecheck dockerlint pytest lambda-zip cfn-lint security bench clean

# The demo needs only the package itself; the tests need the dev tools as well.
$(RUNTIME_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $(RUNTIME_STAMP)

$(STAMP): $(RUNTIME_STAMP)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

## demo: set up and run the local end-to-end demo on SQLite
demo: $(RUNTIME_STAMP)
	$(BIN)/batch-trigger demo

## test: set up, lint, type-check and run every test
test: system-deps lint typecheck dockerlint security pytest

system-deps:
	bash .ci/system-deps

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

dockerlint: $(STAMP)
	$(BIN)/hadolint Dockerfile

pytest: $(STAMP)
	$(BIN)/pytest

## security: bandit on the product code; a dependency audit wherever an advisory database answers
# pip-audit needs PyPI's JSON API or OSV; where neither answers (a registry mirror only), every
# package is "not found" and nothing is audited: that is said loudly, and does not fail the build.
security: $(STAMP)
	$(BIN)/bandit -q -r service lambda_trigger -c pyproject.toml
	@echo "bandit: no issues in service/ and lambda_trigger/ (skipped checks, with reasons: pyproject.toml)"
	@out=$$($(BIN)/pip-audit --skip-editable --progress-spinner off 2>&1); code=$$?; \
	if echo "$$out" | grep -qE "Found [0-9]+ known vulnerabilit"; then echo "$$out"; exit 1; \
	elif [ $$code -ne 0 ] || echo "$$out" | grep -q "could not be audited"; then \
	  skipped=$$(echo "$$out" | grep -c "could not be audited"); \
	  echo "*** pip-audit: DEPENDENCY AUDIT NOT DONE: no advisory database answered" \
	       "($$skipped packages not found, exit $$code); see BENCHMARKS.md, Security checks ***"; \
	  echo "$$out" | grep -m 1 -E "could not be audited|Error" || true; \
	else echo "$$out"; fi

## bench: measure trigger vs bare Flask, Lambda cold start, fleet storm, start latency, interference
bench: system-deps $(STAMP)
	$(BIN)/python -m bench

## lambda-zip: build dist/lambda_trigger.zip (handler + pyjwt + slack_sdk; the runtime has boto3)
lambda-zip: $(STAMP)
	$(BIN)/python deploy/build_lambda_zip.py --output dist/lambda_trigger.zip

## cfn-lint: lint the AWS template (deploy/template.yaml); tests/test_deploy.py runs it too
cfn-lint: $(STAMP)
	$(BIN)/cfn-lint deploy/template.yaml

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
