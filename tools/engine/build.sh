#!/usr/bin/env bash
# Build, from the Go module proxy, into a versioned cache outside the clone (or reuse):
#   bin/pulumi                   the Pulumi CLI pinned in go.mod (pkg/v3/cmd/pulumi)
#   bin/pulumi-resource-libvirt  the libvirt provider: the Terraform bridge around the upstream
#                                Terraform provider, pinned in libvirt/go.mod (see README.md)
#
#   tools/engine/build.sh          # messages on stderr; stdout's last line is the bin dir
#   PATH="$(tools/engine/build.sh):$PATH" pulumi version
#
# Cache: ${TWINSTACK_ENGINE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/twinstack/engine}/<key>/bin/
# where <key> = <pulumi version>-<12 hex of sha256 over both modules' go.mod and go.sum, the
# provider's main.go, this script and the Go toolchain/platform>. Any edit to those gives a
# new key, so a stale binary is never reused.
set -euo pipefail
shopt -s inherit_errexit
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
self="$here/$(basename "${BASH_SOURCE[0]}")"
cd "$here"

# Go's own install location, for shells whose PATH lacks it (CI's non-login shell)
command -v go >/dev/null || PATH="$PATH:/usr/local/go/bin"
command -v go >/dev/null || { echo "build.sh: 'go' not found on PATH or in /usr/local/go/bin" >&2; exit 1; }

version="$(go list -m -f '{{.Version}}' github.com/pulumi/pulumi/pkg/v3)"
toolchain="$(go env GOVERSION GOOS GOARCH | paste -sd' ')"
hash="$(cat go.mod go.sum libvirt/go.mod libvirt/go.sum libvirt/main.go "$self" <(echo "$toolchain") \
  | sha256sum | cut -c1-12)"
key="$version-$hash"
cache="${TWINSTACK_ENGINE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/twinstack/engine}"
bindir="$cache/$key/bin"
mkdir -p "$bindir"

# build NAME DIR PACKAGE [LDFLAGS...]: go build in DIR into bindir/NAME unless it is there.
build() {
  local name=$1 dir=$2 pkg=$3 ldflags=${4:-}
  local bin="$bindir/$name"
  if [ -x "$bin" ]; then
    echo "build.sh: reused $bin ($(du -h "$bin" | cut -f1))" >&2
    return 0
  fi
  local tmp
  tmp="$(mktemp "$bindir/.$name.XXXXXX")"
  # shellcheck disable=SC2064 # expand now: the trap must remove this very file
  trap "rm -f '$tmp'" EXIT
  echo "build.sh: building $name ($toolchain) -> $bin" >&2
  local start=$EPOCHREALTIME
  (cd "$dir" && go build -trimpath -buildvcs=false -ldflags "-s -w $ldflags" -o "$tmp" "$pkg")
  local end=$EPOCHREALTIME
  chmod 0755 "$tmp"
  mv -f "$tmp" "$bin" # rename(2) in the same directory: atomic, a concurrent build just wins or loses
  trap - EXIT
  echo "build.sh: built $name in $(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')s," \
    "$(stat -c %s "$bin") bytes ($(du -h "$bin" | cut -f1))" >&2
}

build pulumi "$here" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi \
  "-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$version"
build pulumi-resource-libvirt "$here/libvirt" .
echo "$bindir"
