#!/usr/bin/env bash
# What the tests need from Debian besides Python packages: Chromium for the admin console's
# browser tests (Playwright drives it; it never downloads a browser of its own),
# docker-compose to validate the compose file offline (no engine needed), promtool (Debian's
# prometheus package) to check monitoring/alerts.yml, and pgbouncer for the tests and the drill
# that run traffic through a pooler in transaction mode; HAProxy, the edge in front of loyalty
# that `make run` starts (common/processes/edge). Installed once, by `make test`, `make bench`
# and (HAProxy alone: `system_deps.sh haproxy`) `make run`, so that a fresh machine needs
# nothing but the README's two commands.
set -euo pipefail

missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v docker-compose >/dev/null || missing+=(docker-compose)
command -v promtool >/dev/null || missing+=(prometheus)
command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ] || missing+=(pgbouncer)
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
if (($# > 0)); then  # only the packages named
  wanted=()
  for package in "${missing[@]}"; do
    [[ " $* " == *" $package "* ]] && wanted+=("$package")
  done
  missing=("${wanted[@]}")
fi
((${#missing[@]} == 0)) && exit 0

sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
echo "installing Debian packages the tests need: ${missing[*]}"
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
  "${missing[@]}" >/dev/null
