# ansible/vm.mk: the local test host (a systemd container standing in for a Debian 12 VM) and the
# VM test tier. Included by the top-level Makefile; run from the repository root.

VM_CONTAINER ?= channels-stack-vm
VM_IMAGE ?= channels-stack-test-host
VM_HTTP_PORT ?= 8081
VM_VENV := $(or $(VENV),.venv)
# Deploy app/ and requirements.txt from this directory instead of the checkout (tests/vm/run.sh
# sets it to a snapshot, so edits made while the tier runs cannot make a "new release" mid-test).
VM_APP_SOURCE ?=
# The CA bundle the test host trusts (the control machine's, so pip works behind an intercepting proxy).
EXTRA_CA_CERTS ?= /etc/ssl/certs/ca-certificates.crt
# Deploy variables over the inventory's (the playbook's --extra-vars file); `make test-vm` provisions
# its host with docker/e2e-vars.yml, and the tests read the same file (tests/e2e/targets.py).
VM_VARS ?=
VM_TEST_VARS ?= docker/e2e-vars.yml
VM_PATH := PATH="$(abspath $(VM_VENV))/bin:$$PATH"
VM_ENV := $(VM_PATH) ANSIBLE_CONFIG=$(abspath ansible/ansible.cfg) \
	VM_CONTAINER=$(VM_CONTAINER) VM_HTTP_PORT=$(VM_HTTP_PORT) EXTRA_CA_CERTS=$(EXTRA_CA_CERTS)
VM_PYTEST := $(VM_VENV)/bin/python -m pytest -p no:django -p no:cacheprovider

.PHONY: vm vm-host vm-converge vm-destroy test-vm lint-ansible

vm-host: $(VENV_STAMP)
	@bash docker/engine.sh
	@bash docker/base-image.sh
	docker build --quiet --tag $(VM_IMAGE) docker/test-host >/dev/null
	@if ! docker container inspect $(VM_CONTAINER) >/dev/null 2>&1; then \
	  docker run --detach --name $(VM_CONTAINER) --hostname $(VM_CONTAINER) \
	    --cap-add SYS_ADMIN --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
	    --tmpfs /run --tmpfs /run/lock --volume /sys/fs/cgroup:/sys/fs/cgroup:rw \
	    --publish 127.0.0.1:$(VM_HTTP_PORT):80 $(VM_IMAGE) >/dev/null; \
	fi
	@docker start $(VM_CONTAINER) >/dev/null
	@# Until systemd has finished booting (the first seconds it does not even answer on its bus).
	@for _ in $$(seq 1 60); do \
	  state=$$(docker exec $(VM_CONTAINER) systemctl is-system-running --wait 2>/dev/null); \
	  case "$$state" in running) break ;; degraded) docker exec $(VM_CONTAINER) systemctl --failed; break ;; esac; \
	  sleep 1; \
	done; \
	[ "$$state" = running ] || [ "$$state" = degraded ] || { echo "test host did not boot: $$state" >&2; exit 1; }

vm-converge: $(VENV_STAMP)
	$(VM_ENV) ansible-playbook -i ansible/inventories/local-vm ansible/site.yml \
	  $(if $(VM_APP_SOURCE),--extra-vars app_source_dir=$(abspath $(VM_APP_SOURCE))) \
	  $(if $(VM_VARS),--extra-vars @$(abspath $(VM_VARS)))

vm: vm-host vm-converge ## Create the local test host (systemd container) and run the playbook on it
	@echo "test host $(VM_CONTAINER) provisioned: http://127.0.0.1:$(VM_HTTP_PORT)/"

vm-destroy: ## Remove the local test host
	docker rm --force --volumes $(VM_CONTAINER) >/dev/null 2>&1 || true

test-vm: export VM_VARS = $(VM_TEST_VARS)
test-vm: $(VENV_STAMP) ## VM tier: fresh test host, playbook twice, testinfra, e2e suite; host removed after
	@$(VM_ENV) bash tests/vm/run.sh $(MAKE) --no-print-directory -- $(VM_PYTEST)

lint-ansible: $(VENV_STAMP) ## Lint the playbook (ansible-lint production, yamllint), test host image, VM tests
	cd ansible && $(VM_PATH) ansible-lint --profile production
	$(VM_PATH) yamllint --strict ansible
	$(VM_PATH) hadolint docker/test-host/Dockerfile
	shellcheck tests/vm/run.sh
	$(VM_PATH) ruff check tests/vm
	$(VM_PATH) ruff format --check tests/vm
