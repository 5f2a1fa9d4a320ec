#!/usr/bin/env bash
# Entry point of the redis image: refuse to start without a password, then run the command with
# it. redis-server replaces its process title, so the password does not show in `ps`.
set -o errexit -o pipefail -o nounset

if [ -z "${REDIS_PASSWORD:-}" ]; then
  echo "redis: REDIS_PASSWORD is empty; set it in .env (make up generates one)" >&2
  exit 64
fi
if [ "${1:-}" = "redis-server" ]; then
  set -- "$@" --requirepass "$REDIS_PASSWORD"
fi
exec "$@"
