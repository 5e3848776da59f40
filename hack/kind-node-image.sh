#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Provides a kind node image and prints its name -- and nothing else -- on stdout.
#
# Which image, in order:
#   1. $KIND_NODE_IMAGE, present locally or pulled (an explicit choice; fails if neither works);
#   2. kind's own default node image for the pinned kind, if present locally or pullable (a
#      machine with a registry: nothing is built);
#   3. a node image assembled here, cached in Docker as kubeferry.local/kind-node:<k8s>-<recipe>,
#      where <recipe> hashes this script, hack/kind/ and the pinned versions; a second run reuses
#      it. This is the path of machines without a container registry.
#
# Why not `kind build node-image`: it fetches etcd, coredns, pause, kindnetd and local-path images
# from registries. The assembled image holds, instead:
#   - a Debian rootfs (debootstrap) with systemd, containerd 1.6, runc and the CNI plugins from
#     Debian, and kind's base files (entrypoint, units, crictl config) taken from the kind module
#     in the Go module cache, with the steps of kind's images/base/Dockerfile done by hand;
#   - kubeadm, kubelet, kubectl, kube-scheduler and kube-proxy built from the Go module proxy with
#     the envtest wrapper module (hack/envtest/kubernetes), and kube-apiserver,
#     kube-controller-manager and etcd from hack/envtest.sh itself: one Kubernetes build;
#   - the control-plane images, CoreDNS (built from its Go module) and pause (built from the
#     Kubernetes source with gcc -static), imported into the node's containerd under the names
#     `kubeadm config images list` gives, so kubeadm pulls nothing;
#   - a static bridge CNI (hack/kind/node/10-kubeferry-bridge.conflist) for a single node.
# Everything is built in temporary directories and only renamed or tagged into place when
# complete, under one lock, so a failed or concurrent build never leaves a half-made entry.
#
# Environment: KIND_NODE_IMAGE, KUBEFERRY_CACHE, KUBEFERRY_DEBIAN_MIRROR.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
prog=kind-node-image
# shellcheck source=lib.sh
source "$here/lib.sh"
# shellcheck source=envtest/versions.env
source "$here/envtest/versions.env"
# shellcheck source=kind/versions.env
source "$here/kind/versions.env"
mirror="${KUBEFERRY_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
store="$cache/kind"
wrapper="$here/envtest/kubernetes"
kind_src="$(go env GOMODCACHE 2>/dev/null || true)/sigs.k8s.io/kind@$KIND_VERSION"

present() { docker image inspect "$1" >/dev/null 2>&1; }
pullable() { docker pull "$1" >&2 2>/dev/null; }

# --- 1 and 2: an image that needs no build ------------------------------------------------------
"$here/docker-engine.sh"
if [[ -n "${KIND_NODE_IMAGE:-}" ]]; then
  present "$KIND_NODE_IMAGE" || pullable "$KIND_NODE_IMAGE" \
    || die "KIND_NODE_IMAGE=$KIND_NODE_IMAGE is neither present locally nor pullable"
  printf '%s\n' "$KIND_NODE_IMAGE"
  exit 0
fi

recipe="$(cat "$0" "$here/kind/versions.env" "$here/envtest/versions.env" "$here/kind/node"/* \
  "$here/docker/runc-without-sys-resource" | sha256sum | cut -c1-12)"
image="kubeferry.local/kind-node:$KUBERNETES_VERSION-$recipe"
if present "$image"; then
  log "cached: $image"
  printf '%s\n' "$image"
  exit 0
fi

official="$(sed -n 's/^const Image = "\(.*\)"$/\1/p' "$kind_src/pkg/apis/config/defaults/image.go" 2>/dev/null || true)"
if [[ -z "$official" ]]; then
  "$here/kind.sh" >/dev/null  # puts the kind module into the module cache
  official="$(sed -n 's/^const Image = "\(.*\)"$/\1/p' "$kind_src/pkg/apis/config/defaults/image.go")"
fi
if present "$official" || pullable "$official"; then
  log "using kind's own node image $official"
  printf '%s\n' "$official"
  exit 0
fi
log "kind's node image $official cannot be pulled here (no registry): assembling $image"

# --- 3. assemble --------------------------------------------------------------------------------
is_root || die "assembling a node image needs root (debootstrap, chroot)"
command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap
command -v gcc >/dev/null 2>&1 || apt_install gcc libc6-dev
go_env_for_builds
mkdir -p "$store"
exec 9>"$store/.node-image.lock"
flock -w 3600 9 || die "timed out after 1h waiting for another node image build ($store/.node-image.lock)"
if present "$image"; then printf '%s\n' "$image"; exit 0; fi

work="$(mktemp -d "$store/.node-XXXXXX")"
builder=""
base="kubeferry.local/kind-node-base:$recipe"
proxy_base="kubeferry.local/kube-proxy-base:$DEBIAN_SUITE-$recipe"
# On any exit: the builder container, the work directory and every intermediate image go; only
# the finished node image (tagged last) stays.
# (set -e holds inside the trap too: every step here must be allowed to find nothing to do.)
cleanup() {
  if [[ -n "$builder" ]]; then docker rm -f "$builder" >/dev/null 2>&1 || true; fi
  docker rmi "$base" "$base-rootfs" "$proxy_base" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
trap 'printf "kind-node-image: error: unexpected failure at line %s; nothing was cached\n" "$LINENO" >&2' ERR
started=$SECONDS

# Builds a directory entry once: $1 = cache dir, $2 = function that fills the directory it is given.
cached_dir() {
  local entry="$1" fill="$2" tmp
  [[ -f "$entry/.complete" ]] && return 0
  tmp="$(mktemp -d "$store/.tmp-XXXXXX")"
  "$fill" "$tmp" || { rm -rf "$tmp"; die "$fill failed; nothing was cached"; }
  touch "$tmp/.complete"
  rm -rf "$entry"
  mv -T "$tmp" "$entry"
}

# Kubernetes binaries the envtest build does not make.
k8s_bin="$store/kubernetes-$KUBERNETES_VERSION"
build_kubernetes() {
  local ldflags
  ldflags="$(kubernetes_ldflags "$wrapper" "$KUBERNETES_VERSION")" || return 1
  log "building kubeadm, kubelet, kubectl, kube-scheduler, kube-proxy $KUBERNETES_VERSION (minutes when cold)"
  (cd "$wrapper" && go build -trimpath -ldflags "$ldflags" -o "$1/" \
    k8s.io/kubernetes/cmd/kubeadm k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kubectl \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kube-proxy) >&2 || return 1
  "$1/kubeadm" version -o short | grep -qx "$KUBERNETES_VERSION"
}
cached_dir "$k8s_bin" build_kubernetes
envtest_bin="$("$here/envtest.sh")"

# The images kubeadm will ask for, and the pause image containerd's config names.
mapfile -t required < <("$k8s_bin/kubeadm" config images list --kubernetes-version "$KUBERNETES_VERSION" 2>/dev/null)
[[ "${#required[@]}" -ge 6 ]] || die "kubeadm config images list gave: ${required[*]}"
sandbox_image="$(sed -n 's/^ *sandbox_image = "\(.*\)"/\1/p' "$kind_src/images/base/files/etc/containerd/config.toml")"
image_for() { printf '%s\n' "${required[@]}" | grep -m1 "/$1:" || die "kubeadm lists no $1 image"; }
coredns_image="$(image_for coredns)"
coredns_version="${coredns_image##*:}"

coredns_bin="$store/coredns-$coredns_version"
build_coredns() {
  log "building CoreDNS $coredns_version from its Go module (a few minutes when cold)"
  # `go install pkg@version` uses CoreDNS's own go.mod and go.sum: a pinned, verified graph.
  GOFLAGS="-buildvcs=false" GOBIN="$1" go install -trimpath -ldflags "-s -w" \
    "github.com/coredns/coredns@$coredns_version" >&2 || return 1
  "$1/coredns" -version | grep -q "CoreDNS-${coredns_version#v}"
}
cached_dir "$coredns_bin" build_coredns

pause_bin="$store/pause-$KUBERNETES_VERSION"
build_pause() {
  local src
  src="$(go env GOMODCACHE)/k8s.io/kubernetes@$KUBERNETES_VERSION/build/pause/linux/pause.c"
  [[ -f "$src" ]] || (cd "$wrapper" && go mod download "k8s.io/kubernetes@$KUBERNETES_VERSION")
  log "building pause from $src"
  gcc -Os -static -o "$1/pause" -DVERSION="${sandbox_image##*:}" "$src" || return 1
  strip "$1/pause"
}
cached_dir "$pause_bin" build_pause

# Debian root filesystems, cached as tarballs keyed by their package lists.
node_packages=systemd,systemd-sysv,dbus,containerd,runc,iptables,nftables,conntrack,ethtool,socat,util-linux,mount,kmod,iproute2,ca-certificates,procps,libseccomp2,pigz,containernetworking-plugins,jq,bash,curl
proxy_packages=iptables,nftables,conntrack,ipset,kmod,iproute2
rootfs_tarball() {  # $1 = name, $2 = packages; prints the tarball path
  local tarball="$store/rootfs-$1-$DEBIAN_SUITE-$(printf '%s' "$2" | sha256sum | cut -c1-8).tar" dir partial
  if [[ ! -s "$tarball" ]]; then
    dir="$(mktemp -d "$store/.rootfs-XXXXXX")"
    partial="$(mktemp "$store/.rootfs-XXXXXX.tar")"
    log "debootstrap $DEBIAN_SUITE for $1 (about a minute)"
    debootstrap --variant=minbase --include="$2" "$DEBIAN_SUITE" "$dir" "$mirror" \
      >"$store/debootstrap-$1.log" 2>&1 || { rm -rf "$dir" "$partial"; die "debootstrap failed; see $store/debootstrap-$1.log"; }
    rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
    tar -C "$dir" --numeric-owner -cf "$partial" .
    rm -rf "$dir"
    mv -f "$partial" "$tarball"
  fi
  printf '%s\n' "$tarball"
}
node_rootfs="$(rootfs_tarball node "$node_packages")"
proxy_rootfs="$(rootfs_tarball kube-proxy "$proxy_packages")"

# --- the images kubeadm and containerd will look for ---------------------------------------------
images="$work/images"
mkdir -p "$images"
# $1 = tag, $2 = base ("scratch" or an image), $3 = binary, $4 = path in the image; entrypoint = it.
make_image() {
  local tag="$1" base="$2" binary="$3" path="$4" ctx
  ctx="$(mktemp -d "$work/ctx-XXXXXX")"
  cp "$binary" "$ctx/bin"
  cat >"$ctx/Dockerfile" <<DOCKERFILE
FROM $base
COPY bin $path
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
LABEL io.kubeferry.kind-node-recipe=$recipe
ENTRYPOINT ["$path"]
DOCKERFILE
  DOCKER_BUILDKIT=0 docker build --network none -q -t "$tag" "$ctx" >/dev/null 2>&1 \
    || die "docker build of $tag failed"
  docker save -o "$images/$(basename "$path").tar" "$tag"
  docker rmi "$tag" >/dev/null
}
docker import "$proxy_rootfs" "$proxy_base" >/dev/null
log "control-plane images: ${required[*]} $sandbox_image"
make_image "$(image_for kube-apiserver)" scratch "$envtest_bin/kube-apiserver" /usr/local/bin/kube-apiserver
make_image "$(image_for kube-controller-manager)" scratch "$envtest_bin/kube-controller-manager" /usr/local/bin/kube-controller-manager
make_image "$(image_for kube-scheduler)" scratch "$k8s_bin/kube-scheduler" /usr/local/bin/kube-scheduler
make_image "$(image_for kube-proxy)" "$proxy_base" "$k8s_bin/kube-proxy" /usr/local/bin/kube-proxy
# kubeadm names its etcd image by the etcd it was released with; this one runs envtest's etcd
# ($ETCD_VERSION, the version Kubernetes $KUBERNETES_VERSION's own go.mod requires).
make_image "$(image_for etcd)" scratch "$envtest_bin/etcd" /usr/local/bin/etcd
make_image "$coredns_image" scratch "$coredns_bin/coredns" /coredns
make_image "$sandbox_image" scratch "$pause_bin/pause" /pause
docker rmi "$proxy_base" >/dev/null
# kubeadm's own pause tag may differ from containerd's; both names point at the same image.
kubeadm_pause="$(image_for pause)"

# --- the node rootfs: kind's images/base/Dockerfile, step by step --------------------------------
rootfs="$work/rootfs"
mkdir -p "$rootfs"
tar -C "$rootfs" --numeric-owner -xf "$node_rootfs"
files="$kind_src/images/base/files"
[[ -d "$files" ]] || die "kind's base files are missing from the module cache ($files)"
install -m 0755 "$files"/usr/local/bin/* "$rootfs/usr/local/bin/"
mkdir -p "$rootfs/kind/bin" "$rootfs/LICENSES" "$rootfs/etc/containerd" "$rootfs/etc/kubernetes/manifests"
cp -r "$files/kind/." "$rootfs/kind/"
chmod 0755 "$rootfs/kind" "$rootfs/kind/bin" "$rootfs"/kind/bin/*
install -m 0644 "$files"/LICENSES/* "$rootfs/LICENSES/"
install -m 0644 "$files/etc/crictl.yaml" "$rootfs/etc/"
install -m 0644 "$files"/etc/default/* "$rootfs/etc/default/"
install -m 0644 "$files"/etc/sysctl.d/* "$rootfs/etc/sysctl.d/"
mkdir -p "$rootfs/etc/systemd/system/kubelet.service.d"
install -m 0644 "$files"/etc/systemd/system/*.service "$files"/etc/systemd/system/*.slice "$rootfs/etc/systemd/system/"
install -m 0644 "$files"/etc/systemd/system/kubelet.service.d/* "$rootfs/etc/systemd/system/kubelet.service.d/"
# kind's containerd config targets kind's own containerd 2.x build; Debian's 1.6 needs three edits:
#   - no fuse-overlayfs proxy plugin (rootless only; its snapshotter is not installed);
#   - tolerate_missing_hugepages_controller was called tolerate_missing_hugetlb_controller in 1.6;
#   - restrict_oom_score_adj = true: pods may not lower their oom_score_adj below containerd's own.
#     kind sets it for rootless nodes; it is needed where the host's capability bounding set lacks
#     CAP_SYS_RESOURCE (hack/docker-engine.sh), and harmless elsewhere.
awk '
  /^\[proxy_plugins/ { skip = 1; next }
  /^\[/ { skip = 0 }
  skip { next }
  { sub(/tolerate_missing_hugepages_controller/, "tolerate_missing_hugetlb_controller") }
  /restrict_oom_score_adj/ { sub(/= *false/, "= true") }
  { print }
' "$files/etc/containerd/config.toml" >"$rootfs/etc/containerd/config.toml"
grep -q 'restrict_oom_score_adj = true' "$rootfs/etc/containerd/config.toml" \
  || die "kind's containerd config changed shape; update the awk edits in $0"
# kind's units run /usr/local/bin/containerd and /usr/local/sbin/runc; Debian installs them in /usr.
for b in containerd containerd-shim-runc-v2 ctr; do ln -sf "/usr/bin/$b" "$rootfs/usr/local/bin/$b"; done
ln -sf /usr/sbin/runc "$rootfs/usr/local/sbin/runc"
mkdir -p "$rootfs/opt/cni/bin" "$rootfs/etc/cni/net.d"
for p in "$rootfs"/usr/lib/cni/*; do ln -sf "/usr/lib/cni/$(basename "$p")" "$rootfs/opt/cni/bin/"; done
install -m 0644 "$here/kind/node/10-kubeferry-bridge.conflist" "$rootfs/etc/cni/net.d/"
chroot "$rootfs" /bin/sh -euc '
  ctr oci spec \
    | jq ".hooks.createContainer[.hooks.createContainer| length] |= . + {\"path\": \"/kind/bin/mount-product-files.sh\"}" \
    | jq "del(.process.rlimits)" >/etc/containerd/cri-base.json
  find /lib/systemd/system/sysinit.target.wants/ -name "systemd-tmpfiles-setup.service" -delete
  rm -f /lib/systemd/system/multi-user.target.wants/* /etc/systemd/system/*.wants/* \
        /lib/systemd/system/local-fs.target.wants/* /lib/systemd/system/sockets.target.wants/*udev* \
        /lib/systemd/system/sockets.target.wants/*initctl* /lib/systemd/system/basic.target.wants/*
  echo "ReadKMsg=no" >>/etc/systemd/journald.conf
  ln -sf /usr/lib/systemd/systemd /sbin/init
  systemctl enable kubelet.service containerd.service undo-mount-hacks.service >/dev/null 2>&1
  systemctl mask systemd-binfmt.service >/dev/null 2>&1
'
# What `kind build node-image` adds on top of the base image.
install -m 0755 "$k8s_bin/kubeadm" "$k8s_bin/kubelet" "$k8s_bin/kubectl" "$rootfs/usr/bin/"
printf '%s' "$KUBERNETES_VERSION" >"$rootfs/kind/version"
mkdir -p "$rootfs/kind/manifests"
install -m 0644 "$here/kind/node/default-cni.yaml" "$here/kind/node/default-storage.yaml" "$rootfs/kind/manifests/"

tar -C "$rootfs" --numeric-owner -c . | docker import - "$base-rootfs" >/dev/null
rm -rf "$rootfs"
# `docker import --change` takes no STOPSIGNAL: systemd as PID 1 stops cleanly on SIGRTMIN+3.
printf '%s\n' "FROM $base-rootfs" 'ENV container=docker' 'STOPSIGNAL SIGRTMIN+3' \
  'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' \
  | docker build --network none -q -t "$base" - >/dev/null
docker rmi "$base-rootfs" >/dev/null

# --- images into the node's containerd, as kind's own build does (run, import, commit) ------------
builder="$(docker run -d --privileged --entrypoint sleep -v "$images:/kind/images-import:ro" "$base" infinity)"
docker exec "$builder" bash -c 'nohup containerd >/var/log/containerd-build.log 2>&1 &'
docker exec "$builder" bash -c 'for i in $(seq 1 30); do [ -S /run/containerd/containerd.sock ] && ctr version >/dev/null 2>&1 && exit 0; sleep 1; done; cat /var/log/containerd-build.log; exit 1' >&2
for tarball in "$images"/*.tar; do
  docker exec "$builder" ctr --namespace=k8s.io images import --all-platforms --no-unpack \
    --digests "/kind/images-import/$(basename "$tarball")" >/dev/null
done
if [[ "$kubeadm_pause" != "$sandbox_image" ]]; then
  docker exec "$builder" ctr --namespace=k8s.io images tag --force "$sandbox_image" "$kubeadm_pause" >/dev/null
fi
imported="$(docker exec "$builder" ctr --namespace=k8s.io images list -q)"
for want in "${required[@]}" "$sandbox_image"; do
  grep -qx "$want" <<<"$imported" || die "image $want did not arrive in the node's containerd: $imported"
done
docker exec "$builder" pkill containerd
# PID 1 of the builder is `sleep`, which reaps nobody: a stopped containerd stays a zombie.
docker exec "$builder" bash -c 'for i in $(seq 1 40); do ps -C containerd -o stat= | grep -qv Z || exit 0; sleep 0.5; done; exit 1'
docker commit --change 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' \
  --change "LABEL io.kubeferry.kind-node-recipe=$recipe" "$builder" "$image" >/dev/null
docker rm -f "$builder" >/dev/null; builder=""
docker rmi "$base" >/dev/null
[[ "$(docker image inspect -f '{{.Config.StopSignal}}' "$image")" == "SIGRTMIN+3" ]] \
  || die "$image lost its stop signal"
# Older recipes of this image only take disk space.
docker images --format '{{.Repository}}:{{.Tag}}' kubeferry.local/kind-node | grep -vx "$image" \
  | xargs -r docker rmi >/dev/null 2>&1 || true
log "assembled $image in $((SECONDS - started))s"
printf '%s\n' "$image"
