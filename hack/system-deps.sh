#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Installs the Debian packages the tests and benchmark need, only those missing.
set -euo pipefail
prog=system-deps
# shellcheck source=lib.sh
source "$(cd "$(dirname "$0")" && pwd)/lib.sh"
need=()
command -v nginx >/dev/null || need+=(nginx-light)
command -v haproxy >/dev/null || need+=(haproxy)
command -v wrk >/dev/null || need+=(wrk)
command -v ip >/dev/null || need+=(iproute2)
[[ ${#need[@]} -eq 0 ]] || apt_install "${need[@]}"
