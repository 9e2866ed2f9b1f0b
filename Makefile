# One command sets up and runs the demo; one sets up and runs the whole test suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test system-deps lint typecheck dockerlint pytest lambda-zip cfn-lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

## demo: set up and run the local end-to-end demo on SQLite
demo: $(STAMP)
	$(BIN)/batch-trigger demo

## test: set up, lint, type-check and run every test
test: system-deps lint typecheck dockerlint pytest

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

## lambda-zip: build dist/lambda_trigger.zip (handler + pyjwt + slack_sdk; the runtime has boto3)
lambda-zip: $(STAMP)
	$(BIN)/python deploy/build_lambda_zip.py --output dist/lambda_trigger.zip

## cfn-lint: lint the AWS template (deploy/template.yaml); tests/test_deploy.py runs it too
cfn-lint: $(STAMP)
	$(BIN)/cfn-lint deploy/template.yaml

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
