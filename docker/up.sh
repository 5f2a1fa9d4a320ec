#!/usr/bin/env bash
# Builds the images, starts the stack and waits until every service is healthy; then prints the
# URL. On failure it names each service that is not healthy with its last log lines, and exits 1.
# Usage: docker/up.sh COMPOSE-COMMAND...   e.g. docker/up.sh docker-compose -p channels-stack
# Run from the repository root. TLS_DIR (default .tls/channels-stack) holds the site's certificate.
# UP_TIMEOUT (seconds, default 240) bounds the wait after `up`. APP_REPLICAS (default 1): how many
# app containers (`--scale app=N`; Nginx finds them by itself, docker/nginx/entrypoint.sh).
set -o errexit -o pipefail -o nounset

if [ "$#" -eq 0 ]; then
  echo "usage: $0 COMPOSE-COMMAND..." >&2
  exit 2
fi
compose=("$@")
timeout_s="${UP_TIMEOUT:-240}"
log_lines="${UP_LOG_LINES:-40}"

replicas="${APP_REPLICAS:-1}"
if ! [[ $replicas =~ ^[1-9][0-9]*$ ]]; then
  echo "APP_REPLICAS must be a whole number of app containers, 1 or more; got '$replicas'" >&2
  exit 2
fi

# Health of a service's containers: "healthy" when every one is, else the first other state
# (starting, unhealthy, exited, ...), or "missing" when it has none.
service_state() {
  local ids state
  mapfile -t ids < <("${compose[@]}" ps -q "$1" 2>/dev/null)
  if [ "${#ids[@]}" = 0 ] || [ -z "${ids[0]}" ]; then
    echo missing
    return
  fi
  for state in $(docker inspect --format '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "${ids[@]}"); do
    if [ "$state" != healthy ]; then
      echo "$state"
      return
    fi
  done
  echo healthy
}

report_failure() {
  local service state id
  echo "compose: the stack is not healthy:" >&2
  for service in "${services[@]}"; do
    state=$(service_state "$service")
    [ "$state" = healthy ] && continue
    echo >&2
    echo "=== service '$service' is $state" >&2
    id=$("${compose[@]}" ps -q "$service" 2>/dev/null | head -n 1)
    if [ -n "$id" ]; then
      docker inspect --format '{{json .State.Health}}' "$id" 2>/dev/null | python3 -c '
import json, sys
health = json.load(sys.stdin) or {}
for entry in (health.get("Log") or [])[-1:]:
    print("--- last healthcheck (exit %s):" % entry["ExitCode"])
    print(entry["Output"].strip())
' >&2 || true
      echo "--- last $log_lines log lines of '$service':" >&2
      "${compose[@]}" logs --no-color --tail "$log_lines" "$service" >&2 || true
    else
      echo "(no container: it waits for a dependency that never became healthy)" >&2
    fi
  done
  echo >&2
  echo "compose: see \`make logs\` and \`make ps\`; \`make down\` stops what started." >&2
}

# The services `up` starts: those with no `profiles:`, or one of COMPOSE_PROFILES. docker-compose
# v1.29's `config --services` lists every service whatever its profiles (v2's leaves the others out),
# so the rendered file's `profiles:` lists are read instead.
active_services() {
  "${compose[@]}" config | awk -v active=",${COMPOSE_PROFILES:-}," '
    /^services:/ { in_services = 1; next }
    /^[^ ]/ { in_services = 0 }
    !in_services { next }
    /^  [A-Za-z0-9_.-]+:$/ { service = substr($1, 1, length($1) - 1); order[++n] = service; keep[service] = 1; in_profiles = 0; next }
    /^    profiles:/ { in_profiles = 1; keep[service] = 0; next }
    in_profiles && /^ +- / { if (index(active, "," $2 ",")) keep[service] = 1; next }
    { in_profiles = 0 }
    END { for (i = 1; i <= n; i++) if (keep[order[i]]) print order[i] }'
}
mapfile -t services < <(active_services)

# The site's certificate, issued by the local CA (.tls/ca.pem: what clients trust) for the names the
# images are rendered with, into TLS_DIR, which docker-compose.yml mounts into Nginx; one still good
# is kept. (The key is 0644 inside the private directory: see docker-compose.yml.)
python3 deploy/local_ca.py issue --ca-dir .tls --out "${TLS_DIR:-.tls/channels-stack}" --key-mode 0644 \
  --vars docker/deploy-vars.yml --vars "${EXTRA_VARS:-docker/no-vars.yml}" >/dev/null

# The project the app image is built from (README "Use it for your project"): app_project_dir and
# app_requirements of the same variables, handed to docker-compose.yml's build arguments.
deploy_var() {
  python3 deploy/render.py --vars docker/deploy-vars.yml --vars "${EXTRA_VARS:-docker/no-vars.yml}" --get "$1"
}
APP_PROJECT_DIR=$(deploy_var app_project_dir)
APP_REQUIREMENTS=$(deploy_var app_requirements)
export APP_PROJECT_DIR APP_REQUIREMENTS

"${compose[@]}" build
# `up` itself waits for the dependencies' health (depends_on: service_healthy) and fails when one
# turns unhealthy; the loop below then reports which one.
up_ok=1
"${compose[@]}" up --detach --remove-orphans --scale "app=$replicas" || up_ok=0

deadline=$((SECONDS + timeout_s))
while :; do
  all_healthy=1
  failed=0
  for service in "${services[@]}"; do
    state=$(service_state "$service")
    case "$state" in
      healthy) ;;
      starting | running | created | restarting) all_healthy=0 ;;
      missing) all_healthy=0; [ "$up_ok" = 0 ] && failed=1 ;;
      *) all_healthy=0; failed=1 ;;
    esac
  done
  [ "$all_healthy" = 1 ] && break
  if [ "$failed" = 1 ] || [ "$SECONDS" -ge "$deadline" ]; then
    [ "$failed" = 0 ] && echo "compose: not healthy after ${timeout_s} s" >&2
    report_failure
    exit 1
  fi
  sleep 2
done

https_address=$("${compose[@]}" port nginx 443)
http_address=$("${compose[@]}" port nginx 80)
echo "compose: the stack is up and healthy ($replicas app container(s)): https://${https_address}/ (trust .tls/ca.pem; http://${http_address}/ redirects)"
