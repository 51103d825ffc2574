# lanchat. A newcomer needs two commands:
#   make run    the chat on http://0.0.0.0:8000 (history in memory)
#   make test   every test (installs redis-server and chromium when missing)

CARGO ?= cargo
# Extra flags for the server, e.g. make run ARGS="--port 9000"
ARGS ?=
# The Redis used by `make run-redis` (started here when none answers).
REDIS_PORT ?= 6379

.PHONY: run run-redis test test-rust test-e2e lint deps

run:
	$(CARGO) run --release -- $(ARGS)

# The chat with history, inboxes and sessions kept in a local Redis.
run-redis: deps
	@redis-cli -p $(REDIS_PORT) ping >/dev/null 2>&1 || \
	  (echo "starting redis-server on port $(REDIS_PORT)"; \
	   redis-server --port $(REDIS_PORT) --daemonize yes --save 60 1 --dir /tmp >/dev/null)
	$(CARGO) run --release -- --redis redis://127.0.0.1:$(REDIS_PORT)/ $(ARGS)

test: deps test-rust

# Unit tests, then integration tests against the real binary (and a real
# redis-server the harness starts on a free port).
test-rust:
	$(CARGO) test --all-targets

# The page in headless Chromium, two users in two browser contexts.
test-e2e:
	$(CARGO) build
	LANCHAT_BIN=$(CURDIR)/target/debug/lanchat bash tests/e2e/run.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

deps:
	@bash tests/install-deps.sh
