#!/usr/bin/env bash
# The one CI entry for the real-daemon tests:
#   build or reuse the Pulumi CLI and the libvirt provider (tools/engine/build.sh), start
#   dockerd + libvirtd (installing Debian packages if missing), build or reuse the base
#   images, run `pytest -m integration tests/integration` (the engine tests get the binaries
#   through TWINSTACK_ENGINE_BIN), and always stop the daemons this script started.
#   Exit status: pytest's.
#
#   bash scripts/integration.sh [extra pytest args]
set -uo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"

phase() { printf 'integration: %-28s %6ss\n' "$1" "$2" >&2; }

# Stop only what this run started: if both daemons already answered, leave them be.
already_up=0
if docker info >/dev/null 2>&1 && virsh -c qemu:///system version >/dev/null 2>&1; then
  already_up=1
fi
cleanup() {
  local rc=$?
  if ((already_up == 0)); then
    bash scripts/daemons.sh stop || true
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

start=$SECONDS
TWINSTACK_ENGINE_BIN=$(bash tools/engine/build.sh | tail -n1) || exit 1
export TWINSTACK_ENGINE_BIN
phase "engine build/reuse" $((SECONDS - start))

start=$SECONDS
bash scripts/daemons.sh start || exit 1
phase "daemons start" $((SECONDS - start))

start=$SECONDS
.venv/bin/python -m twinstack.images build || exit 1
phase "images build/reuse" $((SECONDS - start))

start=$SECONDS
TWINSTACK_INTEGRATION=1 .venv/bin/pytest -m integration tests/integration "$@"
rc=$?
phase "pytest -m integration" $((SECONDS - start))
exit "$rc"
