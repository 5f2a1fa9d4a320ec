#!/usr/bin/env bash
# The compose test tier: brings up a separate stack (its own project, volume and port, so a stack
# started with `make up` is left alone), runs the end-to-end suite against it, saves the
# containers' logs under artifacts/ and always removes the stack with its volume (`down -v`), also
# when the tests fail or are interrupted.
# Usage: docker/test-compose.sh COMPOSE-COMMAND... -- PYTEST-COMMAND...
# Environment: E2E_COMPOSE_PROJECT, E2E_HTTP_PORT (set by docker/compose.mk).
set -o errexit -o pipefail -o nounset

compose=()
while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do
  compose+=("$1")
  shift
done
if [ "$#" -eq 0 ] || [ "${#compose[@]}" -eq 0 ]; then
  echo "usage: $0 COMPOSE-COMMAND... -- PYTEST-COMMAND..." >&2
  exit 2
fi
shift
project="${E2E_COMPOSE_PROJECT:?}"
export HTTP_PORT="${E2E_HTTP_PORT:?}"
artifacts="${ARTIFACTS_DIR:-artifacts}"

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  mkdir -p "$artifacts"
  "${compose[@]}" -p "$project" logs --no-color --timestamps >"$artifacts/compose-logs.txt" 2>&1 || true
  echo "test-compose: container logs saved to $artifacts/compose-logs.txt; removing the test stack (down -v)"
  "${compose[@]}" -p "$project" down --volumes --remove-orphans --timeout 20 || true
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A stack left behind by an interrupted earlier run (a killed session) would carry its old data.
"${compose[@]}" -p "$project" down --volumes --remove-orphans --timeout 20 >/dev/null 2>&1 || true
bash "$(dirname "$0")/up.sh" "${compose[@]}" -p "$project"
# The suite finds the stack through these (tests/e2e/targets.py).
E2E_COMPOSE_CMD="${compose[*]}" E2E_COMPOSE_PROJECT="$project" E2E_HTTP_PORT="$HTTP_PORT" \
  "$@"
