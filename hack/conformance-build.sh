#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Builds what `make conformance` (hack/conformance.sh) runs in the kind cluster, for the Gateway
# API release pinned in hack/gateway-api/go.mod, and prints the image names on stdout:
#   SUITE_IMAGE=<the suite's image>       (then)   TEST_IMAGE=<name>   one line per image
# Progress goes to stderr. Run it under `flock /tmp/kubeferry-heavy.lock` (hack/conformance.sh
# does): a cold build compiles the suite for minutes.
#
#   - the official suite, `go test -c` of hack/gateway-api/suite (upstream's TestConformance over
#     sigs.k8s.io/gateway-api/conformance), plus hack/gateway-api/runner, which prints the report
#     between marker lines after the suite ends; static binaries in a FROM-scratch image
#     kubeferry.local/gateway-api-conformance:<version>-<recipe>;
#   - every image the suite's manifests (conformance/base/*.yaml and conformance/tests/*.yaml of
#     the module) name, tagged exactly as they name it, since nothing can be pulled here:
#       registry.k8s.io/gateway-api/echo-basic:*  echo-basic built from the module's own source
#                                                 (conformance/echo-basic at the pinned version),
#                                                 one image under every tag the manifests use;
#       registry.k8s.io/coredns/coredns:<v>       CoreDNS <v> from its Go module (its own go.sum);
#       registry.k8s.io/gateway-api/echo-advanced:* only TCPRoute/UDPRoute tests use it, not the
#                                                 GATEWAY-HTTP profile: not built (said on stderr).
#     Any other image there is an error: the suite would wait for a pod that can never start.
#
# Binaries are cached by version and recipe (a hash of this script, the wrapper module and the
# Go version) under ${KUBEFERRY_CACHE:-~/.cache/kubeferry}/gateway-api/; images carry the label
# io.kubeferry.conformance=<recipe>, and older recipes' images are removed.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
prog=conformance-build
# shellcheck source=lib.sh
source "$here/lib.sh"
go_env_for_builds
"$here/docker-engine.sh"

wrapper="$here/gateway-api"
version="$("$here/gateway-api.sh" version)"
module="$("$here/gateway-api.sh" conformance)"
recipe="$(cat "$0" "$wrapper/go.mod" "$wrapper/go.sum" "$wrapper"/suite/*.go "$wrapper"/runner/*.go \
  <(go env GOVERSION) | sha256sum | cut -c1-12)"
store="$cache/gateway-api"
entry="$store/conformance-$version-$recipe"
mkdir -p "$store"

# --- binaries -------------------------------------------------------------------------------------
build_binaries() {  # $1 = empty directory to fill
  log "building the Gateway API $version conformance suite (go test -c; minutes when cold)"
  (cd "$wrapper" && go test -c -trimpath -ldflags "-s -w" -o "$1/conformance.test" ./suite) >&2 \
    || return 1
  (cd "$wrapper" && go build -trimpath -ldflags "-s -w" -o "$1/runner" ./runner) >&2 || return 1
  (cd "$wrapper" && go build -trimpath -ldflags "-s -w" -o "$1/echo-basic" \
    sigs.k8s.io/gateway-api/conformance/echo-basic) >&2 || return 1
  # Trust nothing not run: the suite must know the flags hack/conformance.sh passes.
  "$1/conformance.test" -h 2>&1 | grep -q -- '-conformance-profiles' \
    || { log "the built suite has no -conformance-profiles flag"; return 1; }
}
exec 9>"$store/.build.lock"
flock -w 3600 9 || die "timed out after 1h waiting for another build ($store/.build.lock)"
if [[ ! -f "$entry/.complete" ]]; then
  started=$SECONDS
  tmp="$(mktemp -d "$store/.build-XXXXXX")"
  build_binaries "$tmp" || { rm -rf "$tmp"; die "building the suite failed (see above); nothing was cached"; }
  touch "$tmp/.complete"
  rm -rf "$entry"
  mv -T "$tmp" "$entry"
  log "built in $((SECONDS - started))s: $entry"
else
  log "cached: $entry"
fi

# --- which images the manifests name --------------------------------------------------------------
mapfile -t wanted < <(cat "$module"/base/*.yaml "$module"/tests/*.yaml \
  | sed -n 's/^[[:space:]-]*image:[[:space:]]*["'\'']\{0,1\}\([^"'\'' ]*\).*/\1/p' | sort -u)
[[ "${#wanted[@]}" -gt 0 ]] || die "no image: lines in $module/base or $module/tests"

coredns_version=""
echo_tags=()
for image in "${wanted[@]}"; do
  case "$image" in
    registry.k8s.io/gateway-api/echo-basic:*) echo_tags+=("$image") ;;
    registry.k8s.io/coredns/coredns:*)
      [[ -z "$coredns_version" || "$coredns_version" == "${image##*:}" ]] \
        || die "the manifests name two CoreDNS versions ($coredns_version, ${image##*:})"
      coredns_version="${image##*:}" ;;
    registry.k8s.io/gateway-api/echo-advanced:*)
      log "not building $image: only TCPRoute/UDPRoute tests use it (not in GATEWAY-HTTP)" ;;
    *) die "the suite's manifests name $image, which this script cannot build" ;;
  esac
done
[[ "${#echo_tags[@]}" -gt 0 ]] || die "the manifests name no echo-basic image"

coredns_bin=""
if [[ -n "$coredns_version" ]]; then
  coredns_bin="$store/coredns-$coredns_version"
  if [[ ! -x "$coredns_bin/coredns" ]]; then
    log "building CoreDNS $coredns_version from its Go module (a few minutes when cold)"
    tmp="$(mktemp -d "$store/.coredns-XXXXXX")"
    # `go install pkg@version` uses CoreDNS's own go.mod and go.sum: a pinned, verified graph.
    if ! GOFLAGS="-buildvcs=false" GOBIN="$tmp" go install -trimpath -ldflags "-s -w" \
        "github.com/coredns/coredns@$coredns_version" >&2 \
        || ! "$tmp/coredns" -version | grep -q "CoreDNS-${coredns_version#v}"; then
      rm -rf "$tmp"
      die "building CoreDNS $coredns_version failed; nothing was cached"
    fi
    rm -rf "$coredns_bin"
    mv -T "$tmp" "$coredns_bin"
  fi
fi

# --- images ---------------------------------------------------------------------------------------
"$here/docker-engine.sh"  # again: the builds above take minutes, and an engine may have gone since
label="io.kubeferry.conformance"
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
# $1 = tag, $2 = build context (a directory under $ctx), $3.. = Dockerfile lines after FROM scratch.
image() {
  local tag="$1" dir="$ctx/$2"; shift 2
  { echo "FROM scratch"; printf '%s\n' "$@"; echo "LABEL $label=$recipe"; } >"$dir/Dockerfile"
  # The engine's legacy builder warns on every build; its words matter only when it fails.
  docker build --network none -q -t "$tag" "$dir" >"$ctx/build.log" 2>&1 \
    || { cat "$ctx/build.log" >&2; die "docker build of $tag failed"; }
}
mkdir -p "$ctx/suite" "$ctx/echo" "$ctx/coredns"
cp "$entry/conformance.test" "$entry/runner" "$ctx/suite/"
cp "$entry/echo-basic" "$ctx/echo/"
[[ -z "$coredns_bin" ]] || cp "$coredns_bin/coredns" "$ctx/coredns/"

suite_image="kubeferry.local/gateway-api-conformance:$version-$recipe"
image "$suite_image" suite "COPY conformance.test runner /" "USER 65532:65532" 'ENTRYPOINT ["/runner"]'
printf 'SUITE_IMAGE=%s\n' "$suite_image"
# As upstream's docker/Dockerfile.echo-basic: the static binary, user nonroot (65532).
for tag in "${echo_tags[@]}"; do
  image "$tag" echo "COPY echo-basic /" "USER 65532:65532" 'ENTRYPOINT ["/echo-basic"]'
  printf 'TEST_IMAGE=%s\n' "$tag"
done
if [[ -n "$coredns_bin" ]]; then
  # Root, not nonroot: the suite's Deployment binds port 53 with NET_BIND_SERVICE, which upstream's
  # nonroot image gets from a file capability that a FROM-scratch build cannot set.
  image "registry.k8s.io/coredns/coredns:$coredns_version" coredns "COPY coredns /" \
    'ENTRYPOINT ["/coredns"]'
  printf 'TEST_IMAGE=%s\n' "registry.k8s.io/coredns/coredns:$coredns_version"
fi
log "images of recipe $recipe: $suite_image ${echo_tags[*]}${coredns_bin:+ registry.k8s.io/coredns/coredns:$coredns_version}"

# Images of older recipes (the tags above moved to the new ones) are garbage now.
docker images -q --filter "label=$label" | sort -u | while read -r id; do
  [[ "$(docker inspect -f "{{index .Config.Labels \"$label\"}}" "$id")" == "$recipe" ]] \
    || docker rmi -f "$id" >/dev/null 2>&1 || true
done
