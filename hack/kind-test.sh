#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# End to end in a throwaway kind cluster: build the image, load it into kind, helm install the
# chart, deploy two demo backends behind an annotated Service, and check that requests through
# `kubectl port-forward svc/<release>-kubeferry` reach both backends. The cluster is deleted at
# the end, pass or fail (KEEP_CLUSTER=1 keeps it for a look).
#
# Needs: Docker, kind (https://kind.sigs.k8s.io), and a reachable registry for the kindest/node
# image (and, unless KUBEFERRY_BASE_IMAGE is set, nothing else: the kubeferry image is built on a
# local base by hack/docker-build.sh). helm and kubectl come from hack/tools.sh when not on PATH.
#
# Environment: KIND_CLUSTER (default kubeferry-e2e), KIND_NODE_IMAGE (default: kind's own),
# KUBEFERRY_IMAGE (default kubeferry:dev), KEEP_CLUSTER=1, LOCAL_PORT (default 18080).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
cluster="${KIND_CLUSTER:-kubeferry-e2e}"
image="${KUBEFERRY_IMAGE:-kubeferry:dev}"
local_port="${LOCAL_PORT:-18080}"
release=e2e
namespace=kubeferry
apps=demo

prog=kind-test
# shellcheck source=lib.sh
source "$here/lib.sh"

# --- prerequisites: fail early and say why --------------------------------------------------------
command -v kind >/dev/null 2>&1 \
  || die "kind is not installed (go install sigs.k8s.io/kind@latest, or https://kind.sigs.k8s.io/docs/user/quick-start/#installation)"
command -v docker >/dev/null 2>&1 || die "docker is not installed"
docker info >/dev/null 2>&1 || die "no Docker engine answers (start it, or run hack/docker-build.sh once as root)"

tools="$("$here/tools.sh" 2>/dev/null || true)"
helm="$(command -v helm || true)"; [[ -n "$helm" ]] || helm="$tools/helm"
kubectl="$(command -v kubectl || true)"; [[ -n "$kubectl" ]] || kubectl="$tools/kubectl"
[[ -x "$helm" && -x "$kubectl" ]] || die "no helm/kubectl on PATH and hack/tools.sh could not provide them"

# A given node image must be present or pullable; kind's default one is pulled by
# `kind create cluster` below, whose failure is explained there.
if [[ -n "${KIND_NODE_IMAGE:-}" ]] && ! docker image inspect "$KIND_NODE_IMAGE" >/dev/null 2>&1; then
  docker pull "$KIND_NODE_IMAGE" >&2 \
    || die "cannot pull the kind node image $KIND_NODE_IMAGE: no container registry reachable (load it with docker load, or unset KIND_NODE_IMAGE)"
fi

kc() { "$kubectl" --context "kind-$cluster" "$@"; }
port_forward_pid=""
cleanup() {
  if [[ -n "$port_forward_pid" ]]; then kill "$port_forward_pid" 2>/dev/null || true; fi
  if [[ "${KEEP_CLUSTER:-}" == 1 ]]; then
    log "keeping cluster $cluster (kind delete cluster --name $cluster)"
  else
    log "deleting cluster $cluster"
    kind delete cluster --name "$cluster" >/dev/null 2>&1 || true
  fi
}

# --- cluster and image ------------------------------------------------------------------------------
log "building $image"
KUBEFERRY_IMAGE="$image" "$here/docker-build.sh"

if kind get clusters 2>/dev/null | grep -qx "$cluster"; then
  log "reusing cluster $cluster"
else
  log "creating cluster $cluster"
  if ! kind create cluster --name "$cluster" ${KIND_NODE_IMAGE:+--image "$KIND_NODE_IMAGE"} --wait 120s; then
    kind delete cluster --name "$cluster" >/dev/null 2>&1 || true
    die "kind could not create the cluster. If the error above is about pulling kindest/node, no container registry is reachable from this machine: make kind-test needs one (or KIND_NODE_IMAGE set to a node image loaded locally)"
  fi
fi
trap cleanup EXIT

log "loading $image into the cluster"
kind load docker-image "$image" --name "$cluster"

# --- kubeferry ---------------------------------------------------------------------------------------
log "helm install $release"
"$helm" --kube-context "kind-$cluster" upgrade --install "$release" "$root/deploy/helm/kubeferry" \
  --namespace "$namespace" --create-namespace \
  --set image.repository="${image%:*}" --set image.tag="${image##*:}" --set image.pullPolicy=Never \
  --set replicaCount=1 --set-json 'config={"health":{"interval_seconds":1},"timeouts":{"drain_seconds":5}}' \
  --wait --timeout 180s

# --- a demo backend: two pods answering their own name, behind an annotated Service -------------------
# The kubeferry image doubles as the backend: Python's http.server answers on 8080, with a
# /healthz and the pod name in every body. No other image is needed.
log "deploying the demo backend"
kc create namespace "$apps" --dry-run=client -o yaml | kc apply -f - >/dev/null
kc apply -n "$apps" -f - >/dev/null <<EOF
apiVersion: apps/v1
kind: Deployment
metadata:
  name: hello
spec:
  replicas: 2
  selector:
    matchLabels: {app: hello}
  template:
    metadata:
      labels: {app: hello}
    spec:
      containers:
        - name: hello
          image: $image
          imagePullPolicy: Never
          command: ["python", "-c"]
          args:
            - |
              import http.server, os
              name = os.environ["POD_NAME"].encode()
              class H(http.server.BaseHTTPRequestHandler):
                  def do_GET(self):
                      self.send_response(200)
                      self.send_header("Content-Length", str(len(name)))
                      self.end_headers()
                      self.wfile.write(name)
              http.server.ThreadingHTTPServer(("", 8080), H).serve_forever()
          env:
            - name: POD_NAME
              valueFrom: {fieldRef: {fieldPath: metadata.name}}
          ports:
            - {name: http, containerPort: 8080}
          readinessProbe:
            httpGet: {path: /healthz, port: http}
            periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: hello
  annotations:
    kubeferry.io/enabled: "true"
    kubeferry.io/path-prefix: /hello
    kubeferry.io/health-path: /healthz
spec:
  selector: {app: hello}
  ports:
    - {name: http, port: 80, targetPort: http}
EOF
kc -n "$apps" rollout status deployment/hello --timeout 120s

# --- through the load balancer -----------------------------------------------------------------------
log "port-forward svc/$release-kubeferry $local_port:80"
kc -n "$namespace" port-forward "svc/$release-kubeferry" "$local_port:80" >/dev/null 2>&1 &
port_forward_pid=$!

seen=""
for _ in $(seq 1 60); do
  body="$(curl -fsS --max-time 2 "http://127.0.0.1:$local_port/hello/" 2>/dev/null || true)"
  [[ "$body" == hello-* ]] && seen="$seen"$'\n'"$body"
  [[ "$(printf '%s\n' "$seen" | sort -u | grep -c '^hello-')" -ge 2 ]] && break
  sleep 1
done
distinct="$(printf '%s\n' "$seen" | sort -u | grep -c '^hello-' || true)"
if [[ "$distinct" -lt 2 ]]; then
  kc -n "$namespace" logs "deploy/$release-kubeferry" --tail 50 >&2 || true
  die "expected answers from both hello pods through kubeferry, saw: $(printf '%s' "$seen" | sort -u | tr '\n' ' ')"
fi
code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$local_port/nowhere")"
[[ "$code" == 404 ]] || die "an unrouted path answered $code, expected 404"
log "PASS: requests through kubeferry reached both backends; unrouted paths get 404"
