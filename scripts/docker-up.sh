#!/usr/bin/env bash
# Idempotent Docker engine bootstrap for Debian hosts (our CI and dev VMs).
#
#   scripts/docker-up.sh           install docker.io if needed, apply host fixes
#                                  only where needed, start dockerd if none answers
#   scripts/docker-up.sh --undo    remove the runc wrapper runtime again
#
# Why the runtime fix: some VMs (Firecracker) lack CAP_SYS_RESOURCE in the
# capability bounding set. Docker 20.10 asks for every capability under
# --privileged, so kind nodes cannot start. We register a runc wrapper that drops
# the capabilities the host cannot grant (scripts/runc-nosr) as the default
# runtime. On hosts with a full bounding set nothing is changed.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
wrapper_dst=/usr/local/bin/runc-nosr
daemon_json=/etc/docker/daemon.json
log=/var/log/dockerd-harness.log

say() { printf 'docker-up: %s\n' "$*" >&2; }
need_root() { [ "$(id -u)" = 0 ] || { say "must run as root (or install Docker yourself)"; exit 1; }; }

docker_answers() { timeout 10 docker info >/dev/null 2>&1; }

host_lacks_caps() {
  # Any bit below CAP_LAST_CAP missing from CapBnd means --privileged breaks.
  local bnd last
  bnd=$((0x$(awk '/^CapBnd:/ {print $2}' /proc/self/status)))
  last=$(cat /proc/sys/kernel/cap_last_cap 2>/dev/null || echo 40)
  [ $(( bnd & ((1 << (last + 1)) - 1) )) -ne $(( (1 << (last + 1)) - 1 )) ]
}

write_daemon_json() {
  # Merge our runtime into an existing daemon.json rather than clobbering it.
  local want=$1 tmp
  mkdir -p /etc/docker
  [ -s "$daemon_json" ] || echo '{}' >"$daemon_json"
  tmp=$(mktemp)
  if [ "$want" = on ]; then
    jq --arg p "$wrapper_dst" '.runtimes.nosr = {path: $p} | ."default-runtime" = "nosr"' "$daemon_json" >"$tmp"
  else
    jq 'del(.runtimes.nosr) | if ."default-runtime" == "nosr" then del(."default-runtime") else . end
        | if .runtimes == {} then del(.runtimes) else . end' "$daemon_json" >"$tmp"
  fi
  if cmp -s "$tmp" "$daemon_json"; then rm -f "$tmp"; return 1; fi
  mv "$tmp" "$daemon_json"; chmod 0644 "$daemon_json"; return 0
}

start_dockerd() {
  say "starting dockerd (log: $log)"
  # setsid: the daemon must outlive the shell that started it.
  setsid nohup dockerd >>"$log" 2>&1 </dev/null &
  for _ in $(seq 1 60); do docker_answers && return 0; sleep 1; done
  say "dockerd did not answer within 60 s; last log lines:"; tail -n 30 "$log" >&2; exit 1
}

restart_dockerd() {
  local pid
  pid=$(pgrep -x dockerd || true)
  if [ -n "$pid" ]; then
    say "restarting dockerd to pick up $daemon_json"
    kill "$pid"; for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
  fi
  start_dockerd
}

need_root
if [ "${1:-}" = --undo ]; then
  if write_daemon_json off; then restart_dockerd; fi
  rm -f "$wrapper_dst"; say "runtime fix removed"; exit 0
fi

missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v jq >/dev/null || missing+=(jq)
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v zstd >/dev/null || missing+=(zstd)
# runc (compiled for the 1.35+ registry-less node images) needs cgo and libseccomp's static library.
command -v gcc >/dev/null || missing+=(gcc libc6-dev)
dpkg -s libseccomp-dev >/dev/null 2>&1 || missing+=(libseccomp-dev)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# kind nodes run a kubelet and many containers, each holding inotify instances;
# Debian's default of 128 makes pods fail with "too many open files".
for kv in fs.inotify.max_user_instances=512 fs.inotify.max_user_watches=524288; do
  key=${kv%=*} want=${kv#*=}
  have=$(sysctl -n "$key" 2>/dev/null || echo "$want")
  if [ "$have" -lt "$want" ]; then sysctl -qw "$key=$want" && say "raised $key $have -> $want"; fi
done

changed=1
if host_lacks_caps; then
  install -m 0755 "$here/runc-nosr" "$wrapper_dst.tmp" && mv "$wrapper_dst.tmp" "$wrapper_dst"
  if write_daemon_json on; then changed=0; say "host lacks capabilities: runc wrapper runtime 'nosr' registered"; fi
fi

if docker_answers; then
  [ $changed = 0 ] && restart_dockerd
else
  start_dockerd
fi
say "ready: $(docker version --format 'server {{.Server.Version}}, API {{.Server.APIVersion}}')"
