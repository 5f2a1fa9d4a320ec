#!/usr/bin/env bash
# Healthcheck of the redis container: PONG for the app's ACL user with the password, on the port the
# rendered settings name (deploy/redis/channels-stack.conf.j2, redis_port) and as the user the
# rendered ACL names (app-user.acl.j2), so neither is repeated in docker-compose.yml. Redis'
# default user is off: a check without a user name would get NOAUTH.
set -o errexit -o pipefail -o nounset

port=$(awk '$1 == "port" { print $2 }' /etc/redis/channels-stack.conf)
user=$(awk '$1 == "user" { print $2 }' /etc/redis/channels-stack-app-user.acl)
[ "$(REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli -p "$port" --user "$user" ping)" = PONG ]
