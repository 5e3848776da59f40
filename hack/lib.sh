# shellcheck shell=bash
# Sourced by the hack/ scripts after they set `prog` (the prefix of their messages):
#   prog=tools; source "$here/lib.sh"
# Gives them stderr logging, the one cache directory they share (KUBEFERRY_CACHE), and apt
# installs that say what failed.
: "${prog:?set prog before sourcing hack/lib.sh}"
cache="${KUBEFERRY_CACHE:-$HOME/.cache/kubeferry}"

log() { printf '%s: %s\n' "$prog" "$*" >&2; }
die() { printf '%s: error: %s\n' "$prog" "$*" >&2; exit 1; }
is_root() { [[ "$(id -u)" -eq 0 ]]; }

apt_install() {
  is_root || die "missing $*; install it (apt-get install $*) or run as root"
  log "installing $* from Debian"
  export DEBIAN_FRONTEND=noninteractive
  mkdir -p "$cache"
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends "$@"; } \
    >"$cache/apt.log" 2>&1 || die "apt-get install $* failed; see $cache/apt.log"
}
