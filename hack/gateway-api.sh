#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# The Gateway API release kubeferry implements, from the Go module proxy through the committed
# wrapper module hack/gateway-api/ (go.mod + go.sum pin the version and every hash).
#
#   hack/gateway-api.sh crds         the directory of the standard-channel CRD manifests
#                                    (config/crd/standard of sigs.k8s.io/gateway-api)
#   hack/gateway-api.sh module       the directory of sigs.k8s.io/gateway-api
#   hack/gateway-api.sh conformance  the directory of sigs.k8s.io/gateway-api/conformance
#   hack/gateway-api.sh version      the pinned version (v1.6.3)
#
# Each prints one absolute path (or the version) on stdout and nothing else, so callers can write
# `kubectl apply --server-side -f "$(hack/gateway-api.sh crds)"`; progress goes to stderr. The
# modules are read-only in the Go module cache; a first call downloads them (a few MB).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
wrapper="$here/gateway-api"
prog=gateway-api
# shellcheck source=lib.sh
source "$here/lib.sh"

usage() { printf 'usage: %s crds|module|conformance|version\n' "$0" >&2; exit 2; }
[[ $# -eq 1 ]] || usage

command -v go >/dev/null 2>&1 || die "no Go toolchain on PATH (https://go.dev/dl/); it fetches the Gateway API module"
export GOTOOLCHAIN=local GOFLAGS="-mod=readonly"

# The version is the wrapper's requirement (go.mod is the single place it is written).
version="$(cd "$wrapper" && go list -m -f '{{.Version}}' sigs.k8s.io/gateway-api)" \
  || die "cannot read the sigs.k8s.io/gateway-api requirement of $wrapper/go.mod"

# `go mod download -json` verifies the zip against go.sum and prints the extracted directory;
# it is a no-op when the module is already in the cache. A failure is reported inside the JSON.
module_dir() {  # $1 = module path
  local json dir
  json="$(cd "$wrapper" && go mod download -json "$1@$version" 2>/dev/null)" || true
  dir="$(sed -n 's/^[[:space:]]*"Dir": *"\(.*\)",*$/\1/p' <<<"$json")"
  if [[ -z "$dir" || ! -d "$dir" ]]; then
    die "cannot download $1@$version (GOPROXY=$(go env GOPROXY)): $(sed -n 's/.*"Error": *"\(.*\)".*/\1/p' <<<"$json")"
  fi
  printf '%s\n' "$dir"
}

case "$1" in
  version)
    printf '%s\n' "$version" ;;
  module)
    module_dir sigs.k8s.io/gateway-api ;;
  conformance)
    module_dir sigs.k8s.io/gateway-api/conformance ;;
  crds)
    dir="$(module_dir sigs.k8s.io/gateway-api)/config/crd/standard"
    compgen -G "$dir/gateway.networking.k8s.io_*.yaml" >/dev/null \
      || die "no CRD manifests in $dir (has the module's layout changed?)"
    log "Gateway API $version standard-channel CRDs: $dir"
    printf '%s\n' "$dir" ;;
  *) usage ;;
esac
