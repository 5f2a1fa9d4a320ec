#!/usr/bin/env bash
# Healthcheck of the redis container: PONG with the password, on the port the rendered settings name
# (deploy/redis/channels-stack.conf.j2, redis_port), so the port is not repeated in docker-compose.yml.
set -o errexit -o pipefail -o nounset

port=$(awk '$1 == "port" { print $2 }' /etc/redis/channels-stack.conf)
[ "$(REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli -p "$port" ping)" = PONG ]
