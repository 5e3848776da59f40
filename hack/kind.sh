#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Provides kind at the version pinned in hack/kind/versions.env and prints its path -- and nothing
# else -- on stdout. Resolution: the per-version cache
# ${KUBEFERRY_CACHE:-$HOME/.cache/kubeferry}/kind/kind-<version>/kind, else
# `go install sigs.k8s.io/kind@<version>` from the Go module proxy into it (about 40 s cold). A kind
# on PATH is not used unless it is the pinned version: the node image recipe and the cluster config
# are written for that one.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
prog=kind
# shellcheck source=lib.sh
source "$here/lib.sh"
# shellcheck source=kind/versions.env
source "$here/kind/versions.env"

entry="$cache/kind/kind-$KIND_VERSION"
if [[ -x "$entry/kind" ]]; then
  printf '%s\n' "$entry/kind"
  exit 0
fi
if command -v kind >/dev/null 2>&1 && [[ "v$(kind version -q 2>/dev/null)" == "$KIND_VERSION" ]]; then
  command -v kind
  exit 0
fi

go_env_for_builds
export GOFLAGS="-buildvcs=false"  # `go install pkg@version` builds in module mode by itself
mkdir -p "$cache/kind"
exec 9>"$cache/kind/.kind.lock"
flock -w 600 9 || die "timed out waiting for another kind build ($cache/kind/.kind.lock)"
if [[ -x "$entry/kind" ]]; then printf '%s\n' "$entry/kind"; exit 0; fi
tmp="$(mktemp -d "$cache/kind/.kind-XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
log "go install sigs.k8s.io/kind@$KIND_VERSION"
GOBIN="$tmp" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kind@$KIND_VERSION" >&2 \
  || die "go install sigs.k8s.io/kind@$KIND_VERSION failed (see above); the cache was not touched"
[[ "v$("$tmp/kind" version -q)" == "$KIND_VERSION" ]] \
  || die "the built kind reports '$("$tmp/kind" version -q)', expected $KIND_VERSION"
rm -rf "$entry"
mv -T "$tmp" "$entry"
trap - EXIT
printf '%s\n' "$entry/kind"
