#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Deletes the cluster of `make kind-test`, or with KEEP_CLUSTER=1 keeps it (and marks it kept, so
# the next hack/kind-up.sh reuses it instead of treating it as a leftover).
# Environment: KIND_CLUSTER (default kubeferry-e2e), KEEP_CLUSTER.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
prog=kind-down
# shellcheck source=lib.sh
source "$here/lib.sh"
cluster="${KIND_CLUSTER:-kubeferry-e2e}"
owner_file="$cache/kind/clusters/$cluster"
if [[ "${KEEP_CLUSTER:-}" == 1 ]]; then
  mkdir -p "$(dirname "$owner_file")"
  echo kept >"$owner_file"
  log "keeping cluster $cluster: kubectl --context kind-$cluster ...; delete with: $("$here/kind.sh") delete cluster --name $cluster"
  exit 0
fi
log "deleting cluster $cluster"
"$("$here/kind.sh")" delete cluster --name "$cluster" >&2
rm -f "$owner_file"
