#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# `make conformance`: the official Gateway API conformance suite (profile GATEWAY-HTTP, the
# release pinned in hack/gateway-api/go.mod) against kubeferry in a throwaway kind cluster.
#
#   1. builds the suite, its runner and every image the suite's manifests name
#      (hack/conformance-build.sh; cached by version and recipe);
#   2. brings up the kind cluster (hack/kind-up.sh: node image, kubeferry:dev) and loads them;
#   3. applies the standard-channel CRDs (server-side) from `hack/gateway-api.sh crds`, installs
#      the chart with gatewayAPI.enabled=true and creates the GatewayClass `kubeferry`;
#   4. runs the suite as a Job inside the cluster (hack/conformance/job.yaml): the suite sends its
#      requests to the Gateways' status addresses (ClusterIPs), which the host cannot reach (the
#      host talks to the cluster only through the API server on 127.0.0.1);
#   5. follows the Job's log into the run directory, takes the ConformanceReport from between the
#      runner's marker lines, and prints the profile's core and extended results.
# Exit status 0 only when the suite passed and every GATEWAY-HTTP core test succeeded; only then,
# and only for a reference run (HEAD, no knobs below set), are the report and the log copied to
# docs/conformance/ (a failing report stays in the run directory, so it can never be committed
# as the result by accident).
#
# The whole run holds /tmp/kubeferry-heavy.lock (Go and docker builds, then a cluster under load).
#
# Environment:
#   KIND_CLUSTER               cluster name (default kf-conformance; never another run's cluster)
#   KEEP_CLUSTER=1             keep the cluster afterwards and reuse it next time
#   CONFORMANCE_TREE           HEAD (default): kubeferry's image and chart come from the
#                              committed HEAD (git archive), so the report is of a commit and not
#                              of whatever the shared working tree holds at the moment;
#                              worktree: from the working tree as it is (never a reference run)
#   CONFORMANCE_WORK           run directory (default /tmp/kubeferry-conformance/<cluster>)
#   CONFORMANCE_OUT            where a passing report goes (default docs/conformance)
#   CONFORMANCE_GATEWAY_API    the chart's gatewayAPI.enabled (default true)
#   CONFORMANCE_REPLICAS       kubeferry replicas (default 2, the chart's default)
#   CONFORMANCE_SUPPORTED_FEATURES  -supported-features for the suite; empty (default): the suite
#                              reads them from the GatewayClass status, as it does for a report
#   CONFORMANCE_ARGS           more suite flags, e.g. -run-test=HTTPRouteSimpleSameNamespace
#                              (word-split; a run with -run-test never counts as a pass)
#   CONFORMANCE_DEADLINE       seconds the Job may run (default 5400)
#   CONFORMANCE_URL, CONFORMANCE_CONTACT  the report's implementation.url / contact
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
prog=conformance
# shellcheck source=lib.sh
source "$here/lib.sh"

lock=/tmp/kubeferry-heavy.lock
if [[ "${KUBEFERRY_CONFORMANCE_LOCKED:-}" != 1 ]]; then
  log "waiting for $lock (held while anything heavy runs)"
  # -o: the lock stays with flock itself, so no daemon this run starts can keep it.
  exec env KUBEFERRY_CONFORMANCE_LOCKED=1 flock -o "$lock" "$0" "$@"
fi

cluster="${KIND_CLUSTER:-kf-conformance}"
work="${CONFORMANCE_WORK:-/tmp/kubeferry-conformance/$cluster}"
out="${CONFORMANCE_OUT:-$root/docs/conformance}"
gateway_api="${CONFORMANCE_GATEWAY_API:-true}"
replicas="${CONFORMANCE_REPLICAS:-2}"
deadline="${CONFORMANCE_DEADLINE:-5400}"
url="${CONFORMANCE_URL:-https://kubeferry.io}"
contact="${CONFORMANCE_CONTACT:-@kubeferry/maintainers}"
gateway_class=kubeferry
controller_name=kubeferry.io/gateway-controller
profile=GATEWAY-HTTP
namespace=kubeferry-conformance
release=kubeferry
release_namespace=kubeferry
python="$root/.venv/bin/python"  # PyYAML, for reading the report (make conformance installs it)
[[ -x "$python" ]] || die "no $python; run make install (or make conformance, which does)"
[[ "$deadline" =~ ^[0-9]+$ && "$deadline" -ge 600 ]] || die "CONFORMANCE_DEADLINE must be >= 600 seconds"

# A dockerd started for this run is marked as ours (hack/docker-engine.sh), so a test session
# ending meanwhile does not stop it under the cluster.
export KUBEFERRY_ENGINE_OWNER="${KUBEFERRY_ENGINE_OWNER:-conformance-$$}"
engine_was_running=false
pgrep -x dockerd >/dev/null 2>&1 && engine_was_running=true
mkdir -p "$work"
rm -f "$work"/{suite.log,report.yaml,summary.txt,job.yaml}
started=$SECONDS
phase() { log "[$((SECONDS - started))s] $*"; }
version="$("$here/gateway-api.sh" version)"
commit="$(git -C "$root" rev-parse --short HEAD)" || die "$root is not a git checkout"
tree="${CONFORMANCE_TREE:-HEAD}"
case "$tree" in
  HEAD)
    # What goes into the cluster (the image, the chart, kind's files) from the commit alone.
    src="$work/src"
    rm -rf "$src" && mkdir -p "$src"
    git -C "$root" archive HEAD | tar -x -C "$src"
    ln -s "$root/.venv" "$src/.venv"  # hack/docker-build.sh builds the wheel with its pip
    what="commit $commit" ;;
  worktree)
    src="$root"
    what="working tree at $commit"
    [[ -z "$(git -C "$root" status --porcelain -- proxy controller kubeferry deploy pyproject.toml uv.lock | head -c1)" ]] \
      || what+=" with uncommitted changes" ;;
  *) die "CONFORMANCE_TREE must be HEAD or worktree, not '$tree'" ;;
esac
impl_version="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$src/pyproject.toml" | head -n1)"
phase "Gateway API $version, profile $profile, kubeferry $impl_version ($what), cluster $cluster, run directory $work"

# --- 1. build -------------------------------------------------------------------------------------
phase "building the suite and the images"
built="$("$here/conformance-build.sh")" || die "hack/conformance-build.sh failed"
suite_image="$(sed -n 's/^SUITE_IMAGE=//p' <<<"$built")"
mapfile -t test_images < <(sed -n 's/^TEST_IMAGE=//p' <<<"$built")

# --- 2. cluster -----------------------------------------------------------------------------------
finish() {
  local status=$?
  if [[ "${KEEP_CLUSTER:-}" == 1 ]]; then
    KIND_CLUSTER="$cluster" KEEP_CLUSTER=1 "$here/kind-down.sh" || true
  else
    KIND_CLUSTER="$cluster" "$here/kind-down.sh" || true
    # Like a test session: a dockerd this run started goes with it, unless something else has
    # containers running on it by now.
    if [[ "$engine_was_running" == false && -z "$(docker ps -q 2>/dev/null)" ]]; then
      "$here/docker-engine.sh" stop || true
    fi
  fi
  log "[$((SECONDS - started))s] done (exit status $status); run directory $work"
}
trap finish EXIT
phase "bringing up kind cluster $cluster"
cluster_env="$(KIND_CLUSTER="$cluster" KIND_OWNER_PID=$$ "$src/hack/kind-up.sh")" || die "hack/kind-up.sh failed"
# The suite sends requests to ClusterIPs as soon as a Gateway reports one; before kube-proxy has
# programmed it such a packet must stay in the cluster (hack/kind-up.sh fences the kind network).
iptables -S DOCKER-USER 2>/dev/null | grep -q kubeferry-kind-isolation \
  || die "the kind network is not fenced in (hack/kind-up.sh, as root); refusing to run the suite"
get() { sed -n "s/^$1=//p" <<<"$cluster_env"; }
context="$(get CONTEXT)"; kind="$(get KIND)"; helm="$(get HELM)"
kubeferry_image="$(get KUBEFERRY_IMAGE)"
kubectl_bin="$(get KUBECTL)"
kubectl() { "$kubectl_bin" --context "$context" "$@"; }
phase "loading ${suite_image} ${test_images[*]} into $cluster"
"$kind" load docker-image --name "$cluster" "$suite_image" "${test_images[@]}" >&2

# --- 3. CRDs, kubeferry, GatewayClass -------------------------------------------------------------
crds="$("$here/gateway-api.sh" crds)"
phase "applying the Gateway API $version CRDs from $crds"
kubectl apply --server-side --force-conflicts -f "$crds" >&2
mapfile -t crd_names < <(cd "$crds" && for f in gateway.networking.k8s.io_*.yaml; do
  n="${f#gateway.networking.k8s.io_}"; n="${n%.yaml}"
  [[ "$n" == vap_* ]] || printf 'crd/%s.gateway.networking.k8s.io\n' "$n"
done)
kubectl wait --for=condition=Established --timeout=60s "${crd_names[@]}" >&2

existed=false
"$helm" --kube-context "$context" status "$release" -n "$release_namespace" >/dev/null 2>&1 && existed=true
phase "helm upgrade --install $release (gatewayAPI.enabled=$gateway_api, $replicas replicas, $kubeferry_image)"
"$helm" --kube-context "$context" upgrade --install "$release" "$src/deploy/helm/kubeferry" \
  --namespace "$release_namespace" --create-namespace \
  --set "image.repository=${kubeferry_image%:*}" --set "image.tag=${kubeferry_image##*:}" \
  --set image.pullPolicy=Never --set "replicaCount=$replicas" \
  --set "gatewayAPI.enabled=$gateway_api" --set "gatewayAPI.controllerName=$controller_name" \
  --wait --timeout 300s >&2 || {
    kubectl -n "$release_namespace" get pods -o wide >&2 || true
    kubectl -n "$release_namespace" logs -l app.kubernetes.io/name=kubeferry --tail=30 >&2 || true
    die "kubeferry did not become ready"
  }
if [[ "$existed" == true ]]; then
  # A kept cluster: kubeferry:dev was just rebuilt and loaded under the same tag.
  kubectl -n "$release_namespace" rollout restart deployment -l app.kubernetes.io/instance="$release" >&2
  kubectl -n "$release_namespace" rollout status deployment -l app.kubernetes.io/instance="$release" --timeout=300s >&2
fi
# shellcheck disable=SC2016  # envsubst's list of the variables it may replace, unexpanded
GATEWAY_CLASS="$gateway_class" CONTROLLER_NAME="$controller_name" \
  envsubst '${GATEWAY_CLASS} ${CONTROLLER_NAME}' <"$here/conformance/gatewayclass.yaml" \
  | kubectl apply -f - >&2

# --- 4. the suite as a Job ------------------------------------------------------------------------
suite_args=(/report/report.yaml /conformance.test
  -test.v -test.run '^TestConformance$' -test.timeout "$((deadline - 60))s"
  "-gateway-class=$gateway_class" "-conformance-profiles=$profile"
  -organization=kubeferry -project=kubeferry "-url=$url" "-version=$impl_version" "-contact=$contact"
  -report-output=/report/report.yaml -cleanup-base-resources=true)
[[ -z "${CONFORMANCE_SUPPORTED_FEATURES:-}" ]] || suite_args+=("-supported-features=$CONFORMANCE_SUPPORTED_FEATURES")
# shellcheck disable=SC2206  # word-splitting CONFORMANCE_ARGS is its documented meaning
extra=(${CONFORMANCE_ARGS:-})
suite_args+=("${extra[@]}")
# shellcheck disable=SC2016
NAMESPACE="$namespace" SUITE_IMAGE="$suite_image" DEADLINE_SECONDS="$deadline" \
  SUITE_ARGS="$(printf '%s\n' "${suite_args[@]}" | jq -R . | jq -cs .)" \
  envsubst '${NAMESPACE} ${SUITE_IMAGE} ${DEADLINE_SECONDS} ${SUITE_ARGS}' \
  <"$here/conformance/job.yaml" >"$work/job.yaml"
# A kept cluster may hold the previous run's Job.
kubectl delete namespace "$namespace" --ignore-not-found --wait --timeout=120s >&2
kubectl delete clusterrolebinding "$namespace" --ignore-not-found >&2
phase "starting the suite: ${suite_args[*]:1}"
kubectl apply -f "$work/job.yaml" >&2

pod=""
for _ in $(seq 1 150); do  # up to 5 minutes for the pod to be scheduled and started
  pod="$(kubectl -n "$namespace" get pods -l job-name=conformance -o name 2>/dev/null | head -n1)"
  if [[ -n "$pod" ]]; then
    state="$(kubectl -n "$namespace" get "$pod" -o jsonpath='{.status.phase} {.status.containerStatuses[0].state.waiting.reason}' 2>/dev/null || true)"
    case "$state" in
      Running*|Succeeded*|Failed*) break ;;
      *ErrImage*|*ImagePull*|*CreateContainer*|*InvalidImageName*)
        kubectl -n "$namespace" describe "$pod" >&2 || true
        die "the suite's pod cannot start: $state" ;;
    esac
  fi
  sleep 2
done
[[ "${state:-}" =~ ^(Running|Succeeded|Failed) ]] || die "the suite's pod did not start within 5 minutes (${state:-no pod})"

phase "suite running in $pod; following its log into $work/suite.log"
{
  echo "# kubeferry $impl_version ($what), Gateway API $version $profile"
  echo "# suite image $suite_image; chart gatewayAPI.enabled=$gateway_api, replicas $replicas"
} >"$work/suite.log"
# Test names as they pass on stderr; everything in the log file.
timeout "$((deadline + 120))" "$kubectl_bin" --context "$context" -n "$namespace" logs -f "$pod" \
  | tee -a "$work/suite.log" \
  | grep --line-buffered -E '^\s*--- (PASS|FAIL|SKIP)|^(PASS|FAIL|ok)$|conformance exit status' >&2 || true
# `logs -f` can end early (an API server hiccup): wait for the container to end, then take the
# whole log if the followed one lacks the runner's last line.
for _ in $(seq 1 "$((deadline / 5 + 30))"); do
  exit_code="$(kubectl -n "$namespace" get "$pod" -o jsonpath='{.status.containerStatuses[0].state.terminated.exitCode}' 2>/dev/null || true)"
  [[ -n "$exit_code" ]] && break
  sleep 5
done
if ! grep -q '^=== kubeferry conformance exit status ' "$work/suite.log"; then
  log "the followed log is incomplete; fetching the whole log"
  kubectl -n "$namespace" logs "$pod" >>"$work/suite.log" 2>&1 || true
fi
phase "suite ended (exit status ${exit_code:-unknown}); $(wc -c <"$work/suite.log") bytes of log"

# --- 5. the report --------------------------------------------------------------------------------
sed -n '/^=== kubeferry conformance report begin ===$/,/^=== kubeferry conformance report end ===$/p' \
  "$work/suite.log" | sed '1d;$d' >"$work/report.yaml"
if [[ ! -s "$work/report.yaml" ]]; then
  rm -f "$work/report.yaml"
  grep -E 'runner:|Error|FAIL' "$work/suite.log" | tail -n 20 >&2 || true
  die "no ConformanceReport in the suite's log ($work/suite.log)"
fi
# Prints the summary; exits 0 only when every profile's core result is success.
core_ok=true
"$python" - "$work/report.yaml" >"$work/summary.txt" <<'PY' || core_ok=false
import sys
import yaml

report = yaml.safe_load(open(sys.argv[1]))
ok = bool(report.get("profiles"))
print(f"Gateway API {report.get('gatewayAPIVersion')} ({report.get('gatewayAPIChannel')}), "
      f"mode {report.get('mode')}, {report.get('implementation', {}).get('project')} "
      f"{report.get('implementation', {}).get('version')}")
for profile in report.get("profiles") or []:
    core = profile.get("core") or {}
    stats = core.get("statistics") or {}
    print(f"{profile.get('name')}: core {core.get('result')} "
          f"(passed {stats.get('Passed', 0)}, failed {stats.get('Failed', 0)}, "
          f"skipped {stats.get('Skipped', 0)})")
    for test in core.get("failedTests") or []:
        print(f"  core failed: {test}")
    for test in core.get("skippedTests") or []:
        print(f"  core skipped: {test}")
    extended = profile.get("extended") or {}
    if extended:
        stats = extended.get("statistics") or {}
        print(f"  extended {extended.get('result')} (passed {stats.get('Passed', 0)}, "
              f"failed {stats.get('Failed', 0)}, skipped {stats.get('Skipped', 0)}); "
              f"supported: {', '.join(extended.get('supportedFeatures') or []) or 'none'}")
        for test in extended.get("failedTests") or []:
            print(f"  extended failed: {test}")
    ok = ok and core.get("result") == "success"
sys.exit(0 if ok else 1)
PY
cat "$work/summary.txt" >&2
log "report: $work/report.yaml; log: $work/suite.log"

if [[ " ${CONFORMANCE_ARGS:-} " == *" -run-test="* ]]; then
  # One test: the profile is "partial" by design; the test's own result is the suite's status.
  [[ "${exit_code:-}" == 0 ]] || die "the test failed (suite exit status ${exit_code:-unknown})"
  log "the test passed (a -run-test run never writes a report to $out)"
  exit 0
fi
if [[ "$core_ok" != true ]]; then
  die "GATEWAY-HTTP core tests did not all pass (see above); nothing was written to $out"
fi
if [[ "${exit_code:-}" != 0 ]]; then
  die "the suite exited with status ${exit_code:-unknown} (a supported extended feature failed?); nothing was written to $out"
fi
if [[ -n "${CONFORMANCE_ARGS:-}" || -n "${CONFORMANCE_SUPPORTED_FEATURES:-}" || "$gateway_api" != true \
      || "$tree" != HEAD ]]; then
  log "core passed, but with CONFORMANCE_ARGS / CONFORMANCE_SUPPORTED_FEATURES / CONFORMANCE_GATEWAY_API / CONFORMANCE_TREE set this is not the reference run; nothing was written to $out"
  exit 0
fi
# The suite's own naming: <channel>-<implementation version>-<mode>-report.yaml.
name="standard-$impl_version-default"
mkdir -p "$out"
cp "$work/report.yaml" "$out/$name-report.yaml"
cp "$work/suite.log" "$out/$name.log"
phase "passed: $out/$name-report.yaml and $out/$name.log"
