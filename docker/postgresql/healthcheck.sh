#!/usr/bin/env bash
# Healthcheck of the db container: PostgreSQL accepts connections on its TCP port (the one the
# rendered settings name, postgresql_port), where the app connects; pg_isready needs no password.
set -o errexit -o pipefail -o nounset

port=$(awk '$1 == "port" { print $3 }' /etc/postgresql/*/main/conf.d/channels-stack.conf)
"$(echo /usr/lib/postgresql/*/bin)/pg_isready" --quiet --host=127.0.0.1 --port="$port"
