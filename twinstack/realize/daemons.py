"""Connections to the real daemons, with errors that name the daemon that is missing."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from twinstack.errors import TwinstackError

if TYPE_CHECKING:
    import docker as docker_sdk

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
DEFAULT_LIBVIRT_URI = "qemu:///system"
START_HINT = "start it with `bash scripts/daemons.sh start`"


class DaemonUnavailable(TwinstackError):
    """A daemon the operation needs is not running or not reachable."""

    def __init__(self, daemon: str, address: str, detail: str) -> None:
        super().__init__(f"{daemon} is not reachable at {address}: {detail}; {START_HINT}")
        self.daemon = daemon
        self.address = address


def docker_client(host: str | None = None, *, timeout: int = 120) -> docker_sdk.DockerClient:
    """A Docker SDK client for ``host`` that has answered a ping."""
    import docker
    import docker.errors

    address = host or os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST
    try:
        client = docker.DockerClient(base_url=address, timeout=timeout)
        client.ping()
    except docker.errors.DockerException as exc:
        raise DaemonUnavailable("dockerd", address, _short(exc)) from None
    except OSError as exc:  # socket-level failures the SDK lets through
        raise DaemonUnavailable("dockerd", address, _short(exc)) from None
    return client


def libvirt_module() -> Any:
    """The libvirt-python module, or a clear error saying how to install it."""
    try:
        import libvirt
    except ImportError:
        raise TwinstackError(
            "libvirt-python is not installed; run `.venv/bin/pip install -e '.[libvirt]'` "
            "(needs Debian's libvirt-dev and pkg-config), or `bash scripts/daemons.sh start`"
        ) from None
    return libvirt


def libvirt_conn(uri: str | None = None) -> Any:
    """An open libvirt connection (``virConnect``) to ``uri``."""
    libvirt = libvirt_module()
    address = uri or DEFAULT_LIBVIRT_URI
    # libvirt prints its own errors to stderr unless a handler is set.
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    try:
        return libvirt.open(address)
    except libvirt.libvirtError as exc:
        raise DaemonUnavailable("libvirtd", address, _short(exc)) from None


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
