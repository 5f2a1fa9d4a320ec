#!/usr/bin/env bash
# Entry point of the app image (under tini): make REDIS_URL, bring the SQLite schema in the data
# volume up to date, then become the command (supervisord), so it gets the signals.
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

cd /srv/channels-stack/current/app
python manage.py migrate --noinput
exec "$@"
