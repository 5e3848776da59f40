#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Provides uv, the tool that locks and installs kubeferry's dependencies (uv.lock), and prints the
# path of the uv binary -- and nothing else -- on stdout, so callers can write
# uv="$(hack/uv.sh)" && "$uv" sync --locked. Progress goes to stderr.
#
# uv comes from PyPI (its wheel holds the standalone binary), pinned by version and sha256, and is
# cached per version outside the checkout, so every clone on the machine shares one copy:
#   ${KUBEFERRY_CACHE:-$HOME/.cache/kubeferry}/tools/uv-<version>/bin/uv
# A fetch installs into a temporary directory beside the entry and is renamed into place only
# after the binary ran, so concurrent first runs never see a half-populated entry.
#
# UV_VERSION must match [tool.uv] required-version in pyproject.toml (a unit test checks it), so
# `make lock` and `make install` run the same uv everywhere.
set -euo pipefail

UV_VERSION="0.13.9"
# sha256 of the uv wheels for the platforms kubeferry is developed on; pip picks the one that fits
# and refuses it if its digest is not listed here.
UV_HASHES=(
  d7f459fe4fd247d830351c75686d3996ace3c6f3f728eb0e85a30b7ada0cef19  # manylinux_2_17_x86_64
  5435c5ce14a56431208ca0996416d310f1598e8c2c8ba707688985a16bb82dbe  # manylinux_2_17_aarch64
  ecb6028d79dc96fbeafffe5c8af62a7099487ebc05a701e76714eebcffd06375  # manylinux_2_28_aarch64
  c16ed11e013557536b3e60065f1b912f6407bd6518e041b961e23ef9e6b4fbf5  # macosx_10_12_x86_64
  66c512266d633bef48384a1f53003f41f2a8e7b36fe6e7fbfd3e0fd52d96fa63  # macosx_11_0_arm64
)

here="$(cd "$(dirname "$0")" && pwd)"
prog=uv
# shellcheck source=lib.sh
source "$here/lib.sh"

entry="$cache/tools/uv-$UV_VERSION"
runs() { [[ -x "$1/bin/uv" ]] && [[ "$("$1/bin/uv" --version 2>/dev/null)" == "uv $UV_VERSION"* ]]; }
if runs "$entry"; then
  printf '%s\n' "$entry/bin/uv"
  exit 0
fi

python="${PYTHON:-python3}"
command -v "$python" >/dev/null 2>&1 || die "no $python on PATH (set PYTHON=...)"
mkdir -p "$cache/tools"
work="$(mktemp -d "$cache/tools/.uv.XXXXXX")"
trap 'rm -rf "$work"' EXIT

log "fetching uv==$UV_VERSION from PyPI into $entry"
# A throwaway venv gives a pip whatever the system Python ships (ensurepip needs no network).
"$python" -m venv "$work/boot" >&2 || die "$python -m venv failed (Debian: apt-get install python3-venv)"
{
  printf 'uv==%s' "$UV_VERSION"
  for h in "${UV_HASHES[@]}"; do printf ' --hash=sha256:%s' "$h"; done
  printf '\n'
} >"$work/requirements.txt"
"$work/boot/bin/pip" install --quiet --disable-pip-version-check --require-hashes --only-binary=:all: \
  --target "$work/uv" -r "$work/requirements.txt" >&2 || die "installing uv==$UV_VERSION failed"
runs "$work/uv" || die "the uv binary from uv==$UV_VERSION did not run on $(uname -s)/$(uname -m)"

# Another run may have won the race; its entry is as good as ours.
mv -T "$work/uv" "$entry" 2>/dev/null || runs "$entry" || die "could not place $entry (a broken one is in the way? remove it)"
printf '%s\n' "$entry/bin/uv"
