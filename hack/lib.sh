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

# The -ldflags for a Kubernetes build from the wrapper module in $1 at version $2, printed on
# stdout. The build date is the module's publication time, so equal inputs give equal binaries.
# This is also a build's first network access: an unreachable module proxy fails here, clearly.
kubernetes_ldflags() {
  local wrapper="$1" version="$2" module_info build_date ver major minor pkg flags="-s -w"
  if ! module_info="$(cd "$wrapper" && go mod download -json "k8s.io/kubernetes@$version")"; then
    # -json reports the failure inside the JSON, not on stderr.
    log "cannot download k8s.io/kubernetes@$version (GOPROXY=$(go env GOPROXY)): $(sed -n 's/.*"Error": *"\(.*\)".*/\1/p' <<<"$module_info")"
    return 1
  fi
  build_date="$(sed -n 's/.*"Info": *"\([^"]*\)".*/\1/p' <<<"$module_info" | xargs cat \
    | sed -n 's/.*"Time": *"\([^"]*\)".*/\1/p')"
  [[ -n "$build_date" ]] || { log "no publication time in the module info of k8s.io/kubernetes@$version"; return 1; }
  ver="${version#v}"
  major="${ver%%.*}"; minor="${ver#*.}"; minor="${minor%%.*}"
  # component-base/version feeds --version and /version; client-go's copy feeds the user agent.
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    flags+=" -X $pkg.gitTreeState=archive -X $pkg.buildDate=$build_date"
  done
  printf '%s\n' "$flags"
}

# Go builds of pinned modules: never fetch another toolchain behind our back, build exactly the
# committed go.sum graph, and keep this checkout's VCS state out of the binaries.
go_env_for_builds() {
  command -v go >/dev/null 2>&1 || die "no Go toolchain on PATH (https://go.dev/dl/)"
  export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false"
}
