#!/usr/bin/env bash
# Prepare this machine for every tier: Docker engine (with the host fixes it
# needs), tox (scripts/tox: a private venv, PEP 668-safe). Idempotent; safe to run again. Needs root for the Docker part on
# Debian hosts; elsewhere install Docker yourself and this only checks it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  "$here/docker-up.sh"
elif ! docker info >/dev/null 2>&1; then
  echo "bootstrap: Docker is not reachable; start it (Debian as root: scripts/docker-up.sh)" >&2
  exit 1
fi

# The pages tier's headless browser (tox -e pages): Debian's chromium and the chromedriver of the same
# build, so they always match. Not for scripts/run-e2e (--no-browser): the e2e tier needs no browser.
if [ "${1:-}" != "--no-browser" ] && ! { command -v chromium && command -v chromedriver; } >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "bootstrap: installing chromium + chromium-driver (the pages tier's headless browser)" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
  else
    echo "bootstrap: chromium/chromedriver missing: tox -e pages will fail until they are installed" \
         "(Debian, as root: apt-get install chromium chromium-driver)" >&2
  fi
fi

# tox + tox-uv in a private venv (scripts/tox): no pip install into a system Python.
echo "bootstrap: ready ($("$here/tox" --version | head -n1))" >&2
