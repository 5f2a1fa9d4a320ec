#!/usr/bin/env bash
# Makes sure a Docker engine answers: installs Debian's docker.io and compose when they are
# missing and starts dockerd in the background when no init system manages it (CI, this sandbox).
set -o errexit -o pipefail -o nounset

if ! command -v dockerd >/dev/null 2>&1; then
  echo "docker/engine.sh: installing Debian's docker.io and docker-compose" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io docker-compose >/dev/null
fi

if docker info >/dev/null 2>&1; then
  exit 0
fi

if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemctl start docker
else
  echo "docker/engine.sh: starting dockerd in the background (log: /var/log/dockerd.log)" >&2
  nohup dockerd >/var/log/dockerd.log 2>&1 &
fi

for _ in $(seq 1 60); do
  docker info >/dev/null 2>&1 && exit 0
  sleep 1
done
echo "docker/engine.sh: dockerd did not answer within 60 s; last log lines:" >&2
tail -n 20 /var/log/dockerd.log >&2 || true
exit 1
