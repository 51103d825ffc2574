# lanchat. A newcomer needs two commands:
#   make run    the chat on http://0.0.0.0:8000 (history in memory)
#   make test   every test (installs redis-server and chromium when missing)

CARGO ?= cargo
# Extra flags for the server, e.g. make run ARGS="--port 9000"
ARGS ?=
# The Redis used by `make run-redis` (started here when none answers).
REDIS_PORT ?= 6379

.PHONY: run run-redis test test-rust test-e2e lint deps fuzz soak memory bench

run:
	$(CARGO) run --release -- $(ARGS)

# The chat with history, inboxes and sessions kept in a local Redis.
run-redis: deps
	@redis-cli -p $(REDIS_PORT) ping >/dev/null 2>&1 || \
	  (echo "starting redis-server on port $(REDIS_PORT)"; \
	   redis-server --port $(REDIS_PORT) --daemonize yes --save 60 1 --dir /tmp >/dev/null)
	$(CARGO) run --release -- --redis redis://127.0.0.1:$(REDIS_PORT)/ $(ARGS)

test: deps test-rust test-e2e

# Unit tests, then integration tests against the real binary (and a real
# redis-server the harness starts on a free port).
test-rust:
	$(CARGO) test --all-targets

# The page in headless Chromium, two users in two browser contexts.
test-e2e:
	$(CARGO) build
	LANCHAT_BIN=$(CURDIR)/target/debug/lanchat bash tests/e2e/run.sh

# Property tests of every parser of untrusted input, with many more cases,
# each for at most FUZZ_SECONDS (a timeout there means nothing was found).
FUZZ_SECONDS ?= 60
FUZZ_TARGETS = request_heads form_fields cookies names next_paths page_paths client_frames
fuzz:
	$(CARGO) test --release --test parsers --no-run
	@for target in $(FUZZ_TARGETS); do \
	  echo "fuzz: $$target ($(FUZZ_SECONDS) s at most)"; \
	  PROPTEST_CASES=10000000 timeout $(FUZZ_SECONDS) $(CARGO) test -q --release --test parsers $$target -- --exact; \
	  status=$$?; [ $$status -eq 0 ] || [ $$status -eq 124 ] || exit $$status; \
	done

# Bounded runs (SOAK_SECONDS each, 60 by default): churn and chat, then
# abuse next to real users (memory store, Redis); one at a time, so that
# each has the machine. Prints threads, memory and real users' round trips.
soak:
	$(CARGO) test --release --test soak -- --ignored --nocapture --test-threads=1

# What an idle WebSocket connection costs the server (Linux): PEOPLE
# (1,000 by default) log in, connect, some say something, all answer a
# heartbeat; then the resident stack pages of each connection thread and
# the RSS per connection. About 15 seconds (tests/memory.rs).
memory:
	$(CARGO) test --release --test memory -- --ignored --nocapture

# Fan-out, latency, capacity and join time, against the same-run limit of
# this machine (bench/README.md), memory store and Redis, logins, transports,
# and a join storm of 1,000 / 5,000 / 10,000 different people. About 12 minutes;
# results in target/bench/.
bench:
	$(CARGO) build --release
	$(CARGO) build --release --manifest-path bench/Cargo.toml
	bench/target/release/lanchat-bench --server $(CURDIR)/target/release/lanchat

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

deps:
	@bash tests/install-deps.sh
