#!/usr/bin/env bash
# Makes sure the base image debian:bookworm-slim exists locally. Order: already present, then
# `docker pull`, then (hosts that reach no container registry) build it with debootstrap from the
# Debian mirror apt already uses and `docker import` it under the same tag.
set -o errexit -o pipefail -o nounset

image="${BASE_IMAGE:-debian:bookworm-slim}"

if docker image inspect "$image" >/dev/null 2>&1; then
  exit 0
fi
if timeout 60 docker pull "$image" >/dev/null 2>&1; then
  echo "base image: pulled $image" >&2
  exit 0
fi

echo "base image: $image is neither present nor pullable; building it locally with debootstrap" >&2
if ! command -v debootstrap >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi

# The mirror apt already uses here (deb822 or one-line sources), so no outside host is assumed.
mirror="${DEBIAN_MIRROR:-}"
if [ -z "$mirror" ]; then
  mirror=$(grep -rhoE '^(URIs:[[:space:]]*|deb[[:space:]]+)https?://[^[:space:]]+/debian/?' \
             /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null \
           | grep -oE 'https?://[^[:space:]]+' | head -n 1 || true)
fi
mirror="${mirror:-http://deb.debian.org/debian}"

rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >/dev/null
# Slim images carry no apt lists or caches; the builds run apt-get update themselves.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin
tar -C "$rootfs" -c . | docker import -c 'CMD ["bash"]' - "$image" >/dev/null
echo "base image: built $image from $mirror" >&2
