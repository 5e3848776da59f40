#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Provides etcd, kube-apiserver and kube-controller-manager at the versions pinned in
# hack/envtest/versions.env and prints the directory that holds them -- and nothing else -- on
# stdout, so callers can write KUBEBUILDER_ASSETS="$(hack/envtest.sh)". Progress goes to stderr.
#
# Resolution order:
#   1. $KUBEBUILDER_ASSETS, if it holds all three binaries (the ecosystem's convention);
#   2. the per-version cache ${KUBEFERRY_CACHE:-$HOME/.cache/kubeferry}/envtest/k8s-<v>-etcd-<v>/;
#   3. a build from the Go module proxy through the committed wrapper modules in hack/envtest/.
# A build goes to a temporary directory next to the cache entry and is renamed into place only
# after all three binaries built and reported the expected versions, so the cache never holds a
# half-populated entry.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
wrappers="$here/envtest"
# shellcheck source=envtest/versions.env
source "$wrappers/versions.env"
binaries=(etcd kube-apiserver kube-controller-manager)

prog=envtest
# shellcheck source=lib.sh
source "$here/lib.sh"

holds_all() {
  local dir="$1" b
  [[ -n "$dir" && -d "$dir" ]] || return 1
  for b in "${binaries[@]}"; do [[ -x "$dir/$b" ]] || return 1; done
}

if [[ -n "${KUBEBUILDER_ASSETS:-}" ]] && holds_all "$KUBEBUILDER_ASSETS"; then
  # An explicit choice is respected, but a version other than the pin is worth a warning: it is
  # often left over from another project's envtest setup.
  found="$("$KUBEBUILDER_ASSETS/kube-apiserver" --version 2>/dev/null || true)"
  if [[ "$found" != "Kubernetes $KUBERNETES_VERSION" ]]; then
    log "warning: KUBEBUILDER_ASSETS holds '${found:-an unversioned kube-apiserver}', pinned is $KUBERNETES_VERSION"
  fi
  log "using KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS"
  printf '%s\n' "$KUBEBUILDER_ASSETS"
  exit 0
elif [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
  log "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS lacks one of: ${binaries[*]}; ignoring it"
fi

cache_root="$cache/envtest"
entry="$cache_root/k8s-$KUBERNETES_VERSION-etcd-$ETCD_VERSION"
if holds_all "$entry"; then
  log "cached: $entry"
  printf '%s\n' "$entry"
  exit 0
fi

# --- build -------------------------------------------------------------------------------------
command -v go >/dev/null 2>&1 || die "no Go toolchain on PATH; install Go >= $(awk '$1=="go"{print $2}' "$wrappers/kubernetes/go.mod") (https://go.dev/dl/) or point KUBEBUILDER_ASSETS at a directory holding: ${binaries[*]}"
# GOTOOLCHAIN=local: never let `go` fetch another toolchain behind our back; fail clearly instead.
export GOTOOLCHAIN=local CGO_ENABLED=0
# -mod=readonly: build exactly the committed go.sum graph; -buildvcs=false: the wrappers live in
# this git checkout, and its state must not leak into the binaries.
export GOFLAGS="-mod=readonly -buildvcs=false"

need_go() {  # $1 = wrapper dir; compare the running toolchain with the module's go line
  local want have
  want="$(awk '$1=="go"{print $2; exit}' "$1/go.mod")"
  have="$(go env GOVERSION)"; have="${have#go}"
  if [[ "$(printf '%s\n%s\n' "$want" "$have" | sort -V | head -n1)" != "$want" ]]; then
    die "Go $have is too old: $(basename "$1") needs Go >= $want (GOTOOLCHAIN=local is enforced)"
  fi
}
need_go "$wrappers/kubernetes"
need_go "$wrappers/etcd"

mkdir -p "$cache_root"
# One build per cache entry at a time: a second caller waits (bounded) and then finds the entry.
exec 9>"$cache_root/.lock"
if ! flock -w 3600 9; then die "timed out after 1h waiting for another build ($cache_root/.lock)"; fi
if holds_all "$entry"; then
  log "cached (built by a concurrent run): $entry"
  printf '%s\n' "$entry"
  exit 0
fi

tmp="$(mktemp -d "$cache_root/.build-XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
# set -e would end the script silently on an unforeseen failure; say where instead.
trap 'printf "envtest: error: unexpected failure at line %s; the cache was not touched\n" "$LINENO" >&2' ERR
started=$SECONDS

ldflags="$(kubernetes_ldflags "$wrappers/kubernetes" "$KUBERNETES_VERSION")" \
  || die "cannot read the module info of k8s.io/kubernetes@$KUBERNETES_VERSION; the cache was not touched"

log "building Kubernetes $KUBERNETES_VERSION (kube-apiserver, kube-controller-manager) into $tmp"
log "(a cold build downloads ~400 modules and compiles for many minutes; GOMODCACHE=$(go env GOMODCACHE) GOCACHE=$(go env GOCACHE) are reused next time)"
(cd "$wrappers/kubernetes" && go build -trimpath -ldflags "$ldflags" -o "$tmp/" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager) >&2 \
  || die "building Kubernetes $KUBERNETES_VERSION failed (see the go output above); the cache was not touched"

log "building etcd $ETCD_VERSION"
(cd "$wrappers/etcd" && go build -trimpath -ldflags "-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3) >&2 \
  || die "building etcd $ETCD_VERSION failed (see the go output above); the cache was not touched"

# Trust nothing we have not run: each binary must start and report the pinned version.
"$tmp/kube-apiserver" --version 2>&1 | grep -qx "Kubernetes $KUBERNETES_VERSION" \
  || die "kube-apiserver reports '$("$tmp/kube-apiserver" --version 2>&1 | head -n1)', expected Kubernetes $KUBERNETES_VERSION"
"$tmp/kube-controller-manager" --version 2>&1 | grep -qx "Kubernetes $KUBERNETES_VERSION" \
  || die "kube-controller-manager does not report Kubernetes $KUBERNETES_VERSION"
"$tmp/etcd" --version 2>&1 | grep -qx "etcd Version: ${ETCD_VERSION#v}" \
  || die "etcd reports '$("$tmp/etcd" --version 2>&1 | head -n1)', expected ${ETCD_VERSION#v}"

rm -rf "$entry"  # only a partial entry can be here (holds_all failed above, under the lock)
mv -T "$tmp" "$entry"
trap - EXIT
log "built in $((SECONDS - started))s: $entry"
printf '%s\n' "$entry"
