#!/usr/bin/env bash
# Runs the end-to-end tests of the page: headless Chromium (Debian's
# `chromium`) driven by playwright-core, against the lanchat binary named by
# LANCHAT_BIN; the restart test also needs `redis-server`.
#
#   LANCHAT_BIN=target/debug/lanchat bash tests/e2e/run.sh [test files...]
#
# Missing system packages are installed by tests/install-deps.sh.
# Screenshots land in target/e2e/.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if [[ -z "${LANCHAT_BIN:-}" ]]; then
  echo "run.sh: set LANCHAT_BIN to the lanchat binary, e.g. LANCHAT_BIN=target/debug/lanchat" >&2
  exit 1
fi
LANCHAT_BIN="$(realpath "$LANCHAT_BIN")"
export LANCHAT_BIN
if [[ ! -x "$LANCHAT_BIN" ]]; then
  echo "run.sh: $LANCHAT_BIN is not an executable (build the server first)" >&2
  exit 1
fi

# Chromium, redis-server and node: installed (as root) by the one script
# that installs what the tests need, or named if we may not install them.
bash "$here/../install-deps.sh"

# Test files named on the command line are relative to where we were called.
tests=()
for file in "$@"; do
  tests+=("$(realpath "$file")")
done

cd "$here"
# Installed again when package-lock.json changed since (a new devDependency).
if [[ ! -d node_modules || package-lock.json -nt node_modules/.package-lock.json ]]; then
  if [[ -f package-lock.json ]]; then
    npm ci --no-audit --no-fund
  else
    npm install --no-audit --no-fund
  fi
fi

if [[ ${#tests[@]} -eq 0 ]]; then
  tests=(*.test.mjs)
fi

# --test-timeout is the watchdog: a test that hangs fails after 240 s instead
# of stalling the run. (Node applies it to each file as a whole too, and a
# file of a dozen tests takes over 90 s on a loaded 2-core machine.) Files run one after the other, which is gentler on a
# 2-core machine than running browsers in parallel.
exec node --test --test-concurrency=1 --test-timeout=240000 "${tests[@]}"
