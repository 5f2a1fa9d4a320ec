#!/usr/bin/env bash
# Makes the compose stack's .env on first use and leaves an existing one alone (the user may have
# edited it). The secrets are random and never committed (.env is git-ignored).
# Usage: docker/env.sh [PATH]   (default: .env in the current directory)
set -o errexit -o pipefail -o nounset

env_file="${1:-.env}"

random() {
  python3 -c 'import secrets; print(secrets.token_urlsafe(48))'
}

if [ -e "$env_file" ]; then
  # A .env made before the PostgreSQL option gets its password added; nothing else is touched.
  if ! grep -q '^POSTGRES_PASSWORD=' "$env_file"; then
    printf '# Password of the app'"'"'s PostgreSQL role (the postgres profile), added by make up.\nPOSTGRES_PASSWORD=%s\n' \
      "$(random)" >>"$env_file"
    echo "compose: added a random POSTGRES_PASSWORD to $env_file"
  fi
  echo "compose: reusing $env_file"
  exit 0
fi

umask 077
tmp="$env_file.tmp.$$"
cat >"$tmp" <<ENV
# Settings of the compose staging stack, made by \`make up\` on $(date -u +%Y-%m-%dT%H:%M:%SZ).
# Edit freely; \`make up\` never overwrites this file. Never commit it (git-ignored).
# KEY=VALUE lines without quotes: the same format as the VM's EnvironmentFile.

# Ports on 127.0.0.1 where Nginx answers: HTTPS (trust .tls/ca.pem), and plain HTTP, which redirects
# to it except the health probes.
HTTPS_PORT=8443
HTTP_PORT=8080
# Django's signing key: random, secret.
DJANGO_SECRET_KEY=$(random)
# Password Redis requires (the app's REDIS_URL is made from it in docker-compose.yml).
REDIS_PASSWORD=$(random)
# Password of the app's PostgreSQL role (the postgres profile: make up DATABASE=postgresql).
POSTGRES_PASSWORD=$(random)
# Host names the site answers (comma list; '*' is refused). Keep localhost and 127.0.0.1: Nginx's
# server_name (deploy/defaults.yml nginx_server_names) and the healthchecks use them.
DJANGO_ALLOWED_HOSTS=localhost,127.0.0.1
DJANGO_DEBUG=0
ENV
mv "$tmp" "$env_file"
echo "compose: created $env_file with a new random DJANGO_SECRET_KEY, REDIS_PASSWORD and POSTGRES_PASSWORD"
