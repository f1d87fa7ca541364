#!/usr/bin/env bash
# Prepare this machine for every tier: Docker engine (with the host fixes it
# needs), tox. Idempotent; safe to run again. Needs root for the Docker part on
# Debian hosts; elsewhere install Docker yourself and this only checks it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  "$here/docker-up.sh"
elif ! docker info >/dev/null 2>&1; then
  echo "bootstrap: Docker is not reachable; start it (Debian as root: scripts/docker-up.sh)" >&2
  exit 1
fi

py=${PYTHON:-python3}
if ! "$py" -m tox --version >/dev/null 2>&1; then
  echo "bootstrap: installing tox for $py" >&2
  "$py" -m pip install --quiet "tox==4.67.15"
fi
echo "bootstrap: ready ($("$py" -m tox --version | head -n1))" >&2
