# tests/tiers.mk: every test tier that needs a deployed stack, each one pytest call (or `python -m
# bench`) with its names, ports and artifacts; tests/conftest.py's --fresh brings the stacks up
# (harness.Target.up, concurrently when there are two) and removes them at the end with their logs
# saved. Included by the Makefile after docker/compose.mk (compose-prepare, COMPOSE).

TIER_PYTEST = PYTHONPATH=tests $(VENV)/bin/python -m pytest -p no:django -p no:cacheprovider
HARNESS = PYTHONPATH=tests $(VENV)/bin/python -m harness
# The CA bundle the test hosts trust (the control machine's, so pip works behind an intercepting proxy).
export EXTRA_CA_CERTS ?= /etc/ssl/certs/ca-certificates.crt

# compose tier: its own project and port, so `make up`'s stack is left alone; three Daphne processes.
E2E_COMPOSE_PROJECT ?= channels-stack-e2e
E2E_HTTP_PORT ?= 8090
E2E_HTTPS_PORT ?= 8094
E2E_VARS ?= docker/e2e-vars.yml
E2E_PYTEST_ARGS ?=
COMPOSE_TIER_ENV = COMPOSE="$(COMPOSE)" E2E_COMPOSE_PROJECT=$(E2E_COMPOSE_PROJECT) E2E_HTTP_PORT=$(E2E_HTTP_PORT) \
	E2E_HTTPS_PORT=$(E2E_HTTPS_PORT) EXTRA_VARS=$(E2E_VARS)

# VM tier and `make vm`: the systemd test host (docker/test-host/) provisioned by ansible/site.yml.
VM_CONTAINER ?= channels-stack-vm
VM_HTTP_PORT ?= 8081
# Exported: every VM target (make vm, test-vm, test-stacks) publishes HTTPS there.
export VM_HTTPS_PORT ?= 8444
# Deploy variables over the inventory's for `make vm` (the playbook's --extra-vars file).
VM_VARS ?=
VM_TEST_VARS ?= docker/e2e-vars.yml
VM_PYTEST_ARGS ?=

# faults tier: "compose vm", or one of them; stacks of its own with the deploy defaults.
FAULTS_TARGETS ?= compose vm
FAULTS_COMPOSE_PROJECT ?= channels-stack-faults
FAULTS_HTTP_PORT ?= 8092
FAULTS_HTTPS_PORT ?= 8095
FAULTS_VM_CONTAINER ?= channels-stack-faults-vm
FAULTS_VM_HTTP_PORT ?= 8093
FAULTS_VM_HTTPS_PORT ?= 8096
FAULTS_ARTIFACTS ?= artifacts/faults
FAULTS_PYTEST_ARGS ?=
SCAN_PYTEST_ARGS ?=

# example tier (issue 13): the chat example (examples/chat) deployed by its variables alone, on a compose
# stack (images tagged EXAMPLE_IMAGE_TAG, never `make up`'s) and a test host of its own.
EXAMPLE_VARS ?= examples/chat/deploy-vars.yml
EXAMPLE_COMPOSE_PROJECT ?= channels-stack-example
EXAMPLE_HTTP_PORT ?= 8085
EXAMPLE_HTTPS_PORT ?= 8086
EXAMPLE_IMAGE_TAG ?= example
EXAMPLE_VM_CONTAINER ?= channels-stack-example-vm
EXAMPLE_VM_HTTP_PORT ?= 8087
EXAMPLE_VM_HTTPS_PORT ?= 8088
EXAMPLE_TARGETS ?= compose vm
EXAMPLE_ARTIFACTS ?= artifacts/example
EXAMPLE_PYTEST_ARGS ?=

# The cluster (issue 11): five test hosts on a private network, ansible/inventories/local-cluster.
# `make cluster` publishes the load balancer on 127.0.0.1:8082; the tier uses its own names, network
# and port, and talks to the load balancer's private address.
CLUSTER_NAME ?= channels-stack-cluster
CLUSTER_NET ?= 10.82.82
CLUSTER_HTTP_PORT ?= 8082
CLUSTER_VARS ?=
CLUSTER_TEST_NAME ?= clt
CLUSTER_TEST_NET ?= 10.82.60
CLUSTER_TEST_HTTP_PORT ?= 8260
CLUSTER_TEST_VARS ?= tests/cluster/cluster-vars.yml
CLUSTER_ARTIFACTS ?= artifacts/cluster
CLUSTER_PYTEST_ARGS ?=

.PHONY: docker-prepare vm vm-destroy test-compose test-vm test-faults test-scan test-stacks test-example cluster cluster-destroy test-cluster

# The tiers that run tests/scan need sslyze's virtualenv (the Makefile's SCAN_STAMP).
test-compose test-vm test-scan test-stacks: $(SCAN_STAMP)

docker-prepare:
	@bash docker/engine.sh
	@bash docker/base-image.sh

cluster: docker-prepare $(VENV_STAMP) ## Create the local cluster (lb, app1, app2, redis, db) and run the playbook on it
	CLUSTER_NAME=$(CLUSTER_NAME) CLUSTER_NET=$(CLUSTER_NET) CLUSTER_HTTP_PORT=$(CLUSTER_HTTP_PORT) \
	  CLUSTER_VARS=$(CLUSTER_VARS) $(HARNESS) cluster up

cluster-destroy: $(VENV_STAMP) ## Remove the local cluster
	CLUSTER_NAME=$(CLUSTER_NAME) CLUSTER_NET=$(CLUSTER_NET) $(HARNESS) cluster down

test-cluster: docker-prepare $(VENV_STAMP) ## Cluster tier: fresh cluster; cross-host delivery, a host stopped, Redis failover, rolling deploy; the table
	CLUSTER_NAME=$(CLUSTER_TEST_NAME) CLUSTER_NET=$(CLUSTER_TEST_NET) CLUSTER_HTTP_PORT=$(CLUSTER_TEST_HTTP_PORT) \
	  CLUSTER_VARS=$(CLUSTER_TEST_VARS) ARTIFACTS_DIR=$(CLUSTER_ARTIFACTS) FAULTS_TABLE=$(CLUSTER_ARTIFACTS)/cluster-table.md \
	  $(TIER_PYTEST) tests/cluster --target cluster --fresh $(CLUSTER_PYTEST_ARGS)

test-compose: compose-prepare $(VENV_STAMP) ## End-to-end tests and TLS scanners against a fresh compose stack (always removed afterwards)
	$(COMPOSE_TIER_ENV) $(TIER_PYTEST) tests/e2e tests/scan --target compose --fresh $(E2E_PYTEST_ARGS)

vm: docker-prepare $(VENV_STAMP) ## Create the local test host (systemd container) and run the playbook on it
	VM_CONTAINER=$(VM_CONTAINER) VM_HTTP_PORT=$(VM_HTTP_PORT) VM_VARS=$(VM_VARS) $(HARNESS) vm up

vm-destroy: $(VENV_STAMP) ## Remove the local test host
	VM_CONTAINER=$(VM_CONTAINER) $(HARNESS) vm down

test-vm: docker-prepare $(VENV_STAMP) ## VM tier: fresh test host, playbook twice, testinfra, e2e suite; host removed after
	VM_CONTAINER=$(VM_CONTAINER) VM_HTTP_PORT=$(VM_HTTP_PORT) VM_VARS=$(VM_TEST_VARS) \
	  $(TIER_PYTEST) tests/vm tests/e2e tests/scan --target vm --fresh $(VM_PYTEST_ARGS)

test-faults: compose-prepare $(VENV_STAMP) ## Faults tier: kill, stop, reload, reboot both stacks under load; prints the table
	rm -f $(FAULTS_ARTIFACTS)/faults-table.*.json
	COMPOSE="$(COMPOSE)" E2E_COMPOSE_PROJECT=$(FAULTS_COMPOSE_PROJECT) E2E_HTTP_PORT=$(FAULTS_HTTP_PORT) \
	  E2E_HTTPS_PORT=$(FAULTS_HTTPS_PORT) EXTRA_VARS= \
	  VM_CONTAINER=$(FAULTS_VM_CONTAINER) VM_HTTP_PORT=$(FAULTS_VM_HTTP_PORT) VM_HTTPS_PORT=$(FAULTS_VM_HTTPS_PORT) VM_VARS= \
	  ARTIFACTS_DIR=$(FAULTS_ARTIFACTS) \
	  $(TIER_PYTEST) tests/faults $(addprefix --target ,$(FAULTS_TARGETS)) --fresh $(FAULTS_PYTEST_ARGS)

test-example: compose-prepare $(VENV_STAMP) ## Example tier: the chat example (examples/chat) on fresh compose and VM stacks; routing, health, restart, Redis outage
	COMPOSE="$(COMPOSE)" E2E_COMPOSE_PROJECT=$(EXAMPLE_COMPOSE_PROJECT) E2E_HTTP_PORT=$(EXAMPLE_HTTP_PORT) \
	  E2E_HTTPS_PORT=$(EXAMPLE_HTTPS_PORT) EXTRA_VARS=$(EXAMPLE_VARS) IMAGE_TAG=$(EXAMPLE_IMAGE_TAG) \
	  VM_CONTAINER=$(EXAMPLE_VM_CONTAINER) VM_HTTP_PORT=$(EXAMPLE_VM_HTTP_PORT) VM_HTTPS_PORT=$(EXAMPLE_VM_HTTPS_PORT) \
	  VM_VARS=$(EXAMPLE_VARS) ARTIFACTS_DIR=$(EXAMPLE_ARTIFACTS) \
	  $(TIER_PYTEST) tests/example $(addprefix --target ,$(EXAMPLE_TARGETS)) --fresh --durations=10 $(EXAMPLE_PYTEST_ARGS)

# scanner tier (tests/scan): gixy, hadolint, the containers' limits, lynis on the test host, and the
# units' `systemd-analyze security` (tests/vm/test_sandbox.py, which the VM tier runs too), on a fresh
# compose stack and test host of its own (the compose tier's and VM tier's names and ports).
test-scan: compose-prepare $(VENV_STAMP) ## Scanner tier: gixy, hadolint, container limits, lynis, systemd exposure on fresh stacks; removed after
	$(COMPOSE_TIER_ENV) VM_CONTAINER=$(VM_CONTAINER) VM_HTTP_PORT=$(VM_HTTP_PORT) VM_VARS=$(VM_TEST_VARS) \
	  $(TIER_PYTEST) tests/scan tests/vm/test_sandbox.py --target compose --target vm --fresh $(SCAN_PYTEST_ARGS)

# `make test`: the compose, VM, scanner and faults tiers on one compose stack and one test host (the
# tiers' own names and ports), as two pytest sessions at the same time, one per target: most of their
# time is waiting (for bring-up, playbook runs, restarts, reconnects), not CPU (issue 10, item 5). Same
# tests, same assertions as the tiers alone, except that the faults run with the end-to-end variables
# (three Daphne processes) and after the other tests; each session scans its own target (tests/scan
# skips what needs the other). Each session's output is printed whole when it ends (--output-sync); the
# faults table has the rows of both (tests/faults/report.py load_records). Stop 19 tried this and went
# back to one session after two handshake timeouts: those were the TLS race of our client
# (tests/harness/tls.py), not contention. --durations: where the time goes.
STACKS_SESSIONS = stacks-session-compose stacks-session-vm
.PHONY: $(STACKS_SESSIONS)

test-stacks: compose-prepare $(VENV_STAMP)
	rm -f $(FAULTS_ARTIFACTS)/faults-table.*.json
	$(MAKE) --no-print-directory -k -j2 --output-sync=target $(STACKS_SESSIONS)

stacks-session-compose:
	$(COMPOSE_TIER_ENV) FAULTS_TABLE=$(FAULTS_ARTIFACTS)/faults-table.md \
	  $(TIER_PYTEST) tests/e2e tests/scan tests/faults --target compose --fresh --durations=20

stacks-session-vm:
	VM_CONTAINER=$(VM_CONTAINER) VM_HTTP_PORT=$(VM_HTTP_PORT) VM_VARS=$(VM_TEST_VARS) \
	  FAULTS_TABLE=$(FAULTS_ARTIFACTS)/faults-table.md \
	  $(TIER_PYTEST) tests/e2e tests/vm tests/scan tests/faults --target vm --fresh --durations=20

# deploy modes tier (issue 14): each deploy_mode other than split (the e2e tiers') on a fresh compose
# stack and test host of its own, built and provisioned with docker/modes/<mode>-vars.yml; one pytest
# session per mode (the harness brings its two targets up together), the modes one after the other.
# `make test-modes-asgi` runs one mode. The last tier of `make test`.
MODES ?= asgi wsgi
MODES_COMPOSE_PREFIX ?= modes
MODES_VM_PREFIX ?= modes-vm
MODES_IMAGE_TAG ?= modes
MODES_HTTP_PORT_asgi ?= 8300
MODES_HTTP_PORT_wsgi ?= 8301
MODES_HTTPS_PORT_asgi ?= 8303
MODES_HTTPS_PORT_wsgi ?= 8304
MODES_VM_HTTP_PORT_asgi ?= 8306
MODES_VM_HTTP_PORT_wsgi ?= 8307
MODES_VM_HTTPS_PORT_asgi ?= 8308
MODES_VM_HTTPS_PORT_wsgi ?= 8309
MODES_TARGETS ?= compose vm
MODES_ARTIFACTS ?= artifacts/modes
MODES_PYTEST_ARGS ?=

.PHONY: test-modes
# Every mode runs even when an earlier one failed; the tier fails if any did.
test-modes: ## Deploy modes tier: asgi and wsgi each on fresh compose and VM stacks; programs, routing, page, posts, updates, a job
	@status=0; for mode in $(MODES); do $(MAKE) --no-print-directory test-modes-$$mode || status=1; done; exit $$status

test-modes-%: compose-prepare $(VENV_STAMP)
	COMPOSE="$(COMPOSE)" E2E_COMPOSE_PROJECT=$(MODES_COMPOSE_PREFIX)-$* E2E_HTTP_PORT=$(MODES_HTTP_PORT_$*) \
	  E2E_HTTPS_PORT=$(MODES_HTTPS_PORT_$*) EXTRA_VARS=docker/modes/$*-vars.yml IMAGE_TAG=$(MODES_IMAGE_TAG) \
	  VM_CONTAINER=$(MODES_VM_PREFIX)-$* VM_HTTP_PORT=$(MODES_VM_HTTP_PORT_$*) \
	  VM_HTTPS_PORT=$(MODES_VM_HTTPS_PORT_$*) VM_VARS=docker/modes/$*-vars.yml ARTIFACTS_DIR=$(MODES_ARTIFACTS)/$* \
	  $(TIER_PYTEST) tests/modes $(addprefix --target ,$(MODES_TARGETS)) --fresh --durations=10 $(MODES_PYTEST_ARGS)
