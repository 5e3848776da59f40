#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Makes sure a Docker engine answers, and that it can run kind's node containers. Idempotent;
# prints nothing on stdout. Used by hack/docker-build.sh and hack/kind-up.sh.
# `hack/docker-engine.sh stop` stops the dockerd it started (the test session does, at its end,
# when no engine ran before it).
#
#   1. no `docker` client or no `dockerd`: install docker.io from Debian (root only);
#   2. no engine answers: start dockerd in the background (log in the cache);
#   3. kind runs its node as `docker run --privileged`, which asks for every capability in the
#      bounding set. Some VMs (these machines among them) lack CAP_SYS_RESOURCE there, and runc
#      then fails with "unable to apply caps: operation not permitted". On such a host dockerd is
#      started with a default runtime that wraps runc and drops that one capability from each
#      container spec (hack/docker/runc-without-sys-resource). A host with the full bounding set
#      (a normal laptop or CI runner) gets a plain dockerd: nothing is changed there.
#
# Environment: KUBEFERRY_CACHE (default ~/.cache/kubeferry).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
prog=docker-engine
# shellcheck source=lib.sh
source "$here/lib.sh"

runtime_name=kubeferry-runc
state="$cache/docker"
pidfile="$state/dockerd.pid"

# CAP_SYS_RESOURCE is capability 24.
lacks_sys_resource() {
  local bnd
  bnd="$(awk '/^CapBnd:/ { print $2 }' /proc/self/status)"
  (( (0x$bnd >> 24 & 1) == 0 ))
}

install_runtime() {
  local real
  real="$(command -v runc || true)"
  [[ -n "$real" ]] || die "runc not found (it comes with docker.io)"
  command -v jq >/dev/null 2>&1 || apt_install jq
  mkdir -p "$state"
  # The wrapper is copied (not linked) so that dockerd never runs a file inside a checkout that
  # may be deleted; it is rewritten on every call, so an update of the script takes effect.
  sed "s|@RUNC@|$real|" "$here/docker/runc-without-sys-resource" >"$state/$runtime_name.tmp"
  chmod 0755 "$state/$runtime_name.tmp"
  mv -f "$state/$runtime_name.tmp" "$state/$runtime_name"
}

start_dockerd() {
  is_root || die "no Docker engine answers; start one (sudo systemctl start docker)"
  local args=() logfile="$state/dockerd.log"
  mkdir -p "$state"
  if lacks_sys_resource; then
    install_runtime
    args+=(--add-runtime "$runtime_name=$state/$runtime_name" --default-runtime "$runtime_name")
    log "this host's capability bounding set lacks CAP_SYS_RESOURCE: dockerd runs containers through $state/$runtime_name"
  fi
  log "starting dockerd in the background (log: $logfile)"
  # setsid: the daemon outlives this script and is not killed with its process group. Every
  # inherited descriptor above 2 is closed first: run under `flock /tmp/kubeferry-heavy.lock`,
  # this script holds the lock's descriptor, and a daemon keeping it would hold the lock forever.
  (
    for fd in /proc/"$BASHPID"/fd/*; do
      fd="${fd##*/}"
      if [[ "$fd" -gt 2 ]]; then eval "exec $fd>&-" 2>/dev/null || true; fi
    done
    exec setsid dockerd --pidfile "$pidfile" "${args[@]}" >"$logfile" 2>&1 </dev/null
  ) &
  # Who asked for it (KUBEFERRY_ENGINE_OWNER, e.g. a test session): `stop` with an owner set
  # stops only a daemon that owner started, not one another run started meanwhile.
  printf '%s\n' "${KUBEFERRY_ENGINE_OWNER:-}" >"$state/dockerd.owner"
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && return 0
    sleep 1
  done
  die "dockerd did not answer within 60 s; see $logfile"
}

# `docker-engine.sh stop`: stops the dockerd this script started (its pidfile), nothing else.
stop_ours() {
  local pid
  [[ -s "$pidfile" ]] || return 0
  pid="$(cat "$pidfile")"
  [[ "$pid" == "$(pgrep -xo dockerd || true)" ]] || return 0
  if [[ -n "${KUBEFERRY_ENGINE_OWNER:-}" \
        && "$(cat "$state/dockerd.owner" 2>/dev/null || true)" != "$KUBEFERRY_ENGINE_OWNER" ]]; then
    log "not stopping dockerd (pid $pid): another run started it, not $KUBEFERRY_ENGINE_OWNER"
    return 0
  fi
  log "stopping the dockerd started by $0 (pid $pid)"
  kill "$pid"
  for _ in $(seq 1 30); do kill -0 "$pid" 2>/dev/null || return 0; sleep 1; done
  die "dockerd (pid $pid) did not stop within 30 s"
}

main() {
  if [[ "${1:-}" == stop ]]; then stop_ours; return; fi
  command -v docker >/dev/null 2>&1 || apt_install docker.io
  command -v dockerd >/dev/null 2>&1 || apt_install docker.io
  if ! docker info >/dev/null 2>&1; then
    if pgrep -x dockerd >/dev/null 2>&1; then
      # Starting up, or wedged: give it a moment before saying so.
      for _ in $(seq 1 30); do docker info >/dev/null 2>&1 && break; sleep 1; done
      docker info >/dev/null 2>&1 || die "dockerd runs but does not answer; see $state/dockerd.log"
    else
      start_dockerd
    fi
  fi
  if lacks_sys_resource; then
    local default
    default="$(docker info --format '{{.DefaultRuntime}}')"
    if [[ "$default" != "$runtime_name" ]]; then
      # An engine we did not start (or started by an older script) would fail kind's node
      # container. Restart it only if it is ours; never touch someone else's daemon.
      if [[ -s "$pidfile" ]] && [[ "$(cat "$pidfile")" == "$(pgrep -xo dockerd || true)" ]]; then
        log "restarting our dockerd with the $runtime_name runtime"
        kill "$(cat "$pidfile")"
        for _ in $(seq 1 30); do pgrep -x dockerd >/dev/null || break; sleep 1; done
        start_dockerd
      else
        log "warning: this host lacks CAP_SYS_RESOURCE and the running dockerd's default runtime is '$default'; kind's privileged node container will fail (restart dockerd with: --add-runtime $runtime_name=$state/$runtime_name --default-runtime $runtime_name, after running this script once as root)"
        install_runtime
      fi
    fi
  fi
}

main "$@"
