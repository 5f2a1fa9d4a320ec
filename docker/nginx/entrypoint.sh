#!/usr/bin/env bash
# Entrypoint of the nginx container: Nginx, plus a watcher that reloads it when the addresses behind
# its upstream host names change, so `docker compose up --scale app=N` (or scaling back down) is
# served without a manual edit (issue 11, item 5). Nginx 1.22 resolves an upstream's `server` names
# only when it (re)loads its configuration; the `resolve` parameter is Nginx Plus, or open source from
# 1.27.3 (https://nginx.org/en/docs/http/ngx_http_upstream_module.html#resolve).
# UPSTREAM_WATCH_SECONDS (default 3): how often the names are resolved; 0 turns the watcher off.
set -o errexit -o pipefail -o nounset

interval="${UPSTREAM_WATCH_SECONDS:-3}"

# The host names the rendered upstreams name (`server HOST:PORT ...;` inside `upstream` blocks).
upstream_hosts() {
  nginx -T 2>/dev/null | awk '
    /^[[:space:]]*upstream[[:space:]]/ { inside = 1; next }
    inside && /^[[:space:]]*}/ { inside = 0; next }
    inside && $1 == "server" { split($2, part, ":"); print part[1] }' | sort -u
}

# Every address those names resolve to now, one per line, sorted.
upstream_addresses() {
  local host
  for host in "$@"; do
    getent ahostsv4 "$host" | awk '{ print $1 }' || true
  done | sort -u
}

watch_upstreams() {
  local hosts=() seen="" now
  while sleep "$interval"; do
    # Read once Nginx has a valid configuration (nginx -T fails while a name does not resolve).
    if [ "${#hosts[@]}" = 0 ]; then
      mapfile -t hosts < <(upstream_hosts)
      seen=$(upstream_addresses "${hosts[@]}")
      continue
    fi
    now=$(upstream_addresses "${hosts[@]}")
    # No answer at all (the app being recreated): keep the last set rather than fail every request.
    if [ -n "$now" ] && [ "$now" != "$seen" ]; then
      echo "upstream-watch: ${hosts[*]} now at $(echo "$now" | paste -sd ' '); reloading Nginx" >&2
      nginx -s reload && seen="$now"
    fi
  done
}

if [ "$interval" != 0 ]; then
  watch_upstreams &
fi
# Nginx stays PID 1: it gets the stop signal (SIGQUIT, graceful) and the watcher ends with the container.
exec nginx -g "daemon off;"
