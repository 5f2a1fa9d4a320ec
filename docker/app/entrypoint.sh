#!/usr/bin/env bash
# Entry point of the app image (under tini): make REDIS_URL (and DATABASE_URL on PostgreSQL), bring
# the database schema up to date, then become the command (supervisord), so it gets the signals.
set -o errexit -o pipefail -o nounset

# REDIS_URL is app_redis_url of the variables the image was rendered with (user, host, port and
# database from deploy/defaults.yml and docker/deploy-vars.yml) with REDIS_PASSWORD (.env) put in
# after the user, the way the VM's env file gets it (ansible/roles/app/vars/main.yml); one given in
# the environment wins.
if [ -z "${REDIS_URL:-}" ]; then
  : "${REDIS_PASSWORD:?is not set: .env holds it (make up creates .env)}"
  REDIS_URL=$(python - <<'PY'
import os, urllib.parse, yaml
url = urllib.parse.urlsplit(yaml.safe_load(open("/etc/channels-stack/deploy-vars.yml"))["app_redis_url"])
password = urllib.parse.quote(os.environ["REDIS_PASSWORD"], safe="")
netloc = f"{url.username or ''}:{password}@{url.netloc.rpartition('@')[2]}"
print(url._replace(netloc=netloc).geturl())
PY
  )
  export REDIS_URL
fi

# HTTPS (secure cookies, Django's redirect, HSTS) whenever the image's Nginx serves TLS (nginx_tls),
# with the HSTS max-age Nginx sends (nginx_hsts_max_age); values given in the environment win.
# Read with awk, not a second Python start (seconds on a loaded machine, within the healthcheck's
# start period): render.py --write-vars puts each top-level scalar on a line of its own.
deploy_var() {
  awk -v key="$1:" '$1 == key { print $2; found = 1 } END { exit !found }' /etc/channels-stack/deploy-vars.yml
}
if [ -z "${DJANGO_HTTPS:-}" ]; then
  case "$(deploy_var nginx_tls)" in
    true) DJANGO_HTTPS=1 ;;
    false) DJANGO_HTTPS=0 ;;
    *) echo "deploy-vars.yml: nginx_tls is not true or false" >&2; exit 64 ;;
  esac
  export DJANGO_HTTPS
fi
if [ -z "${DJANGO_HSTS_SECONDS:-}" ]; then
  DJANGO_HSTS_SECONDS=$(deploy_var nginx_hsts_max_age)
  export DJANGO_HSTS_SECONDS
fi

# The database: SQLite in the data volume, or PostgreSQL (the postgres profile's db service), whose
# DATABASE_URL is app_postgresql_url of the image's variables with POSTGRES_PASSWORD put in, like
# REDIS_URL above; one given in the environment wins.
case "${APP_DATABASE:-sqlite}" in
  sqlite) ;;
  postgresql)
    if [ -z "${DATABASE_URL:-}" ]; then
      : "${POSTGRES_PASSWORD:?is not set: .env holds it (make up adds one)}"
      DATABASE_URL=$(python - <<'PY'
import os, re, urllib.parse, yaml
url = yaml.safe_load(open("/etc/channels-stack/deploy-vars.yml"))["app_postgresql_url"]
password = urllib.parse.quote(os.environ["POSTGRES_PASSWORD"], safe="")
print(re.sub(r"^postgres://([^@/]*)@", lambda m: f"postgres://{m[1]}:{password}@", url))
PY
      )
      export DATABASE_URL
    fi
    ;;
  *)
    echo "APP_DATABASE=${APP_DATABASE}: expected sqlite or postgresql" >&2
    exit 64
    ;;
esac

# The project's settings module, deploy mode and extra environment (app_settings_module, deploy_mode,
# app_extra_environment),
# for migrate below and every program (supervisor's programs.conf sets them too), values given in the
# environment winning; and migrate's arguments (app_migrate_args, split like a shell's words). Read
# by Python: YAML may quote a value.
eval "$(python - <<'PY'
import os, shlex, yaml
variables = yaml.safe_load(open("/etc/channels-stack/deploy-vars.yml"))
environment = {
    "DJANGO_SETTINGS_MODULE": variables["app_settings_module"],
    "DEPLOY_MODE": variables["deploy_mode"],
    **variables["app_extra_environment"],
}
for key, value in environment.items():
    if key not in os.environ:
        print(f"export {key}={shlex.quote(str(value))}")
print("migrate_args=(" + " ".join(map(shlex.quote, shlex.split(variables["app_migrate_args"]))) + ")")
PY
)"

cd /srv/channels-stack/current/app
# The board's migrate takes a lock (replicas starting together, --scale app=3, migrate one at a time)
# and waits for a db service still starting rather than restart in a loop.
# shellcheck disable=SC2154 # set by the eval above
python manage.py migrate "${migrate_args[@]}"
exec "$@"
