#!/usr/bin/env bash
# Entry point of the redis image: refuse to start without a password, then run the command with the
# app's ACL user (the rendered deploy/redis/app-user.acl.j2, the VM's rules) given that password.
# redis-server replaces its process title, so the password does not show in `ps`.
set -o errexit -o pipefail -o nounset

acl=/etc/redis/channels-stack-app-user.acl
if [ -z "${REDIS_PASSWORD:-}" ]; then
  echo "redis: REDIS_PASSWORD is empty; set it in .env (make up generates one)" >&2
  exit 64
fi
if [ "${1:-}" = "redis-server" ]; then
  rule=$(grep '^user ' "$acl") || { echo "redis: no 'user' line in $acl" >&2; exit 78; }
  read -ra words <<<"${rule#user }"
  set -- "$@" --user "${words[@]}" ">$REDIS_PASSWORD"
fi
exec "$@"
