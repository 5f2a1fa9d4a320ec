# ansible/vm.mk: the local test host (a systemd container standing in for a Debian 12 VM) and the
# VM test tier. Included by the top-level Makefile; run from the repository root.

VM_CONTAINER ?= channels-stack-vm
VM_IMAGE ?= channels-stack-test-host
VM_HTTP_PORT ?= 8081
VM_PYTHON ?= .venv/bin/python
VM_BIN := $(dir $(VM_PYTHON))
# The CA bundle the test host trusts (the control machine's, so pip works behind an intercepting proxy).
EXTRA_CA_CERTS ?= /etc/ssl/certs/ca-certificates.crt
VM_ENV := ANSIBLE_CONFIG=ansible/ansible.cfg VM_CONTAINER=$(VM_CONTAINER) VM_HTTP_PORT=$(VM_HTTP_PORT) \
	EXTRA_CA_CERTS=$(EXTRA_CA_CERTS)
VM_PLAYBOOK := $(VM_ENV) $(VM_BIN)ansible-playbook -i ansible/inventories/local-vm ansible/site.yml
VM_PYTEST := $(VM_ENV) $(VM_PYTHON) -m pytest -p no:django -p no:cacheprovider

.PHONY: vm vm-host vm-destroy test-vm lint-ansible

vm-host: ## Start the local systemd test host (no playbook run)
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
	@echo "test host $(VM_CONTAINER) is up; Nginx will answer on http://127.0.0.1:$(VM_HTTP_PORT)/"

vm: vm-host ## Create the local test host and run the playbook against it
	@start=$$(date +%s); \
	$(VM_PLAYBOOK) && echo "playbook run took $$(( $$(date +%s) - start )) s"

vm-destroy: ## Remove the local test host
	docker rm --force --volumes $(VM_CONTAINER) >/dev/null 2>&1 || true

test-vm: ## VM tier: fresh test host, playbook, idempotence, testinfra and e2e tests, then destroy it
	@status=0; \
	$(MAKE) --no-print-directory vm-destroy; \
	{ $(MAKE) --no-print-directory vm \
	  && $(VM_PYTEST) tests/vm \
	  && $(VM_PYTEST) tests/e2e --target vm; } || status=$$?; \
	$(MAKE) --no-print-directory vm-destroy; \
	exit $$status

lint-ansible: ## Lint the playbook, the test host image and the VM tests
	cd ansible && ../$(VM_BIN)ansible-lint --profile production
	$(VM_BIN)yamllint --strict ansible
	$(VM_BIN)hadolint docker/test-host/Dockerfile
	$(VM_BIN)ruff check tests/vm
	$(VM_BIN)ruff format --check tests/vm
