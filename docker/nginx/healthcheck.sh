#!/usr/bin/env bash
# Healthcheck of the nginx container: the site answers /healthz with 200 through Nginx, i.e. what a
# user gets. Bash's /dev/tcp, so the image needs no HTTP client.
set -o errexit -o pipefail -o nounset

exec 3<>/dev/tcp/127.0.0.1/80
printf 'GET /healthz HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n' >&3
IFS= read -r -t 5 status <&3
[[ $status == "HTTP/1."[01]" 200 "* ]]
