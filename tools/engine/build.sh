#!/usr/bin/env bash
# Build the Pulumi CLI pinned in go.mod (github.com/pulumi/pulumi/pkg/v3/cmd/pulumi) from the
# Go module proxy into a versioned cache outside the clone, or reuse an earlier build.
#
#   tools/engine/build.sh          # messages on stderr; stdout's last line is the bin dir
#   PATH="$(tools/engine/build.sh):$PATH" pulumi version
#
# Cache: ${TWINSTACK_ENGINE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/twinstack/engine}/<key>/bin/pulumi
# where <key> = <pulumi version>-<12 hex of sha256 over go.mod, go.sum, this script and the
# Go toolchain/platform>. Any edit to those gives a new key, so a stale binary is never reused.
set -euo pipefail
shopt -s inherit_errexit
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
self="$here/$(basename "${BASH_SOURCE[0]}")"
cd "$here"

command -v go >/dev/null || { echo "build.sh: 'go' not found on PATH" >&2; exit 1; }

version="$(go list -m -f '{{.Version}}' github.com/pulumi/pulumi/pkg/v3)"
toolchain="$(go env GOVERSION GOOS GOARCH | paste -sd' ')"
hash="$(cat go.mod go.sum "$self" <(echo "$toolchain") | sha256sum | cut -c1-12)"
key="$version-$hash"
cache="${TWINSTACK_ENGINE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/twinstack/engine}"
bindir="$cache/$key/bin"
bin="$bindir/pulumi"

if [ -x "$bin" ]; then
  echo "build.sh: reused $bin ($(du -h "$bin" | cut -f1))" >&2
else
  mkdir -p "$bindir"
  tmp="$(mktemp "$bindir/.pulumi.XXXXXX")"
  trap 'rm -f "$tmp"' EXIT
  echo "build.sh: building pulumi $version ($toolchain) -> $bin" >&2
  start=$EPOCHREALTIME
  go build -trimpath \
    -ldflags "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$version" \
    -o "$tmp" github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
  end=$EPOCHREALTIME
  chmod 0755 "$tmp"
  mv -f "$tmp" "$bin" # rename(2) in the same directory: atomic, a concurrent build just wins or loses
  trap - EXIT
  size=$(stat -c %s "$bin")
  echo "build.sh: built in $(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')s, $size bytes ($(du -h "$bin" | cut -f1))" >&2
fi
echo "$bindir"
