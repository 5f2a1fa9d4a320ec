#!/usr/bin/env bash
# Healthcheck of the nginx container: the site answers the app's health path (app_health_path of the
# image's deploy variables, /healthz by default) with 200 through Nginx, i.e. what a user gets.
# Bash's /dev/tcp, so the image needs no HTTP client.
set -o errexit -o pipefail -o nounset

# render.py --write-vars puts each top-level scalar on a line of its own.
path=$(awk '$1 == "app_health_path:" { print $2 }' /etc/channels-stack/deploy-vars.yml)
if [ -z "$path" ]; then
  echo "nginx-healthcheck: no app_health_path in /etc/channels-stack/deploy-vars.yml" >&2
  exit 1
fi
exec 3<>/dev/tcp/127.0.0.1/80
printf 'GET %s HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n' "$path" >&3
IFS= read -r -t 5 status <&3
[[ $status == "HTTP/1."[01]" 200 "* ]]
