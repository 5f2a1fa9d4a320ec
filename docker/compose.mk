# docker/compose.mk: the compose staging stack (docker-compose.yml, docker/). Included by the Makefile.
# Every target first makes sure of the engine (docker/engine.sh), the base image
# (docker/base-image.sh: debootstrap + docker import when no registry answers), the builder's extra
# CA certificates (docker/ca-certs.sh) and .env (docker/env.sh).

# `docker compose` (v2) when installed, else `docker-compose` (v1.29); override with COMPOSE=...
ifndef COMPOSE
COMPOSE := $(shell if docker compose version >/dev/null 2>&1; then echo "docker compose"; else echo docker-compose; fi)
endif
# Project of `make up`; its data volume is $(COMPOSE_PROJECT)_data.
COMPOSE_PROJECT ?= channels-stack

DC = $(COMPOSE) -p $(COMPOSE_PROJECT)
# The project's certificate from the local CA (docker/up.sh issues it; docker-compose.yml mounts it).
export TLS_DIR ?= .tls/$(COMPOSE_PROJECT)
# The app's database: sqlite (the default) or postgresql, which turns on the `postgres` profile (the
# db service) and points the app at it, for `up` and `test-compose` alike.
DATABASE ?= sqlite
ifeq ($(DATABASE),postgresql)
export COMPOSE_PROFILES = postgres
export APP_DATABASE = postgresql
else ifneq ($(DATABASE),sqlite)
$(error DATABASE=$(DATABASE): expected sqlite or postgresql)
endif
# down, clean, logs and ps cover every profile's containers, whichever DATABASE started them.
DC_ALL = COMPOSE_PROFILES=postgres $(DC)
# `make up VARS=my-vars.yml`: deploy/defaults.yml variables over docker/deploy-vars.yml, from a file
# anywhere. docker/vars.py checks it before anything is built and stages it inside the build context
# (docker/vars.local/, git-ignored); docker-compose.yml hands that path to the build as EXTRA_VARS.
VARS ?=
STAGED_VARS = docker/vars.local/$(COMPOSE_PROJECT).yml

.PHONY: compose-vars compose-prepare up down logs ps clean compose-clean

# First prerequisite of `up`: bad VARS fail here, before the engine, base image or build.
compose-vars:
ifneq ($(strip $(VARS)),)
	@python3 docker/vars.py "$(VARS)" $(STAGED_VARS)
endif

compose-prepare:
	@bash docker/engine.sh
	@bash docker/base-image.sh
	@bash docker/ca-certs.sh
	@bash docker/env.sh .env

# `make up APP_REPLICAS=3`: three app containers (gunicorn, the Daphne processes and the workers in
# each) behind the one Nginx, which finds them by itself (docker/nginx/entrypoint.sh).
up: export APP_REPLICAS ?= 1
up: export EXTRA_VARS = $(if $(strip $(VARS)),$(STAGED_VARS))
up: compose-vars compose-prepare ## Build and start the compose stack (VARS=file, APP_REPLICAS=N app containers); prints the URL
	@bash docker/up.sh $(DC)

down: ## Stop and remove the compose stack's containers; the data volumes are kept
	$(DC_ALL) down --remove-orphans

logs: ## Follow the compose stack's logs (Ctrl-C to stop)
	$(DC_ALL) logs --follow --tail 100

ps: ## Show the compose stack's services and their health
	$(DC_ALL) ps

clean: compose-clean ## Remove the compose stack, its data volume and its images

compose-clean:
	@echo "clean: removing the compose stacks '$(COMPOSE_PROJECT)' and '$(E2E_COMPOSE_PROJECT)': containers, networks,"
	@echo "clean: the data volumes (the SQLite and PostgreSQL databases: messages and jobs are lost), the images"
	@echo "clean: channels-stack/app, channels-stack/nginx, channels-stack/redis, channels-stack/postgresql with their build-stage cache images,"
	@echo "clean: and docker/ca-certificates/extra.crt."
	@echo "clean: .env (your secrets and settings) is kept; delete it yourself for new secrets."
	-@COMPOSE_PROFILES=postgres $(COMPOSE) -p $(E2E_COMPOSE_PROJECT) down --volumes --remove-orphans
	-@$(DC_ALL) down --volumes --rmi all --remove-orphans
	-@docker image prune --force --filter label=channels-stack.image
	rm -f docker/ca-certificates/extra.crt
	rm -rf docker/vars.local
