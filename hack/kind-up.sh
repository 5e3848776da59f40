#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Brings up the cluster of `make kind-test` and loads the images its tests use. Idempotent. On
# stdout, KEY=VALUE lines for the tests: CONTEXT, KUBECTL, HELM, KUBEFERRY_IMAGE, ECHO_IMAGE,
# ECHO_IMAGE_V2, NODE_IMAGE. Progress goes to stderr. The tests (tests/kind) call it; so can you.
#
# A cluster of that name left by a killed run (its owner process gone) is deleted and made anew;
# one kept on purpose (KEEP_CLUSTER=1 at its hack/kind-down.sh) is reused.
#
# Environment: KIND_CLUSTER (default kubeferry-e2e), KUBEFERRY_IMAGE (default kubeferry:dev),
# KIND_NODE_IMAGE (see hack/kind-node-image.sh), KIND_OWNER_PID (the process whose death makes the
# cluster a leftover; default: the caller).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
prog=kind-up
# shellcheck source=lib.sh
source "$here/lib.sh"
# shellcheck source=envtest/versions.env
source "$here/envtest/versions.env"

cluster="${KIND_CLUSTER:-kubeferry-e2e}"
image="${KUBEFERRY_IMAGE:-kubeferry:dev}"
owner_pid="${KIND_OWNER_PID:-$PPID}"
owners="$cache/kind/clusters"
owner_file="$owners/$cluster"
mkdir -p "$owners"

"$here/docker-engine.sh"
kind="$("$here/kind.sh")"
node_image="$("$here/kind-node-image.sh")"
# kubectl within one minor version of the cluster: the one built with the node image when there
# is one, else the one from hack/tools.sh. helm from hack/tools.sh.
tools="$("$here/tools.sh")"
kubectl="$cache/kind/kubernetes-$KUBERNETES_VERSION/kubectl"
[[ -x "$kubectl" ]] || kubectl="$tools/kubectl"
helm="$tools/helm"

log "building $image"
KUBEFERRY_IMAGE="$image" "$here/docker-build.sh" >&2
mapfile -t echo_images < <("$here/kind-images.sh")

start_time() { awk '{ print $22 }' "/proc/$1/stat" 2>/dev/null; }
exec 9>"$owners/.$cluster.lock"
flock -w 600 9 || die "timed out waiting for another kind-up of $cluster"
if "$kind" get clusters 2>/dev/null | grep -qx "$cluster"; then
  read -r pid started <"$owner_file" 2>/dev/null || pid=""
  if [[ "$pid" == kept ]]; then
    log "reusing cluster $cluster (kept by an earlier run)"
  elif [[ -n "$pid" && "$pid" != "$owner_pid" && -n "${started:-}" \
          && "$(start_time "$pid")" == "$started" ]]; then
    # Same pid and same start time: that very process is still running.
    die "cluster $cluster is in use by a running test (pid $pid); set KIND_CLUSTER to use another name"
  elif [[ "$pid" != "$owner_pid" ]]; then
    log "deleting cluster $cluster, left over by a run that did not finish"
    "$kind" delete cluster --name "$cluster" >&2
  fi
fi
if ! "$kind" get clusters 2>/dev/null | grep -qx "$cluster"; then
  log "creating cluster $cluster from $node_image"
  if ! "$kind" create cluster --name "$cluster" --image "$node_image" \
      --config "$here/kind/cluster.yaml" --wait 180s >&2; then
    "$kind" export logs --name "$cluster" "$cache/kind/logs-$cluster" >/dev/null 2>&1 || true
    "$kind" delete cluster --name "$cluster" >/dev/null 2>&1 || true
    die "kind could not create the cluster (node logs: $cache/kind/logs-$cluster)"
  fi
fi
printf '%s %s\n' "$owner_pid" "$(start_time "$owner_pid")" >"$owner_file"

# Nothing in the cluster may reach beyond it (the network rule): Docker masquerades the kind
# network out of the host's default route, so a packet a pod sends to a ClusterIP that kube-proxy
# has not programmed yet (a Service made a moment ago) left the machine, and a stranger answered
# (seen in make conformance: 404s from "Server: keryx" at 10.96.x.x). Dropped here, in Docker's
# DOCKER-USER chain: forwarded traffic from the kind bridge to any other interface. The host's
# own connections into the cluster (API server mapping, port-forward) are not forwarded traffic.
isolate_kind_network() {
  local id bridge tool
  id="$(docker network inspect kind -f '{{.Id}}' 2>/dev/null)" || die "no docker network 'kind'"
  bridge="$(docker network inspect kind -f '{{index .Options "com.docker.network.bridge.name"}}')"
  [[ -n "$bridge" && "$bridge" != "<no value>" ]] || bridge="br-${id:0:12}"
  for tool in iptables ip6tables; do
    command -v "$tool" >/dev/null 2>&1 || continue
    "$tool" -S DOCKER-USER >/dev/null 2>&1 || "$tool" -N DOCKER-USER 2>/dev/null || continue
    "$tool" -S FORWARD 2>/dev/null | grep -q -- '-j DOCKER-USER' \
      || "$tool" -I FORWARD 1 -j DOCKER-USER 2>/dev/null || continue
    local rule=(-i "$bridge" ! -o "$bridge" -m comment --comment kubeferry-kind-isolation -j DROP)
    "$tool" -C DOCKER-USER "${rule[@]}" 2>/dev/null || "$tool" -I DOCKER-USER 1 "${rule[@]}" \
      || die "$tool: cannot add the rule that keeps the kind network ($bridge) in"
  done
}
if is_root; then
  isolate_kind_network
else
  log "warning: not root, so the kind network is not fenced in: pod traffic to unprogrammed ClusterIPs may leave the host"
fi

for img in "$image" "${echo_images[@]}"; do
  log "kind load docker-image $img"
  "$kind" load docker-image "$img" --name "$cluster" >&2
done

cat <<OUT
CONTEXT=kind-$cluster
KUBECTL=$kubectl
HELM=$helm
KIND=$kind
KUBEFERRY_IMAGE=$image
ECHO_IMAGE=${echo_images[0]}
ECHO_IMAGE_V2=${echo_images[1]}
NODE_IMAGE=$node_image
OUT
