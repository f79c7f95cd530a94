#!/usr/bin/env bash
# Build, from the Go module proxy, into a versioned cache outside the clone (or reuse):
#   bin/pulumi                   the Pulumi CLI pinned in go.mod (pkg/v3/cmd/pulumi)
#   bin/pulumi-resource-libvirt  the libvirt provider: the Terraform bridge around the upstream
#                                Terraform provider, pinned in libvirt/go.mod (see README.md)
#   bin/pulumi-resource-docker   the docker provider: the bridge around the upstream Terraform
#                                provider pinned below (UPSTREAM_DOCKER), built in a copy of
#                                that module with docker/_shim added (see README.md)
#
#   tools/engine/build.sh          # messages on stderr; stdout's last line is the bin dir
#   PATH="$(tools/engine/build.sh):$PATH" pulumi version
#
# Cache: ${TWINSTACK_ENGINE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/twinstack/engine}/<key>/bin/
# where <key> = <pulumi version>-<12 hex of sha256 over the three modules' go.mod and go.sum, the
# providers' Go files, this script and the Go toolchain/platform>. Any edit to those gives a
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
# The upstream docker provider: a commit the proxy serves (no tagged version is served), and
# the module hash `go mod download` must report for it (the copy is not checked by go.sum).
UPSTREAM_DOCKER=github.com/kreuzwerker/terraform-provider-docker@v0.0.0-20260916201441-96d331c98ff4
UPSTREAM_DOCKER_SUM=h1:T3HvvZCRd4h2qkMl+SXA2zza26Rdz8xqV81skikQWy4=
hash="$(cat go.mod go.sum libvirt/go.mod libvirt/go.sum libvirt/main.go \
  docker/go.mod docker/go.sum docker/main.go docker/_shim/shim.go "$self" <(echo "$toolchain") \
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

# docker_src: a build folder (under the cache key) with the docker wrapper module and, in
# ./upstream, the pinned upstream module plus the shim. Prints its path.
docker_src() {
  local src="$cache/$key/src/docker"
  if [ ! -f "$src/upstream/twinstackshim/shim.go" ]; then
    local info dir sum
    # outside any module; on failure the JSON's "Error" is shown below
    info="$(cd "$cache" && go mod download -json "$UPSTREAM_DOCKER")" || true
    dir="$(sed -n 's/^\t"Dir": "\(.*\)",$/\1/p' <<<"$info")"
    sum="$(sed -n 's/^\t"Sum": "\(.*\)",$/\1/p' <<<"$info")"
    if [ -z "$dir" ] || [ "$sum" != "$UPSTREAM_DOCKER_SUM" ]; then
      echo "build.sh: $UPSTREAM_DOCKER: expected $UPSTREAM_DOCKER_SUM, got '${sum:-nothing}':" >&2
      echo "$info" >&2
      exit 1
    fi
    rm -rf "$src"
    mkdir -p "$src"
    cp -R "$dir" "$src/upstream"
    chmod -R u+w "$src/upstream" # the module cache is read-only
    mkdir "$src/upstream/twinstackshim"
    cp "$here/docker/_shim/shim.go" "$src/upstream/twinstackshim/"
  fi
  cp "$here/docker/go.mod" "$here/docker/go.sum" "$here/docker/main.go" "$src/"
  echo "$src"
}
# prepared once per cache key, beside the binary (reuse costs a copy of three files)
src="$(docker_src)" # an assignment, so a failure in it stops the script (set -e)
build pulumi-resource-docker "$src" .
echo "$bindir"
