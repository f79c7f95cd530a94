#!/usr/bin/env bash
# Start, stop or report the daemons the real-daemon tests need -- dockerd, virtlogd and
# libvirtd (qemu:///system) -- on a machine without systemd.
#
#   bash scripts/daemons.sh install  # only the Debian packages and libvirt-python in .venv
#   bash scripts/daemons.sh start    # install missing Debian packages, start what is not running
#   bash scripts/daemons.sh stop     # stop only what `start` started (pidfiles + markers)
#   bash scripts/daemons.sh status   # one line per daemon
#
# Idempotent: `start` twice starts nothing new; `stop` leaves a daemon that was already
# running before `start` alone. Readiness is a bounded poll of each daemon's API
# (`docker info`, `virsh version`), never a fixed sleep.
#
# Environment:
#   TWINSTACK_RUN_DIR   pidfiles and "started by us" markers (default /run/twinstack)
#   TWINSTACK_LOG_DIR   daemon logs (default /var/log/twinstack)
#   TWINSTACK_SKIP_APT  set to 1 to never call apt-get (fail instead when something is missing)
set -euo pipefail

RUN_DIR=${TWINSTACK_RUN_DIR:-/run/twinstack}
LOG_DIR=${TWINSTACK_LOG_DIR:-/var/log/twinstack}
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LIBVIRT_URI=qemu:///system
READY_TIMEOUT_S=${TWINSTACK_READY_TIMEOUT_S:-60}

PACKAGES=(
  docker.io libvirt-daemon-system libvirt-dev pkg-config qemu-system-x86 qemu-utils
  dnsmasq-base genisoimage debootstrap e2fsprogs iptables
)

log() { printf 'daemons: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

need_root() {
  [[ $(id -u) -eq 0 ]] || die "must run as root (dockerd and libvirtd qemu:///system need it)"
}

# ------------------------------------------------------------------------- packages

install_packages() {
  local missing=() p
  for p in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
      missing+=("$p")
    fi
  done
  if ((${#missing[@]})); then
    [[ ${TWINSTACK_SKIP_APT:-0} == 1 ]] && die "missing Debian packages: ${missing[*]}"
    log "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$LOG_DIR/apt.log" 2>&1 \
      || { tail -20 "$LOG_DIR/apt.log" >&2; die "apt-get install failed (log: $LOG_DIR/apt.log)"; }
  fi
  # Packages' maintainer scripts may try to start services (no systemd here): make sure
  # the directories the daemons expect exist.
  mkdir -p /var/lib/libvirt/images /var/log/libvirt/qemu /run/libvirt
}

# Without udev nobody applies Debian's rule for /dev/kvm (root:kvm 0660). libvirtd probes
# QEMU as root but checks KVM as the qemu user (libvirt-qemu, in group kvm): if that
# user cannot open /dev/kvm, every domain definition re-probes QEMU (~70 s here).
fix_kvm_node() {
  [[ -c /dev/kvm ]] && getent group kvm >/dev/null || return 0
  local want cur
  want="kvm 660"
  cur=$(stat -c '%G %a' /dev/kvm)
  [[ $cur == "$want" ]] && return 0
  [[ -e $RUN_DIR/kvm-node.orig ]] || stat -c '%g %a' /dev/kvm >"$RUN_DIR/kvm-node.orig"
  chgrp kvm /dev/kvm && chmod 0660 /dev/kvm
  log "/dev/kvm: set root:kvm 0660 as udev would (was $cur)"
}

restore_kvm_node() {
  [[ -e $RUN_DIR/kvm-node.orig ]] || return 0
  local gid mode
  read -r gid mode <"$RUN_DIR/kvm-node.orig"
  chgrp "$gid" /dev/kvm 2>/dev/null && chmod "$mode" /dev/kvm 2>/dev/null || true
  rm -f "$RUN_DIR/kvm-node.orig"
}

install_libvirt_python() {
  local py=$REPO/.venv/bin/python
  [[ -x $py ]] || { log "no $REPO/.venv; skipping libvirt-python"; return 0; }
  if ! "$py" -c 'import libvirt' 2>/dev/null; then
    log "installing libvirt-python into .venv"
    (cd "$REPO" && .venv/bin/pip install -q -e '.[libvirt]') >"$LOG_DIR/pip.log" 2>&1 \
      || { tail -20 "$LOG_DIR/pip.log" >&2; die "pip install -e '.[libvirt]' failed"; }
  fi
}

# ------------------------------------------------------------------------- helpers

pid_alive() { [[ -n ${1:-} ]] && kill -0 "$1" 2>/dev/null; }

pid_of() { # pidfile -> pid (empty when none or stale)
  local pid
  [[ -s $1 ]] || return 0
  pid=$(<"$1")
  pid_alive "$pid" && echo "$pid"
  return 0
}

# wait_for NAME CMD... : poll CMD until it succeeds, at most READY_TIMEOUT_S seconds.
wait_for() {
  local name=$1; shift
  local deadline=$((SECONDS + READY_TIMEOUT_S))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
  log "$name ready"
}

# stop_pid NAME PIDFILE : SIGTERM, bounded wait, then SIGKILL.
stop_pid() {
  local name=$1 pidfile=$2 pid deadline
  pid=$(pid_of "$pidfile")
  if [[ -z $pid ]]; then
    rm -f "$pidfile"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + 30))
  while pid_alive "$pid" && ((SECONDS < deadline)); do sleep 0.2; done
  if pid_alive "$pid"; then
    log "$name (pid $pid) ignored SIGTERM for 30 s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
  log "$name stopped"
}

docker_up() { docker info >/dev/null 2>&1; }
libvirt_up() { virsh -c "$LIBVIRT_URI" version >/dev/null 2>&1; }

# ------------------------------------------------------------------------- start

start_dockerd() {
  if docker_up; then
    [[ -e $RUN_DIR/started.dockerd ]] || log "dockerd already running (not ours; left alone)"
    return 0
  fi
  log "starting dockerd (log: $LOG_DIR/dockerd.log)"
  setsid dockerd --pidfile "$RUN_DIR/dockerd.pid" >"$LOG_DIR/dockerd.log" 2>&1 </dev/null &
  touch "$RUN_DIR/started.dockerd"
  wait_for dockerd docker_up \
    || { tail -20 "$LOG_DIR/dockerd.log" >&2; die "dockerd not ready after ${READY_TIMEOUT_S}s"; }
}

start_virtlogd() {
  if [[ -n $(pid_of "$RUN_DIR/virtlogd.pid") ]] || pgrep -x virtlogd >/dev/null; then
    return 0
  fi
  log "starting virtlogd"
  virtlogd -d -p "$RUN_DIR/virtlogd.pid"
  touch "$RUN_DIR/started.virtlogd"
  wait_for virtlogd test -S /run/libvirt/virtlogd-sock \
    || die "virtlogd socket /run/libvirt/virtlogd-sock did not appear"
}

start_libvirtd() {
  if libvirt_up; then
    [[ -e $RUN_DIR/started.libvirtd ]] || log "libvirtd already running (not ours; left alone)"
    return 0
  fi
  log "starting libvirtd (log: $LOG_DIR/libvirtd.log)"
  LIBVIRT_LOG_OUTPUTS="3:file:$LOG_DIR/libvirtd.log" libvirtd -d -p "$RUN_DIR/libvirtd.pid"
  touch "$RUN_DIR/started.libvirtd"
  wait_for libvirtd libvirt_up \
    || { tail -20 "$LOG_DIR/libvirtd.log" >&2; die "libvirtd not ready after ${READY_TIMEOUT_S}s"; }
}

cmd_start() {
  need_root
  mkdir -p "$RUN_DIR" "$LOG_DIR"
  install_packages
  install_libvirt_python
  fix_kvm_node
  start_dockerd
  start_virtlogd
  start_libvirtd
  cmd_status
}

# ------------------------------------------------------------------------- stop

stop_libvirtd() {
  [[ -e $RUN_DIR/started.libvirtd ]] || return 0
  if libvirt_up; then
    # libvirtd leaves its networks' dnsmasq and its guests' qemu running when it exits;
    # stop the networks it started so no dnsmasq outlives it. Guests are the tests' to
    # remove; list any left so they are not silently orphaned.
    local left
    left=$(virsh -c "$LIBVIRT_URI" list --name 2>/dev/null | sed '/^$/d' || true)
    [[ -z $left ]] || log "warning: domains still running under our libvirtd: $left"
    local net
    for net in $(virsh -c "$LIBVIRT_URI" net-list --name 2>/dev/null); do
      virsh -c "$LIBVIRT_URI" net-destroy "$net" >/dev/null 2>&1 || true
    done
  fi
  stop_pid libvirtd "$RUN_DIR/libvirtd.pid"
  rm -f "$RUN_DIR/started.libvirtd"
}

cmd_stop() {
  need_root
  stop_libvirtd
  if [[ -e $RUN_DIR/started.virtlogd ]]; then
    stop_pid virtlogd "$RUN_DIR/virtlogd.pid"
    rm -f "$RUN_DIR/started.virtlogd"
  fi
  if [[ -e $RUN_DIR/started.dockerd ]]; then
    stop_pid dockerd "$RUN_DIR/dockerd.pid"
    rm -f "$RUN_DIR/started.dockerd"
  fi
  restore_kvm_node
}

# ------------------------------------------------------------------------- status

cmd_status() {
  local name pid how
  for name in dockerd virtlogd libvirtd; do
    pid=$(pid_of "$RUN_DIR/$name.pid")
    if [[ -n $pid && -e $RUN_DIR/started.$name ]]; then
      how="running (started by twinstack, pid $pid)"
    elif pgrep -x "$name" >/dev/null; then
      how="running (not started by twinstack)"
    else
      how="stopped"
    fi
    printf '%-9s %s\n' "$name" "$how"
  done
}

cmd_install() {
  need_root
  mkdir -p "$RUN_DIR" "$LOG_DIR"  # the apt and pip logs go there, even on a new machine
  install_packages
  install_libvirt_python
}

case ${1:-} in
  install) cmd_install ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
