# tests/faults/faults.mk: the faults tier (issue 5: what survives what). Included by the Makefile
# after docker/compose.mk and ansible/vm.mk, whose targets and scripts bring the stacks up; run from
# the repository root. Its stacks have their own names and ports, so `make up`, `make vm` and the
# other tiers' stacks are left alone.

# Which targets to test: "compose vm", or one of them.
FAULTS_TARGETS ?= compose vm
FAULTS_COMPOSE_PROJECT ?= channels-stack-faults
FAULTS_HTTP_PORT ?= 8092
FAULTS_VM_CONTAINER ?= channels-stack-faults-vm
FAULTS_VM_HTTP_PORT ?= 8093
# The table (faults-table.md), the stacks' logs and the test host's provisioning log go here.
FAULTS_ARTIFACTS ?= artifacts/faults
FAULTS_PYTEST ?= .venv/bin/python -m pytest -p no:django -p no:cacheprovider
FAULTS_PYTEST_ARGS ?=

.PHONY: test-faults lint-faults

test-faults: compose-prepare ## Faults tier: kill, stop, reload, reboot both stacks under load; prints the table
	@FAULTS_TARGETS="$(FAULTS_TARGETS)" FAULTS_COMPOSE_PROJECT=$(FAULTS_COMPOSE_PROJECT) \
	  FAULTS_HTTP_PORT=$(FAULTS_HTTP_PORT) FAULTS_VM_CONTAINER=$(FAULTS_VM_CONTAINER) \
	  FAULTS_VM_HTTP_PORT=$(FAULTS_VM_HTTP_PORT) FAULTS_ARTIFACTS=$(FAULTS_ARTIFACTS) \
	  bash tests/faults/run.sh $(or $(COMPOSE),docker-compose) -- $(FAULTS_PYTEST) $(FAULTS_PYTEST_ARGS)

lint-faults: $(VENV_STAMP) ## Lint the faults suite (ruff, shellcheck, yamllint, ansible-lint on its playbook)
	.venv/bin/ruff check tests/faults
	.venv/bin/ruff format --check tests/faults
	shellcheck tests/faults/run.sh
	.venv/bin/yamllint --strict tests/faults/reload-nginx.yml
	PATH="$(abspath .venv)/bin:$$PATH" ANSIBLE_CONFIG=ansible/ansible.cfg \
	  .venv/bin/ansible-lint --profile production tests/faults/reload-nginx.yml
