#!/usr/bin/env bash
# Entry point of the db image (as the postgres user): Debian's cluster layout, the VM's, with its
# data directory in the volume. The first start makes the cluster there (initdb); every start makes
# sure the app's role and database exist with the password of .env (so a changed POSTGRES_PASSWORD
# takes effect), on a server that listens on its Unix socket only meanwhile; then becomes the command.
set -o errexit -o pipefail -o nounset

if [ -z "${POSTGRES_PASSWORD:-}" ]; then
  echo "db: POSTGRES_PASSWORD is empty; set it in .env (make up adds one)" >&2
  exit 64
fi
# Debian's settings of the cluster (postgresql_version in deploy/defaults.yml), with our conf.d and
# pg_hba.conf (deploy/postgresql/) rendered into it at build time.
conf=$(echo /etc/postgresql/*/main/postgresql.conf)
bin=$(echo /usr/lib/postgresql/*/bin)
data=$(awk -F"'" '$1 ~ /^data_directory/ { print $2 }' "$conf")
port=$(awk '$1 == "port" { print $3 }' "$(dirname "$conf")/conf.d/channels-stack.conf")
# The app's database and role: the ones pg_hba.conf lets in (postgresql_database, postgresql_user).
read -r database user < <(awk '$1 == "host" && $NF == "scram-sha-256" { print $2, $3; exit }' \
  "$(dirname "$conf")/pg_hba.conf")

if [ ! -s "$data/PG_VERSION" ]; then
  "$bin/initdb" --pgdata="$data" --username=postgres --encoding=UTF8 --locale=C.UTF-8 \
    --auth-local=peer --auth-host=scram-sha-256 >/dev/null
  # The settings are Debian's in /etc (config_file below), as on the VM; these copies would only mislead.
  rm -f "$data/postgresql.conf" "$data/pg_hba.conf" "$data/pg_ident.conf"
fi

"$bin/pg_ctl" --pgdata="$data" --silent --wait \
  --options="-c config_file=$conf -c listen_addresses=''" start
# psql's variables quote the names and the password (:"user", :'password'); nothing is pasted into SQL.
"$bin/psql" -XAtq -v ON_ERROR_STOP=1 -p "$port" -d postgres \
  -v user="$user" -v database="$database" -v password="$POSTGRES_PASSWORD" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN', :'user') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'user')
\gexec
ALTER ROLE :"user" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'password';
SELECT format('CREATE DATABASE %I OWNER %I ENCODING %L TEMPLATE template0', :'database', :'user', 'UTF8')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'database')
\gexec
SQL
"$bin/pg_ctl" --pgdata="$data" --silent --wait --mode=fast stop

if [ "${1:-}" = postgres ]; then
  shift
  set -- "$bin/postgres" -c "config_file=$conf" "$@"
fi
exec "$@"
