#!/usr/bin/env bash
# The VM test tier: a fresh test host, the playbook's first run (timed), the VM tests (idempotent
# second run, testinfra, a new release, kills, a reboot), then the shared end-to-end suite through
# the host's Nginx. The host's journal and program logs go to artifacts/, and the host is removed
# at the end, also when a step fails or the run is interrupted.
# Usage: tests/vm/run.sh MAKE-COMMAND... -- PYTEST-COMMAND...   (ansible/vm.mk's test-vm target)
# Environment: VM_CONTAINER (default channels-stack-vm), ARTIFACTS_DIR (default artifacts).
set -o errexit -o pipefail -o nounset

make_command=()
while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do
  make_command+=("$1")
  shift
done
if [ "$#" -eq 0 ] || [ "${#make_command[@]}" -eq 0 ]; then
  echo "usage: $0 MAKE-COMMAND... -- PYTEST-COMMAND..." >&2
  exit 2
fi
shift
container="${VM_CONTAINER:-channels-stack-vm}"
artifacts="${ARTIFACTS_DIR:-artifacts}"
timings="$artifacts/vm-timings.txt"
mkdir -p "$artifacts"
: >"$timings"

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if docker container inspect "$container" >/dev/null 2>&1; then
    docker exec "$container" journalctl --no-pager >"$artifacts/vm-journal.txt" 2>&1 || true
    docker exec "$container" sh -c 'tail -n 200 /var/log/channels-stack/*.log /var/log/nginx/error.log' \
      >"$artifacts/vm-logs.txt" 2>&1 || true
    echo "test-vm: the host's journal and logs saved to $artifacts/vm-journal.txt and vm-logs.txt"
  fi
  "${make_command[@]}" vm-destroy
  cat "$timings"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Runs a step and records its wall time, also when it fails.
step() {
  local name=$1 started status=0
  shift
  started=$(date +%s)
  "$@" || status=$?
  echo "test-vm: $name took $(($(date +%s) - started)) s$([ "$status" -eq 0 ] || echo " (failed: $status)")" \
    | tee -a "$timings"
  return "$status"
}

# The app version under test: the checkout as it is now, whatever is edited while the tier runs.
export VM_APP_SOURCE=build/vm-source
rm -rf "$VM_APP_SOURCE"
mkdir -p "$VM_APP_SOURCE"
cp -a app requirements.txt "$VM_APP_SOURCE/"

"${make_command[@]}" vm-destroy
step "creating the test host" "${make_command[@]}" vm-host
step "the playbook's first run" "${make_command[@]}" vm-converge
step "the VM tests (second run, testinfra, new release, kills, reboot)" "$@" tests/vm
step "the end-to-end suite through the host's Nginx" "$@" tests/e2e --target vm
