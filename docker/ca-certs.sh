#!/usr/bin/env bash
# Fills docker/ca-certificates/ (git-ignored), the extra CAs the image builder stage trusts so that
# pip can verify its index behind a TLS-intercepting proxy. See docker/ca-certificates/README.md.
#   EXTRA_CA_CERTS=FILE   that PEM file (one or more certificates)
#   EXTRA_CA_CERTS=none   leave the folder as it is (certificates put there by hand)
#   unset                 the host's bundle, /etc/ssl/certs/ca-certificates.crt, when it exists
set -o errexit -o pipefail -o nounset

dir="$(dirname "$0")/ca-certificates"
target="$dir/extra.crt"
source_file="${EXTRA_CA_CERTS:-/etc/ssl/certs/ca-certificates.crt}"

if [ "$source_file" = "none" ]; then
  exit 0
fi
if [ ! -r "$source_file" ]; then
  if [ -n "${EXTRA_CA_CERTS:-}" ]; then
    echo "ca-certs: EXTRA_CA_CERTS=$EXTRA_CA_CERTS is not a readable file" >&2
    exit 1
  fi
  rm -f "$target"
  exit 0
fi
# Copy only on change: an unchanged file keeps Docker's layer cache (and the venv layer) valid.
if ! cmp -s "$source_file" "$target"; then
  cp "$source_file" "$target"
  echo "ca-certs: image builds trust the CAs in $source_file"
fi
