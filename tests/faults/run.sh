#!/usr/bin/env bash
# The faults tier (tests/faults/faults.mk, `make test-faults`): a compose stack of its own (through
# docker/test-compose.sh: own project, port and volume, removed with `down -v` afterwards) and a
# systemd test host of its own (through ansible/vm.mk: own container and port, provisioned by the
# playbook while the compose stack starts), then tests/faults against both targets in one pytest run,
# so one table covers both. Everything is removed at the end, also when a step fails or the run is
# interrupted; the logs of both stacks are saved under the artifacts directory first.
#
# Usage: tests/faults/run.sh COMPOSE-COMMAND... -- PYTEST-COMMAND...
# Environment (defaults in tests/faults/faults.mk): FAULTS_TARGETS ("compose vm"), FAULTS_COMPOSE_PROJECT,
# FAULTS_HTTP_PORT, FAULTS_VM_CONTAINER, FAULTS_VM_HTTP_PORT, FAULTS_ARTIFACTS.
#
# Internal: tests/faults/run.sh --await-vm STATUS-FILE LOG-FILE -- COMMAND... waits for the background
# provisioning of the test host, then runs COMMAND (it is the command docker/test-compose.sh runs).
set -o errexit -o pipefail -o nounset

if [ "${1:-}" = "--await-vm" ]; then
  status_file=$2 log_file=$3
  shift 4
  if [ -n "$status_file" ]; then
    echo "test-faults: waiting for the test host's playbook run (log: $log_file)"
    for _ in $(seq 1 900); do
      [ -s "$status_file" ] && break
      sleep 1
    done
    if [ "$(cat "$status_file" 2>/dev/null)" != 0 ]; then
      echo "test-faults: provisioning the test host failed or took over 15 min; last lines of $log_file:" >&2
      tail -n 40 "$log_file" >&2 || true
      exit 1
    fi
    echo "test-faults: test host provisioned ($(grep -o 'playbook run took.*' "$log_file" || echo ready))"
  fi
  exec "$@"
fi

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
pytest_command=("$@")

started=$SECONDS
read -r -a targets <<<"${FAULTS_TARGETS:-compose vm}"
artifacts="${FAULTS_ARTIFACTS:-artifacts/faults}"
vm_container="${FAULTS_VM_CONTAINER:-channels-stack-faults-vm}"
vm_port="${FAULTS_VM_HTTP_PORT:-8093}"
vm_make=(make --no-print-directory "VM_CONTAINER=$vm_container" "VM_HTTP_PORT=$vm_port")
mkdir -p "$artifacts"
# Named after the test host, so two runs with other names do not share them.
status_file="$artifacts/$vm_container-provision.status"
log_file="$artifacts/$vm_container-provision.log"
rm -f "$status_file"

wants() {
  local target
  for target in "${targets[@]}"; do
    [ "$target" = "$1" ] && return 0
  done
  return 1
}

target_args=()
for target in "${targets[@]}"; do
  target_args+=(--target "$target")
done

provisioner=""
cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if [ -n "$provisioner" ]; then
    kill "$provisioner" 2>/dev/null || true
    wait "$provisioner" 2>/dev/null || true
  fi
  if wants vm && docker container inspect "$vm_container" >/dev/null 2>&1; then
    docker exec "$vm_container" journalctl --no-pager -o short-precise >"$artifacts/$vm_container-journal.txt" 2>&1 || true
    docker exec "$vm_container" sh -c 'tail -n +1 /var/log/channels-stack/*.log' \
      >"$artifacts/$vm_container-app-logs.txt" 2>&1 || true
    echo "test-faults: test host logs saved to $artifacts/$vm_container-{journal,app-logs}.txt; removing it"
    "${vm_make[@]}" vm-destroy || true
  fi
  echo "test-faults: took $((SECONDS - started)) s (exit status $status)"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if wants vm; then
  "${vm_make[@]}" vm-destroy
  echo "test-faults: provisioning the test host $vm_container (127.0.0.1:$vm_port) in the background"
  (
    set +o errexit
    start=$SECONDS
    "${vm_make[@]}" vm >"$log_file" 2>&1
    status=$?
    echo "playbook run took $((SECONDS - start)) s" >>"$log_file"
    echo "$status" >"$status_file"
  ) &
  provisioner=$!
fi

run_tests=(env "VM_CONTAINER=$vm_container" "VM_HTTP_PORT=$vm_port" "ARTIFACTS_DIR=$artifacts"
  "${pytest_command[@]}" tests/faults "${target_args[@]}")
wants vm || status_file=""
if wants compose; then
  E2E_COMPOSE_PROJECT="${FAULTS_COMPOSE_PROJECT:-channels-stack-faults}" E2E_HTTP_PORT="${FAULTS_HTTP_PORT:-8092}" \
    ARTIFACTS_DIR="$artifacts" \
    bash docker/test-compose.sh "${compose[@]}" -- \
    bash "$0" --await-vm "$status_file" "$log_file" -- "${run_tests[@]}"
else
  bash "$0" --await-vm "$status_file" "$log_file" -- "${run_tests[@]}"
fi
