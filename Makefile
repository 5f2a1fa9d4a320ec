# channels-stack: the front door. `make` lists the targets; README.md explains them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# Debian 12's Python: the same interpreter the VM and the images run.
PYTHON ?= /usr/bin/python3
VENV ?= .venv
PYTEST = $(VENV)/bin/python -m pytest
VENV_STAMP = $(VENV)/.installed-from-lock

.PHONY: help venv lock lint lint-python lint-yaml lint-shell lint-nginx lint-docker lint-ansible test test-unit

help: ## List the targets
	@awk 'BEGIN {FS = ":.*?## "} /^[a-zA-Z_-]+:.*?## / {printf "  \033[36m%-15s\033[0m %s\n", $$1, $$2}' \
		$(MAKEFILE_LIST)

$(VENV_STAMP): requirements-dev.txt requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --require-hashes -r requirements-dev.txt
	@touch $@

venv: $(VENV_STAMP) ## Create .venv (tests, linters, Ansible) from the hashed lock files

# sslyze (tests/scan) in a virtualenv of its own: it pins cryptography below what the app needs.
SCAN_VENV ?= build/scan-venv
SCAN_STAMP = $(SCAN_VENV)/.installed-from-lock
$(SCAN_STAMP): requirements-scan.txt
	$(PYTHON) -m venv $(SCAN_VENV)
	$(SCAN_VENV)/bin/pip install --quiet --require-hashes -r requirements-scan.txt
	@touch $@

lock: $(VENV_STAMP) ## Re-lock requirements*.txt from requirements*.in (pinned, with hashes)
	$(VENV)/bin/uv pip compile --python-version 3.11 --python-platform x86_64-unknown-linux-gnu \
		--generate-hashes --no-header -q requirements.in -o requirements.txt
	$(VENV)/bin/uv pip compile --python-version 3.11 --python-platform x86_64-unknown-linux-gnu \
		--generate-hashes --no-header -q requirements-dev.in -o requirements-dev.txt
	$(VENV)/bin/uv pip compile --python-version 3.11 --python-platform x86_64-unknown-linux-gnu \
		--generate-hashes --no-header -q requirements-scan.in -o requirements-scan.txt
	$(VENV)/bin/uv pip compile --python-version 3.11 --python-platform x86_64-unknown-linux-gnu \
		--generate-hashes --no-header -q examples/chat/requirements.in -o examples/chat/requirements.txt

# Each linter runs once over everything it checks.
lint: lint-python lint-yaml lint-shell lint-nginx lint-docker lint-ansible ## Run every linter, each once over the whole tree

lint-python: $(VENV_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

lint-yaml: $(VENV_STAMP)
	$(VENV)/bin/yamllint --strict .

# Every tracked shell script: .ci/run and each *.sh.
lint-shell:
	shellcheck .ci/run $$(git ls-files '*.sh')

lint-docker: $(VENV_STAMP)
	$(VENV)/bin/hadolint --config docker/hadolint.yaml docker/Dockerfile docker/test-host/Dockerfile

# The playbook and the faults suite's reload-nginx.yml, with ansible/ansible.cfg (roles path, collections).
lint-ansible: $(VENV_STAMP)
	PATH="$(abspath $(VENV))/bin:$$PATH" ANSIBLE_CONFIG=ansible/ansible.cfg \
	  ansible-lint --profile production ansible tests/faults/reload-nginx.yml

# gixy on the rendered Nginx config with tests/scan/gixy.cfg (every check on but one, which it argues);
# the scanner tier runs it again on the config each running target serves.
lint-nginx: $(VENV_STAMP)
	@dir=$$(mktemp -d) && trap 'rm -rf "$$dir"' EXIT && \
	$(VENV)/bin/python deploy/render.py --root / --only nginx/ --set nginx_conf_dir=$$dir \
		--set nginx_error_log=$$dir/error.log --set nginx_access_log=$$dir/access.log && \
	cp /etc/nginx/mime.types $$dir/ && mkdir $$dir/modules-enabled && \
	$(VENV)/bin/gixy -c tests/scan/gixy.cfg $$dir/nginx.conf

# Then the database tests (marked `postgresql`) again with the app's own database on PostgreSQL.
test-unit: $(VENV_STAMP) ## Unit tier: app against real Redis/SQLite and PostgreSQL, deploy templates vs nginx/supervisor/systemd
	$(PYTEST) tests/unit
	UNIT_DATABASE=postgresql $(PYTEST) tests/unit -m postgresql

test: lint test-unit test-bench test-stacks test-cluster test-example test-modes ## Everything CI runs: lint, the unit tier, the bench smoke, the compose, VM, scan and faults tiers (one session per target, at once), the cluster tier, the example tier, then the deploy modes tier

-include docker/compose.mk
-include tests/tiers.mk
-include bench/bench.mk
