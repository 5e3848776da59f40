#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Builds the kubeferry container image (default tag kubeferry:dev) from wheels built on the host.
#
#   hack/docker-build.sh [extra docker build args...]
#
# Steps, each skipped when already done:
#   1. a Docker engine (hack/docker-engine.sh): install docker.io from Debian if there is no
#      dockerd, start dockerd in the background if none answers (root only);
#   2. the base image. By default local/python-base:bookworm, made here because no container
#      registry may be reachable: debootstrap (minbase + python3, python3-venv, ca-certificates)
#      -> tarball cached under ${KUBEFERRY_CACHE:-$HOME/.cache/kubeferry}/ -> `docker import`.
#      With a registry, KUBEFERRY_BASE_IMAGE=python:3.12-slim uses the Dockerfile's own default;
#   3. wheels for the base image's Python: kubeferry itself from this checkout, its dependencies
#      as binary wheels for that Python version and platform: exactly the runtime set of uv.lock
#      (the versions the tests ran against), exported with their sha256 as wheels/requirements.txt,
#      which the image build installs with --require-hashes --no-index (no network, no CA bundle);
#   4. docker build --network host, context = a temporary directory holding only wheels/.
#
# Environment: KUBEFERRY_IMAGE (tag, default kubeferry:dev), KUBEFERRY_BASE_IMAGE,
# KUBEFERRY_CACHE, KUBEFERRY_DEBIAN_MIRROR (default http://deb.debian.org/debian).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
prog=docker-build
# shellcheck source=lib.sh
source "$here/lib.sh"
image="${KUBEFERRY_IMAGE:-kubeferry:dev}"
local_base="local/python-base:bookworm"
base="${KUBEFERRY_BASE_IMAGE:-$local_base}"
mirror="${KUBEFERRY_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
pip="$root/.venv/bin/pip"

# --- 1. engine: hack/docker-engine.sh (installs and starts dockerd when none answers) ------------
ensure_engine() { "$here/docker-engine.sh"; }

# --- 2. base image -----------------------------------------------------------------------------
ensure_local_base() {
  docker image inspect "$local_base" >/dev/null 2>&1 && return 0
  local tarball="$cache/python-base-bookworm.tar"
  if [[ ! -s "$tarball" ]]; then
    command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap
    is_root || die "debootstrap needs root to make $local_base"
    mkdir -p "$cache"
    local rootfs partial
    rootfs="$(mktemp -d "$cache/.rootfs.XXXXXX")"
    partial="$(mktemp "$cache/.python-base.XXXXXX")"  # per run: concurrent runs never clash
    # shellcheck disable=SC2064  # expand now: the trap must remove this run's files
    trap "rm -rf '$rootfs' '$partial'" EXIT
    log "debootstrap bookworm (minbase + python3) from $mirror: about a minute"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
      bookworm "$rootfs" "$mirror" >"$cache/debootstrap.log" 2>&1 \
      || die "debootstrap failed; see $cache/debootstrap.log"
    # Smaller image, and nothing from this host's apt state leaks in.
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    tar -C "$rootfs" --numeric-owner -cf "$partial" .
    mv -f "$partial" "$tarball"
    rm -rf "$rootfs"
    trap - EXIT
  fi
  log "docker import $tarball -> $local_base"
  docker import --change 'CMD ["python3"]' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    "$tarball" "$local_base" >/dev/null
}

# --- 3. wheels ---------------------------------------------------------------------------------
build_wheels() {
  local out="$1" pyver arch
  [[ -x "$pip" ]] || die "no $pip; run 'make install' first"
  pyver="$(docker run --rm --network none --entrypoint python3 "$base" \
    -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
  arch="$(docker run --rm --network none --entrypoint python3 "$base" \
    -c 'import platform; print(platform.machine())')"
  log "wheels for Python $pyver on $arch"
  "$pip" wheel --quiet --no-deps -w "$out" "$root" >"$out.log" 2>&1 \
    || { cat "$out.log" >&2; die "building the kubeferry wheel failed"; }
  # The locked runtime dependencies (no dev extra, not kubeferry itself), each with every sha256
  # the lock knows; --locked fails here, before any download, if uv.lock is stale.
  local uv
  uv="$("$here/uv.sh")"
  (cd "$root" && "$uv" export --quiet --locked --no-emit-project --no-header \
    --format requirements.txt -o "$out/requirements.txt") \
    || die "uv export failed; if uv.lock needs to be updated, run 'make lock'"
  # glibc 2.36 is bookworm's: accept every manylinux tag up to it (pip does not expand them).
  local platforms=() v
  for v in $(seq 36 -1 17); do platforms+=(--platform "manylinux_2_${v}_$arch"); done
  platforms+=(--platform "manylinux2014_$arch")
  "$pip" download --quiet --only-binary=:all: --implementation cp --python-version "$pyver" \
    "${platforms[@]}" --require-hashes -r "$out/requirements.txt" -d "$out" >&2
}

main() {
  ensure_engine
  if [[ "$base" == "$local_base" ]]; then
    ensure_local_base
  elif ! docker image inspect "$base" >/dev/null 2>&1; then
    docker pull "$base" >&2 || die "cannot pull $base (no registry?); unset KUBEFERRY_BASE_IMAGE to build on $local_base"
  fi

  local ctx
  ctx="$(mktemp -d)"
  # shellcheck disable=SC2064
  trap "rm -rf '$ctx'" EXIT
  build_wheels "$ctx/wheels"
  cp "$root/.dockerignore" "$ctx/.dockerignore"

  log "docker build -t $image (base $base)"
  docker build --network host --build-arg "BASE_IMAGE=$base" -t "$image" \
    -f "$root/Dockerfile" "$@" "$ctx" >&2
  # Every build leaves the build stage and the previous image dangling; keep the disk bounded.
  docker image prune --force --filter label=io.kubeferry.stage=build >/dev/null
  docker image prune --force --filter label=org.opencontainers.image.title=kubeferry >/dev/null
  log "built $image"
}

main "$@"
