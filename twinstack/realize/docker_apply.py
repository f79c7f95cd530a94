"""Apply the plan's Docker resources through the Docker SDK (see MAPPING.md).

Order as the engine would walk the dependency graph: networks, volumes, images,
containers. A resource that already exists with the same recorded inputs is kept;
a container whose inputs changed is removed and created again (the components set
``deleteBeforeReplace`` on containers); volumes are never replaced, so data survives.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from twinstack.errors import TwinstackError
from twinstack.realize.records import (
    DOCKER_CONTAINER,
    DOCKER_NETWORK,
    DOCKER_REMOTE_IMAGE,
    DOCKER_VOLUME,
    Plan,
    Record,
    labels_of,
)

MIB = 1024 * 1024
DIGEST_LABEL = "twinstack.realize.digest"
"""Harness-only label: hash of the recorded inputs, to decide keep vs replace."""

Log = Callable[[str], None]


@dataclass
class DockerApplied:
    """What :func:`apply_docker` created or kept, by physical name."""

    networks: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    containers: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9,
            "h": 3600 * 10**9}  # fmt: skip


def go_duration_ns(text: str) -> int:
    """Go's ``time.ParseDuration`` (what the provider uses for healthcheck fields), in ns."""
    if text in ("0", ""):
        return 0
    pos, total = 0, Decimal(0)
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += Decimal(m.group(1)) * _UNIT_NS[m.group(2)]
        pos = m.end()
    if pos != len(text):
        raise TwinstackError(f"not a duration: {text!r} (expected e.g. '5s', '1m30s')")
    return int(total)


def nano_cpus(cpus: str) -> int:
    """Docker's ``opts.ParseCPUs``: a decimal CPU count as billionths of a CPU."""
    try:
        value = Decimal(cpus)
    except ArithmeticError:
        raise TwinstackError(f"cpus: {cpus!r} is not a decimal number") from None
    return int(value * 10**9)


# ------------------------------------------------------------------------- pieces


def _network(client: Any, rec: Record, log: Log) -> str:
    import docker.errors
    from docker.types import IPAMConfig, IPAMPool

    i = rec.inputs
    name = i["name"]
    try:
        client.networks.get(name)
        return str(name)
    except docker.errors.NotFound:
        pass
    pools = [
        IPAMPool(subnet=c.get("subnet"), gateway=c.get("gateway"), iprange=c.get("ipRange"))
        for c in i.get("ipamConfigs", [])
    ]
    log(f"docker network create {name}")
    client.networks.create(
        name,
        driver=i.get("driver", "bridge"),
        internal=bool(i.get("internal", False)),
        ipam=IPAMConfig(driver=i.get("ipamDriver", "default"), pool_configs=pools)
        if pools
        else None,
        labels=labels_of(i),
        options=i.get("options") or None,
    )
    return str(name)


def _volume(client: Any, rec: Record, log: Log) -> str:
    import docker.errors

    i = rec.inputs
    name = i["name"]
    try:
        client.volumes.get(name)
        return str(name)  # kept: a volume is never replaced, its data survives
    except docker.errors.NotFound:
        pass
    log(f"docker volume create {name}")
    client.volumes.create(
        name=name, driver=i.get("driver", "local"), driver_opts=i.get("driverOpts") or None,
        labels=labels_of(i),
    )  # fmt: skip
    return str(name)


def _image(client: Any, rec: Record, root: Path, log: Log) -> str:
    import docker.errors

    i = rec.inputs
    tag = str(i["name"])
    try:
        client.images.get(tag)
        return tag  # the tag is the build context's content hash: same tag, same image
    except docker.errors.ImageNotFound:
        pass
    build = i.get("build") or {}
    context = (root / build.get("context", ".")).resolve()
    if not context.is_dir():
        raise TwinstackError(
            f"image {tag}: build context {context} does not exist (plan the stack first: "
            "planning writes the rendered build context)"
        )
    log(f"docker build {tag} ({context})")
    try:
        client.images.build(
            path=str(context),
            dockerfile=build.get("dockerfile", "Dockerfile"),  # relative to the context
            tag=tag,
            platform=build.get("platform"),
            buildargs=build.get("buildArgs") or None,
            target=build.get("target"),
            rm=True,
            forcerm=True,
        )
    except docker.errors.BuildError as exc:
        tail = "".join(str(x.get("stream", x.get("error", ""))) for x in exc.build_log)[-1500:]
        raise TwinstackError(f"image {tag}: docker build failed: {exc.msg}\n{tail}") from None
    return tag


def _remote_image(client: Any, rec: Record) -> str:
    import docker.errors

    name = str(rec.inputs["name"])
    try:
        client.images.get(name)
    except docker.errors.ImageNotFound:
        raise TwinstackError(
            f"image {name} is not present locally and this harness does not pull "
            "(no registry access in tests); build or load it first"
        ) from None
    return name


def container_create_args(rec: Record) -> tuple[dict[str, Any], dict[str, Any]]:
    """(``create_container`` kwargs, ``create_host_config`` kwargs) from recorded inputs.

    Pure, so the mapping is unit-testable without a daemon. MAPPING.md has the table.
    """
    from docker.types import LogConfig, Mount

    i = rec.inputs
    ports = i.get("ports", [])
    exposed = [(int(p["internal"]), p.get("protocol", "tcp")) for p in ports]
    bindings: dict[str, list[tuple[str, int] | tuple[str] | int]] = {}
    for p in ports:
        key = f"{int(p['internal'])}/{p.get('protocol', 'tcp')}"
        if "external" in p or "ip" in p:
            ip = p.get("ip", "")
            bindings.setdefault(key, []).append(
                (ip, int(p["external"])) if "external" in p else (ip,)
            )
    host: dict[str, Any] = {
        "port_bindings": bindings or None,
        "restart_policy": {
            "Name": i.get("restart", "no"),
            "MaximumRetryCount": int(i.get("maxRetryCount", 0)),
        },
        "read_only": bool(i.get("readOnly", False)),
        "log_config": LogConfig(
            type=i.get("logDriver", "json-file"), config=dict(i.get("logOpts", {}))
        ),
        "init": bool(i.get("init", False)),
        "privileged": bool(i.get("privileged", False)),
        "publish_all_ports": bool(i.get("publishAllPorts", False)),
    }
    if "memory" in i:
        host["mem_limit"] = int(i["memory"]) * MIB
    if "memorySwap" in i:
        swap = int(i["memorySwap"])
        host["memswap_limit"] = swap * MIB if swap > 0 else swap
    if "cpus" in i:
        host["nano_cpus"] = nano_cpus(str(i["cpus"]))
    if i.get("tmpfs"):
        host["tmpfs"] = dict(i["tmpfs"])
    caps = i.get("capabilities") or {}
    if caps.get("drops"):
        host["cap_drop"] = list(caps["drops"])
    if caps.get("adds"):
        host["cap_add"] = list(caps["adds"])
    if i.get("securityOpts"):
        host["security_opt"] = list(i["securityOpts"])
    if i.get("networkMode"):
        host["network_mode"] = i["networkMode"]
    mounts = [
        Mount(
            target=m["target"],
            source=m.get("source"),
            type=m.get("type", "volume"),
            read_only=bool(m.get("readOnly", False)),
        )
        for m in i.get("mounts", [])
    ]
    if mounts:
        host["mounts"] = mounts
    labels = labels_of(i)
    labels[DIGEST_LABEL] = rec.digest()
    create: dict[str, Any] = {
        "image": i["image"],
        "name": i["name"],
        "hostname": i.get("hostname"),
        "environment": list(i.get("envs", [])) or None,
        "user": i.get("user") or "",
        "labels": labels,
        "ports": exposed or None,
        "command": i.get("command"),
        "entrypoint": i.get("entrypoints"),
        "working_dir": i.get("workingDir"),
        "stop_signal": i.get("stopSignal"),
    }
    hc = i.get("healthcheck")
    if hc:
        create["healthcheck"] = {
            "test": list(hc["tests"]),
            "interval": go_duration_ns(hc.get("interval", "0s")),
            "timeout": go_duration_ns(hc.get("timeout", "0s")),
            "retries": int(hc.get("retries", 0)),
            "start_period": go_duration_ns(hc.get("startPeriod", "0s")),
        }
    return create, host


def upload_archive(uploads: list[dict[str, Any]]) -> bytes:
    """The tar the provider sends for a container's ``upload`` blocks (``content`` or
    ``contentBase64``; ``permissions``, else 0744 if ``executable``, else 0644; numeric
    ``owner``/``group``)."""
    import base64
    import io
    import tarfile

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for u in uploads:
            if u.get("contentBase64"):
                data = base64.b64decode(str(u["contentBase64"]))
            else:
                data = str(u.get("content", "")).encode()
            info = tarfile.TarInfo(str(u["file"]).lstrip("/"))
            info.size = len(data)
            if u.get("permissions"):
                info.mode = int(str(u["permissions"]), 8)
            else:
                info.mode = 0o744 if u.get("executable") else 0o644
            info.uid = int(u.get("owner") or 0)
            info.gid = int(u.get("group") or 0)
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _container(client: Any, rec: Record, log: Log, applied: DockerApplied, on_create: Log) -> str:
    import docker.errors

    i = rec.inputs
    name = str(i["name"])
    try:
        existing = client.containers.get(name)
    except docker.errors.NotFound:
        existing = None
    if existing is not None:
        same = existing.labels.get(DIGEST_LABEL) == rec.digest()
        if same and existing.status in ("running", "restarting"):
            return name
        log(f"docker stop+rm {name} (inputs changed: replace)")
        # the provider's delete: stop with destroy_grace_seconds, then remove
        existing.stop(timeout=int(i.get("destroyGraceSeconds", 0)))
        existing.remove(force=True)
        applied.replaced.append(name)
    create, host = container_create_args(rec)
    api = client.api
    log(f"docker create {name} ({i['image']})")
    on_create(name)
    cid = api.create_container(host_config=api.create_host_config(**host), **create)["Id"]
    advanced = i.get("networksAdvanced") or []
    if advanced:
        # as the provider: leave the default bridge, join each declared network
        try:
            api.disconnect_container_from_network(cid, "bridge")
        except docker.errors.APIError as exc:
            if "is not connected" not in str(exc):
                raise
        for net in advanced:
            api.connect_container_to_network(
                cid,
                net["name"],
                aliases=net.get("aliases"),
                ipv4_address=net.get("ipv4Address"),
                ipv6_address=net.get("ipv6Address"),
            )
    if i.get("uploads"):
        # as the provider: one tar of the files, extracted at / before the start
        log(f"docker cp -> {name}: {', '.join(str(u['file']) for u in i['uploads'])}")
        api.put_archive(cid, "/", upload_archive(i["uploads"]))
    if i.get("start", True):
        api.start(cid)
        if i.get("mustRun", True):
            state = api.inspect_container(cid)["State"]
            if not state.get("Running") and not state.get("Restarting"):
                raise TwinstackError(
                    f"container {name} exited right after start (exit {state.get('ExitCode')}): "
                    f"{state.get('Error') or 'see docker logs ' + name}"
                )
    return name


def apply_docker(
    plan: Plan,
    client: Any,
    *,
    root: Path,
    log: Log = lambda _m: None,
    on_create: Log = lambda _n: None,
) -> DockerApplied:
    """Create (or keep) every Docker resource of the plan; see the module docstring."""
    applied = DockerApplied()
    for rec in plan.of_type(DOCKER_NETWORK):
        applied.networks.append(_network(client, rec, log))
    for rec in plan.of_type(DOCKER_VOLUME):
        applied.volumes.append(_volume(client, rec, log))
    for rec in plan.of_type(DOCKER_REMOTE_IMAGE):
        if rec.inputs.get("build"):
            applied.images.append(_image(client, rec, root, log))
        else:
            applied.images.append(_remote_image(client, rec))
    for rec in plan.of_type(DOCKER_CONTAINER):
        applied.containers.append(_container(client, rec, log, applied, on_create))
    return applied


# ------------------------------------------------------------------------- health


@dataclass
class Health:
    """Readiness verdict of one instance."""

    name: str
    healthy: bool
    status: str
    step: str = ""
    detail: str = ""
    seconds: float = 0.0

    def __str__(self) -> str:
        extra = f" at {self.step}" if self.step else ""
        more = f": {self.detail}" if self.detail else ""
        return f"{self.name}: {self.status}{extra}{more} ({self.seconds:.1f}s)"


def container_deadline_s(rec: Record) -> float:
    """How long Docker itself may take to call a container healthy or unhealthy."""
    hc = rec.inputs.get("healthcheck") or {}
    if not hc:
        return 30.0
    interval = go_duration_ns(hc.get("interval", "30s")) / 1e9 or 30.0
    timeout = go_duration_ns(hc.get("timeout", "30s")) / 1e9 or 30.0
    start = go_duration_ns(hc.get("startPeriod", "0s")) / 1e9
    retries = int(hc.get("retries", 3)) or 3
    return start + (interval + timeout) * (retries + 1) + 10.0


def wait_container(client: Any, name: str, *, timeout_s: float) -> Health:
    """Poll Docker's own health status (no network) until healthy/unhealthy or timeout."""
    import docker.errors

    start = time.monotonic()
    deadline = start + timeout_s
    status = "starting"
    while True:
        try:
            state = client.api.inspect_container(name)["State"]
        except docker.errors.NotFound:
            return Health(name, False, "missing", detail="container does not exist")
        health = state.get("Health")
        elapsed = time.monotonic() - start
        if health is None:
            if state.get("Running"):
                return Health(name, True, "running", seconds=elapsed)
            status = "exited"
        else:
            status = health.get("Status", "starting")
            if status == "healthy":
                return Health(name, True, status, seconds=elapsed)
            if status == "unhealthy":
                log = (health.get("Log") or [{}])[-1]
                return Health(
                    name, False, status, step="healthcheck",
                    detail=f"exit {log.get('ExitCode')}: {str(log.get('Output', '')).strip()}",
                    seconds=elapsed,
                )  # fmt: skip
        if time.monotonic() > deadline:
            return Health(
                name, False, "timeout", step=status,
                detail=f"not healthy after {timeout_s:.0f}s", seconds=elapsed,
            )  # fmt: skip
        time.sleep(0.25)
