#!/usr/bin/env bash
# Entry point of the app image (under tini): bring the SQLite schema in the data volume up to date,
# then become the command (supervisord), so it gets the signals.
set -o errexit -o pipefail -o nounset

cd /srv/channels-stack/current/app
python manage.py migrate --noinput
exec "$@"
