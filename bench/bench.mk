# bench/bench.mk: `make bench` and its smoke tier `make test-bench`. Included by the Makefile after
# docker/compose.mk (compose-prepare, COMPOSE). The bench stack has its own project, port and image
# tag, so `make up`'s stack and images and the other tiers' stacks are left alone.

BENCH_COMPOSE_PROJECT ?= channels-stack-bench
BENCH_HTTP_PORT ?= 8197
BENCH_HTTPS_PORT ?= 8196
BENCH_IMAGE_TAG ?= bench
# Where results.json, results.md, latency.png and storm.png go; the README's bench section is rewritten from a
# full run written here (not from a --quick one, nor from another folder).
BENCH_OUT ?= bench/results
# Extra arguments of `python -m bench`: --sizes 100,1000, --quick, --posts, --receivers, --storm-sockets 1000,
# --no-storm ... (bench/README.md)
BENCH_ARGS ?=
BENCH_PYTHON ?= .venv/bin/python
TEST_BENCH_COMPOSE_PROJECT ?= channels-stack-bench-test
TEST_BENCH_HTTP_PORT ?= 8198
TEST_BENCH_HTTPS_PORT ?= 8199
TEST_BENCH_OUT ?= artifacts/bench
# The transport comparison (issue 14 item 3): one stack per deploy mode, brought up in turn as
# <project>-<mode>, on these ports, with the bench image tag. Writes transports.json/.md/.png to
# BENCH_OUT and, from a full run into bench/results, the README's transports section.
BENCH_TRANSPORTS_PROJECT ?= channels-stack-bench-transports
BENCH_TRANSPORTS_HTTP_PORT ?= 8194
BENCH_TRANSPORTS_HTTPS_PORT ?= 8193
# Extra arguments of `python -m bench.transports`: --modes split,asgi, --transports websocket,poll,
# --clients 100, --seconds 10, --rate, --quick ... (bench/README.md)
TRANSPORTS_ARGS ?=

.PHONY: bench bench-fanout bench-transports test-bench bench-clean

bench: ## Every benchmark: bench-fanout, then bench-transports (BENCH_ARGS, TRANSPORTS_ARGS)
	@$(MAKE) --no-print-directory bench-fanout
	@$(MAKE) --no-print-directory bench-transports

bench-transports: compose-prepare $(VENV_STAMP) ## What each transport (WebSocket, long/short polling) and deploy mode costs; TRANSPORTS_ARGS='--clients 100 --modes split'
	PYTHONPATH=tests $(BENCH_PYTHON) -m bench.transports --fresh --compose "$(COMPOSE)" --project $(BENCH_TRANSPORTS_PROJECT) \
	  --http-port $(BENCH_TRANSPORTS_HTTP_PORT) --https-port $(BENCH_TRANSPORTS_HTTPS_PORT) --image-tag $(BENCH_IMAGE_TAG) \
	  --out $(BENCH_OUT) $(if $(filter bench/results,$(BENCH_OUT)),$(if $(findstring --quick,$(TRANSPORTS_ARGS)),,--readme README.md)) \
	  $(TRANSPORTS_ARGS)

bench-fanout: compose-prepare $(VENV_STAMP) ## Fan-out (stack in the bench profile vs a bare asyncio server) and a reconnect storm; BENCH_ARGS='--sizes 100,1000 --quick'
	PYTHONPATH=tests $(BENCH_PYTHON) -m bench --fresh --compose "$(COMPOSE)" --project $(BENCH_COMPOSE_PROJECT) \
	  --http-port $(BENCH_HTTP_PORT) --https-port $(BENCH_HTTPS_PORT) --image-tag $(BENCH_IMAGE_TAG) --out $(BENCH_OUT) $(BENCH_ARGS)
ifeq ($(BENCH_OUT)$(findstring --quick,$(BENCH_ARGS)),bench/results)
	$(BENCH_PYTHON) -m bench.report $(BENCH_OUT) --readme README.md
endif

test-bench: compose-prepare $(VENV_STAMP) ## Bench tier: `make bench-fanout` --quick on its own stack; checks its output is well-formed (no speed asserted)
	@rm -rf $(TEST_BENCH_OUT)
	@$(MAKE) --no-print-directory bench-fanout BENCH_COMPOSE_PROJECT=$(TEST_BENCH_COMPOSE_PROJECT) \
	  BENCH_HTTP_PORT=$(TEST_BENCH_HTTP_PORT) BENCH_HTTPS_PORT=$(TEST_BENCH_HTTPS_PORT) BENCH_OUT=$(TEST_BENCH_OUT) BENCH_ARGS="--quick $(BENCH_ARGS)"
	BENCH_RESULTS=$(TEST_BENCH_OUT) $(VENV)/bin/python -m pytest -p no:django -p no:cacheprovider tests/bench

bench-clean:
	@echo "clean: removing the bench stacks '$(BENCH_COMPOSE_PROJECT)', '$(TEST_BENCH_COMPOSE_PROJECT)' and the images channels-stack/*:$(BENCH_IMAGE_TAG)"
	-@$(COMPOSE) -p $(BENCH_COMPOSE_PROJECT) down --volumes --remove-orphans
	-@$(COMPOSE) -p $(TEST_BENCH_COMPOSE_PROJECT) down --volumes --remove-orphans
	-@for mode in split asgi wsgi; do $(COMPOSE) -p $(BENCH_TRANSPORTS_PROJECT)-$$mode down --volumes --remove-orphans; done
	-@docker image rm channels-stack/app:$(BENCH_IMAGE_TAG) channels-stack/nginx:$(BENCH_IMAGE_TAG) \
	  channels-stack/redis:$(BENCH_IMAGE_TAG) 2>/dev/null

clean: bench-clean
