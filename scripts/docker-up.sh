#!/usr/bin/env bash
# Idempotent Docker engine bootstrap for Debian hosts (our CI and dev VMs).
#
#   scripts/docker-up.sh           install docker.io if needed, apply host fixes
#                                  only where needed, start Docker if it does not answer
#   scripts/docker-up.sh --force   also replace a default runtime other than runc
#   scripts/docker-up.sh --undo    revert every host change this script recorded
#
# Host changes, each made only where needed and each recorded (with the value it
# replaced) in the state file before it is made; --undo restores the recorded
# values and then deletes the record:
#   * the runc wrapper runtime `nosr` as Docker's default runtime (see below);
#   * fs.inotify.max_user_instances / max_user_watches raised for kind nodes.
# Packages it installs (docker.io, jq, debootstrap, zstd, gcc, libseccomp-dev) are recorded too, but
# --undo leaves them installed and names them.
#
# Why the runtime fix: some VMs (Firecracker) lack CAP_SYS_RESOURCE in the
# capability bounding set. Docker 20.10 asks for every capability under
# --privileged, so kind nodes cannot start. We register a runc wrapper that drops
# the capabilities the host cannot grant (scripts/runc-nosr) as the default
# runtime. On hosts with a full bounding set nothing is changed. kind has no
# option to choose the runtime of its node containers, so the wrapper cannot be
# limited to them: it is the default for every container of this daemon. It is a
# pass-through for the rest: it only removes, from the spec of `create`/`run`
# (--bundle) and of `exec --process`, capabilities the host cannot grant anyway,
# and hands every call to runc otherwise unchanged.
#
# A default runtime other than runc (e.g. nvidia) is not replaced unless --force
# is given; --undo then puts it back. Docker is restarted the way the host runs
# it: `systemctl restart docker` when systemd is PID 1 and docker.service is
# active, else a dockerd this script starts with setsid. With more than one
# dockerd running the script refuses before changing anything.
#
# Testing: DOCKER_UP_ROOT prefixes every host path (daemon.json, the wrapper, the
# state file, the dockerd log, /proc); DOCKER_UP_STATE and DOCKER_UP_PROC override
# the state file and /proc alone. Commands are taken from PATH.
#
# shellcheck disable=SC2016  # $names in single quotes are jq variables
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=${DOCKER_UP_ROOT:-}
proc=${DOCKER_UP_PROC:-$root/proc}
wrapper_dst=$root/usr/local/bin/runc-nosr
daemon_json=$root/etc/docker/daemon.json
state_file=${DOCKER_UP_STATE:-$root/var/lib/mlflow-crd-harness/docker-up.json}
log=$root/var/log/dockerd-harness.log
inotify=(fs.inotify.max_user_instances=512 fs.inotify.max_user_watches=524288)

say() { printf 'docker-up: %s\n' "$*" >&2; }
die() { say "$@"; exit 1; }
usage() { sed -n '4,7s/^# \{0,3\}//p' "$0"; }
need_root() { [ "$(id -u)" = 0 ] || die "must run as root (or install Docker yourself)"; }

mode=up force=0
for arg in "$@"; do
  case $arg in
    --undo) mode=undo ;;
    --force) force=1 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done

docker_answers() { timeout 10 docker info >/dev/null 2>&1; }
dockerd_pids() { pgrep -x dockerd || true; }

refuse_several_dockerd() {
  local pids
  mapfile -t pids < <(dockerd_pids)
  [ ${#pids[@]} -le 1 ] && return 0
  die "${#pids[@]} dockerd processes are running (pids ${pids[*]}); nothing was changed.
  This script restarts Docker to apply $daemon_json and cannot tell which of them to restart.
  Stop the extra daemon(s), keeping the one that serves /var/run/docker.sock, then rerun."
}

host_lacks_caps() {
  # Any bit below CAP_LAST_CAP missing from CapBnd means --privileged breaks.
  local bnd last
  bnd=$((0x$(awk '/^CapBnd:/ {print $2}' "$proc/self/status")))
  last=$(cat "$proc/sys/kernel/cap_last_cap" 2>/dev/null || echo 40)
  [ $(( bnd & ((1 << (last + 1)) - 1) )) -ne $(( (1 << (last + 1)) - 1 )) ]
}

# --- the record ---------------------------------------------------------------

state_update() {
  # state_update [jq options] FILTER: rewrite the record atomically.
  local tmp
  mkdir -p "$(dirname "$state_file")"
  [ -s "$state_file" ] || printf '{"version": 1}\n' >"$state_file"
  tmp=$(mktemp "$state_file.XXXXXX")
  if ! jq "$@" "$state_file" >"$tmp"; then rm -f "$tmp"; die "cannot update $state_file"; fi
  mv "$tmp" "$state_file"
}

state_get() {
  # state_get [-r] FILTER: FILTER's output on the record (compact JSON, or raw
  # strings with -r); nothing if there is no record or FILTER yields null.
  local out=-c
  if [ "$1" = -r ]; then out=-r; shift; fi
  [ -s "$state_file" ] || return 0
  jq "$out" "($1) // empty" "$state_file" || die "$state_file is not valid JSON; fix or remove it"
}

same_json() { [ "$(jq -n --argjson a "$1" --argjson b "$2" '$a == $b')" = true ]; }

# --- daemon.json ----------------------------------------------------------------

read_daemon_json() {
  if [ -s "$daemon_json" ]; then
    jq -c . "$daemon_json" || die "$daemon_json is not valid JSON; fix it, then rerun"
  else
    echo '{}'
  fi
}

record_daemon_json() {
  # Record the keys we are about to change, once: a later run sees our own values.
  # A daemon.json already pointing at nosr without a record was written by an
  # older version of this script, which kept nothing; then "absent" is recorded.
  [ -z "$(state_get .daemon_json)" ] || return 0
  local existed=false
  [ -e "$daemon_json" ] && existed=true
  state_update --argjson existed "$existed" --argjson cur "$(read_daemon_json)" '
    ($cur."default-runtime" == "nosr") as $ours
    | .daemon_json = {
        existed: (if $ours then ($cur | del(.runtimes.nosr, ."default-runtime")
                                      | if .runtimes == {} then del(.runtimes) else . end) != {}
                  else $existed end),
        default_runtime: (if $ours then null else $cur."default-runtime" end),
        runtimes_existed: (if $ours then (($cur.runtimes // {}) | del(.nosr)) != {}
                           else ($cur | has("runtimes")) end),
        nosr_runtime: (if $ours then null else $cur.runtimes.nosr end)
      }'
}

put_daemon_json() {
  # put_daemon_json JSON: write it if it differs in content; return 1 if unchanged.
  local want=$1 tmp
  if [ -e "$daemon_json" ] && same_json "$want" "$(read_daemon_json)"; then return 1; fi
  mkdir -p "$(dirname "$daemon_json")"
  tmp=$(mktemp "$daemon_json.XXXXXX")
  jq . <<<"$want" >"$tmp"
  chmod 0644 "$tmp"; mv "$tmp" "$daemon_json"
}

daemon_json_with_nosr() {
  read_daemon_json | jq -c --arg p "$wrapper_dst" '.runtimes.nosr = {path: $p} | ."default-runtime" = "nosr"'
}

daemon_json_restored() {
  # $1: the record's daemon_json entry. Only our keys are reverted, and only
  # while they still hold our values; everything else in the file is kept.
  read_daemon_json | jq -c --argjson rec "$1" '
    del(.runtimes.nosr)
    | (if $rec.nosr_runtime != null then .runtimes.nosr = $rec.nosr_runtime else . end)
    | (if ."default-runtime" == "nosr" then
         (if $rec.default_runtime != null then ."default-runtime" = $rec.default_runtime
          else del(."default-runtime") end)
       else . end)
    | (if .runtimes == {} and ($rec.runtimes_existed | not) then del(.runtimes) else . end)'
}

# --- starting and restarting Docker ---------------------------------------------

pid1_is_systemd() { [ "$(cat "$proc/1/comm" 2>/dev/null || true)" = systemd ]; }
systemd_runs_docker() { pid1_is_systemd && systemctl is-active --quiet docker.service; }
systemd_knows_docker() { pid1_is_systemd && systemctl cat docker.service >/dev/null 2>&1; }

wait_docker() {
  # wait_docker HINT: HINT is "log" (show our dockerd log) or where to look.
  for _ in $(seq 1 60); do docker_answers && return 0; sleep 1; done
  if [ "$1" = log ]; then
    say "dockerd did not answer within 60 s; last lines of $log:"; tail -n 30 "$log" >&2 || true
  else
    say "Docker did not answer within 60 s; $1"
  fi
  exit 1
}

start_own_dockerd() {
  say "starting dockerd (log: $log)"
  mkdir -p "$(dirname "$log")"
  # setsid: the daemon must outlive the shell that started it.
  setsid nohup dockerd >>"$log" 2>&1 </dev/null &
  wait_docker log
}

start_docker() {
  if systemd_knows_docker; then
    say "starting docker.service"
    systemctl start docker.service
    wait_docker "see journalctl -u docker.service"
  else
    start_own_dockerd
  fi
}

restart_docker() {
  if systemd_runs_docker; then
    say "restarting docker.service to pick up $daemon_json"
    systemctl restart docker.service
    wait_docker "see journalctl -u docker.service"
    return 0
  fi
  local pids pid
  mapfile -t pids < <(dockerd_pids)
  [ ${#pids[@]} -le 1 ] || die "${#pids[@]} dockerd processes are running (pids ${pids[*]}); restart Docker yourself"
  if [ ${#pids[@]} = 1 ]; then
    pid=${pids[0]}
    say "restarting dockerd (pid $pid) to pick up $daemon_json"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    ! kill -0 "$pid" 2>/dev/null || die "dockerd (pid $pid) did not exit within 30 s; not starting a second one"
  fi
  start_own_dockerd
}

# --- inotify limits -------------------------------------------------------------

# kind nodes run a kubelet and many containers, each holding inotify instances;
# Debian's default of 128 makes pods fail with "too many open files".
raise_sysctls() {
  local kv key want have file
  for kv in "${inotify[@]}"; do
    key=${kv%=*} want=${kv#*=} file=$proc/sys/${key//.//}
    have=$(cat "$file" 2>/dev/null) || { say "cannot read $key; left as it is"; continue; }
    [ "$have" -lt "$want" ] || continue
    [ -n "$(state_get ".sysctl[\"$key\"]")" ] ||
      state_update --arg k "$key" --arg was "$have" --arg set "$want" '.sysctl[$k] = {was: $was, set: $set}'
    if { printf '%s\n' "$want" >"$file"; } 2>/dev/null; then
      say "raised $key $have -> $want"
    else
      say "could not raise $key ($have); kind pods may fail with 'too many open files'"
    fi
  done
}

restore_sysctls() {
  local key was set have file
  while IFS=$'\t' read -r key was set; do
    [ -n "$key" ] || continue
    file=$proc/sys/${key//.//}
    have=$(cat "$file" 2>/dev/null || true)
    if [ "$have" = "$set" ]; then
      { printf '%s\n' "$was" >"$file"; } 2>/dev/null || die "cannot restore $key to $was; the record is kept"
      say "restored $key $have -> $was"
    else
      say "left $key at ${have:-?}: it was changed after docker-up.sh set $set"
    fi
    state_update --arg k "$key" 'del(.sysctl[$k])'
  done < <(state_get -r '.sysctl // {} | to_entries[] | [.key, .value.was, .value.set] | @tsv')
}

# --- modes ----------------------------------------------------------------------

up() {
  need_root
  refuse_several_dockerd

  local missing=()
  command -v dockerd >/dev/null || missing+=(docker.io)
  command -v jq >/dev/null || missing+=(jq)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  command -v zstd >/dev/null || missing+=(zstd)
  # runc, compiled for the 1.35+ registry-less node images, needs cgo and libseccomp's static library.
  command -v gcc >/dev/null || missing+=(gcc libc6-dev)
  dpkg -s libseccomp-dev >/dev/null 2>&1 || missing+=(libseccomp-dev)
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    state_update --arg p "${missing[*]}" '.packages_installed = ((.packages_installed // []) + ($p | split(" ")) | unique)'
  fi

  local need_wrapper=0 current
  if host_lacks_caps; then
    need_wrapper=1
    current=$(read_daemon_json | jq -r '."default-runtime" // empty')
    case $current in
      ''|runc|nosr) ;;
      *) [ $force = 1 ] || die "$daemon_json sets default-runtime \"$current\"; nothing was changed.
  This host lacks capabilities that --privileged containers (kind nodes) request, so they
  need the wrapper runtime nosr as the default runtime. nosr hands over to plain runc,
  so containers would stop getting \"$current\" by default.
  Rerun with --force to replace it anyway (recorded: --undo puts \"$current\" back),
  or run kind on a host whose capability bounding set is complete." ;;
    esac
  fi

  raise_sysctls

  local changed=1
  if [ $need_wrapper = 1 ]; then
    record_daemon_json
    state_update --arg w "$wrapper_dst" '.wrapper = $w'
    mkdir -p "$(dirname "$wrapper_dst")"
    install -m 0755 "$here/runc-nosr" "$wrapper_dst.tmp" && mv "$wrapper_dst.tmp" "$wrapper_dst"
    if put_daemon_json "$(daemon_json_with_nosr)"; then
      changed=0; say "host lacks capabilities: runc wrapper runtime 'nosr' registered as the default runtime"
    fi
  fi

  if docker_answers; then
    [ $changed = 1 ] || restart_docker
  else
    start_docker
  fi
  say "ready: $(docker version --format 'server {{.Server.Version}}, API {{.Server.APIVersion}}')"
}

blocking_containers() {
  # Running containers that --undo would break: those on the nosr runtime and,
  # when the inotify limits are to be lowered again, kind nodes.
  local ids sysctls=$1
  ids=$(docker ps -q) || die "docker ps failed; nothing was changed"
  [ -n "$ids" ] || return 0
  local -a idv; mapfile -t idv <<<"$ids"
  docker inspect --format '{{.Name}}|{{.HostConfig.Runtime}}|{{index .Config.Labels "io.x-k8s.kind.cluster"}}|{{index .Config.Labels "io.mlflow-crd-harness.registry"}}' "${idv[@]}" |
    while IFS='|' read -r name runtime cluster registry; do
      name=${name#/}
      [ "$cluster" = '<no value>' ] && cluster=
      [ "$registry" = '<no value>' ] && registry=
      if [ "$runtime" = nosr ] || { [ "$sysctls" = 1 ] && [ -n "$cluster" ]; }; then
        if [ -n "$cluster" ]; then
          printf '  %s (kind cluster %s): kind delete cluster --name %s\n' "$name" "$cluster" "$cluster"
        elif [ -n "$registry" ] || [ "$name" = harness-registry ]; then
          printf '  %s (harness registry): python -m harness registry down\n' "$name"
        else
          printf '  %s: docker stop %s\n' "$name" "$name"
        fi
      fi
    done
}

undo() {
  need_root
  command -v jq >/dev/null || die "jq is needed for --undo (apt-get install jq)"
  local rec sysctls=0 blockers
  rec=$(state_get .daemon_json)
  # Without a record (older versions kept none) revert what they did: nosr removed.
  [ -n "$rec" ] || rec='{"existed": true, "default_runtime": null, "runtimes_existed": false, "nosr_runtime": null}'
  [ -z "$(state_get '.sysctl | select(. != {})')" ] || sysctls=1

  local want delete=0 daemon_change=0
  want=$(daemon_json_restored "$rec")
  if [ -e "$daemon_json" ]; then
    if [ "$(jq -r '.existed' <<<"$rec")" = false ] && [ "$want" = '{}' ]; then
      delete=1 daemon_change=1
    elif ! same_json "$want" "$(read_daemon_json)"; then
      daemon_change=1
    fi
  fi

  if docker_answers; then
    blockers=$(blocking_containers "$sysctls") || die "cannot list the running containers; nothing was changed"
    [ -z "$blockers" ] || die "--undo refused, nothing was changed: these running containers need what it would remove
  (the nosr runtime, or for kind nodes the raised inotify limits). Stop them first, then rerun --undo:
$blockers"
  elif [ -n "$(dockerd_pids)" ] && { [ $daemon_change = 1 ] || [ $sysctls = 1 ]; }; then
    die "dockerd is running but does not answer, so the containers using nosr cannot be listed; nothing was changed"
  fi

  if [ $daemon_change = 1 ]; then
    refuse_several_dockerd
    if [ $delete = 1 ]; then
      rm -f "$daemon_json"; say "removed $daemon_json (it did not exist before docker-up.sh)"
    else
      put_daemon_json "$want" || true; say "restored $daemon_json"
    fi
    if docker_answers; then restart_docker
    else say "Docker is not running; it uses the restored $daemon_json when it next starts"; fi
  fi

  local wrapper
  wrapper=$(state_get -r .wrapper)
  wrapper=${wrapper:-$wrapper_dst}
  if [ -e "$wrapper" ]; then rm -f "$wrapper"; say "removed $wrapper"; fi
  [ ! -s "$state_file" ] || state_update 'del(.daemon_json, .wrapper)'

  restore_sysctls

  local pkgs
  pkgs=$(state_get -r '.packages_installed // [] | join(" ")')
  [ -z "$pkgs" ] || say "left installed (installed by docker-up.sh): $pkgs; apt-get remove them if unwanted"

  if [ -e "$state_file" ]; then
    rm -f "$state_file"; rmdir "$(dirname "$state_file")" 2>/dev/null || true
  fi
  say "host changes undone"
}

if [ $mode = undo ]; then undo; else up; fi
