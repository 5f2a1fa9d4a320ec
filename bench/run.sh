#!/usr/bin/env bash
# `make bench`: brings up the compose stack in the bench profile (bench/profile.yml) under its own
# project, image tag and port, runs the harness against it, and always removes the stack with its
# volume afterwards (also when the run fails or is interrupted); the containers' logs go to
# $ARTIFACTS_DIR/bench-compose-logs.txt.
# Usage: bench/run.sh COMPOSE-COMMAND... -- HARNESS-COMMAND...
#   The harness command gets --compose "COMPOSE-COMMAND" --project PROJECT appended.
# Environment (set by bench/bench.mk): BENCH_COMPOSE_PROJECT, BENCH_HTTP_PORT, BENCH_IMAGE_TAG.
set -o errexit -o pipefail -o nounset

compose=()
while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do
  compose+=("$1")
  shift
done
if [ "$#" -eq 0 ] || [ "${#compose[@]}" -eq 0 ]; then
  echo "usage: $0 COMPOSE-COMMAND... -- HARNESS-COMMAND..." >&2
  exit 2
fi
shift
project="${BENCH_COMPOSE_PROJECT:?}"
artifacts="${ARTIFACTS_DIR:-artifacts}"
# Published on loopback like any compose stack, but the harness goes to the Nginx container's own
# address: see bench/targets.py.
export HTTP_PORT="${BENCH_HTTP_PORT:?}"
# Own image tag: the bench profile's images never replace `make up`'s channels-stack/*:latest.
export IMAGE_TAG="${BENCH_IMAGE_TAG:?}"
export EXTRA_VARS="docker/vars.local/$project.yml"

python3 docker/vars.py bench/profile.yml "$EXTRA_VARS"

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  mkdir -p "$artifacts"
  "${compose[@]}" -p "$project" logs --no-color --timestamps >"$artifacts/bench-compose-logs.txt" 2>&1 || true
  echo "bench: container logs saved to $artifacts/bench-compose-logs.txt; removing the bench stack (down -v)"
  "${compose[@]}" -p "$project" down --volumes --remove-orphans --timeout 20 >/dev/null 2>&1 || true
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A stack left behind by an interrupted earlier run would carry its old messages.
"${compose[@]}" -p "$project" down --volumes --remove-orphans --timeout 20 >/dev/null 2>&1 || true
bash docker/up.sh "${compose[@]}" -p "$project"
"$@" --compose "${compose[*]}" --project "$project"
