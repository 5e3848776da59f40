#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Builds the images `make kind-test` loads into its cluster, besides kubeferry's own
# (hack/docker-build.sh): the echo backend and load client (hack/kind/echo) as a FROM-scratch image
# with one static binary, tagged v1 and v2 (the same program; the tests roll a Deployment from one
# tag to the other as an image change). Prints the image names, one a line.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
prog=kind-images
# shellcheck source=lib.sh
source "$here/lib.sh"
go_env_for_builds
"$here/docker-engine.sh"

repo=kubeferry.local/echo
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
(cd "$here/kind/echo" && go build -trimpath -ldflags "-s -w" -o "$ctx/echo" .) >&2 \
  || die "building hack/kind/echo failed"
cat >"$ctx/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY echo /echo
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/echo"]
CMD ["serve"]
DOCKERFILE
for tag in v1 v2; do
  docker build --network none -q -t "$repo:$tag" --label "io.kubeferry.echo=$tag" "$ctx" >/dev/null \
    || die "docker build of $repo:$tag failed"
  printf '%s\n' "$repo:$tag"
done
# Each build of a changed echo leaves the previous one dangling; keep the disk bounded.
docker image prune --force --filter label=io.kubeferry.echo >/dev/null
