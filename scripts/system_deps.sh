#!/usr/bin/env bash
# What the tests need from Debian besides Python packages: Chromium for the admin console's
# browser tests (Playwright drives it; it never downloads a browser of its own) and
# docker-compose to validate the compose file offline (no engine needed). Installed once, by
# `make test`, so that a fresh machine needs nothing but the README's two commands.
set -euo pipefail

missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v docker-compose >/dev/null || missing+=(docker-compose)
((${#missing[@]} == 0)) && exit 0

sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
echo "installing Debian packages the tests need: ${missing[*]}"
"${sudo[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
  "${missing[@]}" >/dev/null
