"""Apply the plan's libvirt resources through libvirt-python (see MAPPING.md).

The XML mirrors what dmacvicar/terraform-provider-libvirt (v0.8.x, bridged by
pulumi-libvirt 0.5.x) generates for the same inputs. Order: networks, pools, volumes
(uploaded base images, then clones and data disks), cloud-init seed ISOs, domains.
Existing pools, networks and volumes are kept; a domain whose recorded inputs changed
is destroyed and defined again (the components set ``deleteBeforeReplace``), and its
cloud-init ISO is written again; root clones and data volumes stay, so data survives.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from twinstack.errors import TwinstackError
from twinstack.realize.daemons import libvirt_module
from twinstack.realize.records import (
    LIBVIRT_CLOUDINIT,
    LIBVIRT_DOMAIN,
    LIBVIRT_NETWORK,
    LIBVIRT_POOL,
    LIBVIRT_VOLUME,
    Plan,
    Record,
)

Log = Callable[[str], None]
META_NS = "urn:twinstack:realize"
CONSOLE_DIR = Path("/var/log/twinstack/consoles")
"""Where the harness asks libvirt to copy each domain's serial console (virtlogd)."""


@dataclass
class LibvirtApplied:
    """What :func:`apply_libvirt` created or kept, by physical name."""

    networks: list[str] = field(default_factory=list)
    pools: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    domains: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    consoles: dict[str, Path] = field(default_factory=dict)


def _xml(elem: ET.Element) -> str:
    return ET.tostring(elem, encoding="unicode")


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    e = ET.SubElement(parent, tag, attrs)
    if text is not None:
        e.text = text
    return e


# ------------------------------------------------------------------------- networks


def network_xml(rec: Record) -> str:
    """``<network>`` as the provider builds it (resource_libvirt_network.go)."""
    import ipaddress

    i = rec.inputs
    net = ET.Element("network")
    _sub(net, "name", i["name"])
    mode = str(i.get("mode", "nat")).lower()
    if mode == "nat":
        fwd = _sub(net, "forward", mode="nat")
        _sub(_sub(fwd, "nat"), "port", start="1024", end="65535")
    elif mode in ("route", "open"):
        _sub(net, "forward", mode=mode)
    elif mode != "none":
        raise TwinstackError(f"libvirt network {i['name']}: mode {mode!r} is not supported here")
    if i.get("domain"):
        dom = _sub(net, "domain", name=str(i["domain"]))
        if (i.get("dns") or {}).get("localOnly"):
            dom.set("localOnly", "yes")
    dhcp_on = (i.get("dhcp") or {}).get("enabled", True)
    for cidr in i.get("addresses", []):
        n = ipaddress.ip_network(cidr, strict=False)
        # .1 is the host's bridge address; DHCP serves .2 .. broadcast-1 (getNetworkIPConfig)
        ip = _sub(net, "ip", address=str(n.network_address + 1), prefix=str(n.prefixlen),
                  family="ipv4" if n.version == 4 else "ipv6")  # fmt: skip
        if dhcp_on:
            _sub(_sub(ip, "dhcp"), "range", start=str(n.network_address + 2),
                 end=str(n.broadcast_address - 1))  # fmt: skip
    if (i.get("dns") or {}).get("enabled"):
        _sub(net, "dns", enable="yes")
    return _xml(net)


def _network(conn: Any, rec: Record, log: Log) -> Any:
    libvirt = libvirt_module()
    name = rec.inputs["name"]
    try:
        net = conn.networkLookupByName(name)
    except libvirt.libvirtError:
        log(f"virsh net-define {name}")
        net = conn.networkDefineXML(network_xml(rec))
    if not net.isActive():
        net.create()
    if rec.inputs.get("autostart"):
        net.setAutostart(1)
    return net


def _dhcp_host(conn: Any, network_name: str, mac: str, ip: str, hostname: str) -> None:
    """The provider's updateOrAddHost: a static DHCP lease for the domain's address."""
    libvirt = libvirt_module()
    net = conn.networkLookupByName(network_name)
    xml = f"<host mac='{mac}' name='{hostname}' ip='{ip}'/>"
    flags = libvirt.VIR_NETWORK_UPDATE_AFFECT_LIVE | libvirt.VIR_NETWORK_UPDATE_AFFECT_CONFIG
    section = libvirt.VIR_NETWORK_SECTION_IP_DHCP_HOST
    for command in (libvirt.VIR_NETWORK_UPDATE_COMMAND_MODIFY,
                    libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST):  # fmt: skip
        try:
            net.update(command, section, -1, xml, flags)
            return
        except libvirt.libvirtError:
            continue
    # an entry for this IP with another MAC (a previous definition): replace it
    desc = ET.fromstring(net.XMLDesc(0))
    for host in desc.iter("host"):
        if host.get("ip") == ip:
            net.update(libvirt.VIR_NETWORK_UPDATE_COMMAND_DELETE, section, -1, _xml(host), flags)
    net.update(libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST, section, -1, xml, flags)


# ------------------------------------------------------------------------- pools/volumes


def pool_xml(rec: Record) -> str:
    i = rec.inputs
    if i.get("type", "dir") != "dir":
        raise TwinstackError(f"libvirt pool {i['name']}: only `dir` pools are supported here")
    pool = ET.Element("pool", type="dir")
    _sub(pool, "name", i["name"])
    _sub(_sub(pool, "target"), "path", i["target"]["path"])
    return _xml(pool)


def _pool(conn: Any, rec: Record, log: Log) -> Any:
    libvirt = libvirt_module()
    name = rec.inputs["name"]
    try:
        pool = conn.storagePoolLookupByName(name)
    except libvirt.libvirtError:
        log(f"virsh pool-define {name} ({rec.inputs['target']['path']})")
        pool = conn.storagePoolDefineXML(pool_xml(rec), 0)
        pool.build(0)
    if not pool.isActive():
        pool.create(0)
    pool.refresh(0)
    return pool


def volume_xml(name: str, capacity: int, fmt: str, backing: tuple[str, str] | None = None) -> str:
    """``<volume>`` as newDefVolume + the create path set it (mode 644, capacity bytes)."""
    vol = ET.Element("volume")
    _sub(vol, "name", name)
    _sub(vol, "capacity", str(capacity), unit="bytes")
    target = _sub(vol, "target")
    _sub(target, "format", type=fmt)
    _sub(_sub(target, "permissions"), "mode", "644")
    if backing is not None:
        bs = _sub(vol, "backingStore")
        _sub(bs, "path", backing[0])
        _sub(bs, "format", type=backing[1])
    return _xml(vol)


def _upload(conn: Any, vol: Any, path: Path) -> None:
    """Stream a local file into a volume (the provider's volume uploader)."""
    size = path.stat().st_size
    stream = conn.newStream(0)
    vol.upload(stream, 0, size, 0)
    with open(path, "rb") as fh:
        stream.sendAll(lambda _s, n, f: f.read(n), fh)
    stream.finish()


def _lookup_vol(conn: Any, pool_name: str, name: str) -> Any | None:
    libvirt = libvirt_module()
    try:
        return conn.storagePoolLookupByName(pool_name).storageVolLookupByName(name)
    except libvirt.libvirtError:
        return None


def _volume(conn: Any, plan: Plan, rec: Record, log: Log) -> Any:
    i = rec.inputs
    pool_name, name = i.get("pool", "default"), i["name"]
    existing = _lookup_vol(conn, pool_name, name)
    if existing is not None:
        return existing  # volumes are kept: clones and data survive a domain replace
    pool = conn.storagePoolLookupByName(pool_name)
    fmt = str(i.get("format", "qcow2"))
    if "source" in i:
        src = Path(str(i["source"]))
        if "://" in str(i["source"]) or not src.is_file():
            raise TwinstackError(
                f"libvirt volume {name}: source {i['source']} is not a local file here; run "
                "`twinstack images build` (offline tests cannot download images)"
            )
        log(f"virsh vol-create {pool_name}/{name} + upload {src}")
        vol = pool.createXML(volume_xml(name, src.stat().st_size, fmt), 0)
        _upload(conn, vol, src)
        return vol
    backing = None
    size = int(i.get("size", 0))
    if "baseVolumeId" in i:
        base_rec = plan.by_id(str(i["baseVolumeId"]), LIBVIRT_VOLUME)
        base = _lookup_vol(conn, base_rec.inputs.get("pool", "default"), base_rec.inputs["name"])
        if base is None:
            raise TwinstackError(f"libvirt volume {name}: base {i['baseVolumeId']} missing")
        base_fmt = str(base_rec.inputs.get("format", "qcow2"))
        backing = (base.path(), base_fmt)
        base_cap = int(base.info()[1])
        if size == 0:
            size = base_cap
        elif size < base_cap:
            raise TwinstackError(
                f"libvirt volume {name}: size {size} is smaller than its base ({base_cap})"
            )
    log(f"virsh vol-create {pool_name}/{name} ({size} bytes{', backed' if backing else ''})")
    return pool.createXML(volume_xml(name, size or 1, fmt, backing), 0)


def _cloudinit(conn: Any, rec: Record, log: Log) -> Any:
    """Write the NoCloud seed ISO (volid ``cidata``) and upload it, as the provider does."""
    i = rec.inputs
    pool_name, name = i.get("pool", "default"), i["name"]
    old = _lookup_vol(conn, pool_name, name)
    if old is not None:
        old.delete(0)
    with tempfile.TemporaryDirectory(prefix="twinstack-seed-") as tmp:
        d = Path(tmp)
        files = {
            "user-data": i.get("userData", ""),
            "meta-data": i.get("metaData", ""),
            "network-config": i.get("networkConfig", ""),
        }
        for fname, content in files.items():
            (d / fname).write_text(str(content))
            os.chmod(d / fname, 0o600)
        iso = d / name
        proc = subprocess.run(
            ["genisoimage", "-quiet", "-output", str(iso), "-volid", "cidata", "-joliet",
             "-rock", *(str(d / f) for f in files)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            raise TwinstackError(f"cloud-init ISO {name}: genisoimage failed: {proc.stderr}")
        log(f"virsh vol-create {pool_name}/{name} (cloud-init seed)")
        pool = conn.storagePoolLookupByName(pool_name)
        vol = pool.createXML(volume_xml(name, iso.stat().st_size, "raw"), 0)
        _upload(conn, vol, iso)
    return vol


# ------------------------------------------------------------------------- domains


def mac_for(domain: str, index: int) -> str:
    """A stable MAC per domain and interface (the provider picks a random one)."""
    h = hashlib.sha256(f"{domain}/{index}".encode()).digest()
    return "52:54:00:{:02x}:{:02x}:{:02x}".format(*h[:3])


def cmdline_from(maps: list[dict[str, str]]) -> str:
    """setCmdlineArgs: ``k=v`` (``_`` for bare words), sorted, space-joined."""
    args = []
    for m in maps:
        for k, v in m.items():
            args.append(str(v) if k == "_" else f"{k}={v}")
    return " ".join(sorted(args))


def domain_xml(conn: Any, plan: Plan, rec: Record, console_log: Path | None) -> str:
    """``<domain>`` as the provider builds it (resource_libvirt_domain.go + domain.go)."""
    i = rec.inputs
    name = str(i["name"])
    dom = ET.Element("domain", type=str(i.get("type", "kvm")))
    _sub(dom, "name", name)
    if i.get("description"):
        _sub(dom, "description", str(i["description"]))
    meta = _sub(dom, "metadata")
    ET.SubElement(meta, f"{{{META_NS}}}realize", {"digest": rec.digest()})
    _sub(dom, "memory", str(int(i.get("memory", 512))), unit="MiB")
    _sub(dom, "vcpu", str(int(i.get("vcpu", 1))), placement="static")
    os_el = _sub(dom, "os")
    _sub(os_el, "type", "hvm", arch=str(i.get("arch", "x86_64")),
         **({"machine": str(i["machine"])} if i.get("machine") else {}))  # fmt: skip
    if i.get("kernel"):
        _sub(os_el, "kernel", str(i["kernel"]))
    if i.get("initrd"):
        _sub(os_el, "initrd", str(i["initrd"]))
    if i.get("cmdlines"):
        _sub(os_el, "cmdline", cmdline_from(i["cmdlines"]))
    feats = _sub(dom, "features")
    for f in ("pae", "acpi", "apic"):
        _sub(feats, f)
    if (i.get("cpu") or {}).get("mode"):
        _sub(dom, "cpu", mode=str(i["cpu"]["mode"]))
    dev = _sub(dom, "devices")
    if i.get("emulator"):
        _sub(dev, "emulator", str(i["emulator"]))
    for n, disk in enumerate(i.get("disks", [])):
        if "volumeId" not in disk:
            raise TwinstackError(f"domain {name}: only volume disks are supported here")
        vrec = plan.by_id(str(disk["volumeId"]), LIBVIRT_VOLUME)
        d = _sub(dev, "disk", type="volume", device="disk")
        _sub(d, "driver", name="qemu", type=str(vrec.inputs.get("format", "qcow2")))
        _sub(d, "source", pool=str(vrec.inputs.get("pool", "default")),
             volume=str(vrec.inputs["name"]))  # fmt: skip
        _sub(d, "target", dev="vd" + _disk_letter(n), bus="virtio")
    if i.get("cloudinit"):
        crec = plan.by_id(str(i["cloudinit"]), LIBVIRT_CLOUDINIT)
        vol = _lookup_vol(conn, crec.inputs.get("pool", "default"), crec.inputs["name"])
        if vol is None:
            raise TwinstackError(f"domain {name}: cloud-init disk {crec.inputs['name']} missing")
        d = _sub(dev, "disk", type="file", device="cdrom")
        _sub(d, "driver", name="qemu", type="raw")
        _sub(d, "source", file=vol.path())
        _sub(d, "target", dev="hdd", bus="ide")
        _sub(d, "serial", "cloudinit")
    for n, nic in enumerate(i.get("networkInterfaces", [])):
        iface = _sub(dev, "interface", type="network")
        _sub(iface, "mac", address=str(nic.get("mac") or mac_for(name, n)).lower())
        net_name = _nic_network(plan, nic)
        _sub(iface, "source", network=net_name)
        _sub(iface, "model", type="virtio")
    for c in i.get("consoles", []):
        ctype = str(c.get("type", "pty"))
        con = _sub(dev, "console", type=ctype)
        if c.get("sourcePath"):
            _sub(con, "source", path=str(c["sourcePath"]))
        if console_log is not None and c.get("targetPort", "0") == "0":
            # harness-only: virtlogd copies the console to a file the tests read
            _sub(con, "log", file=str(console_log), append="off")
        _sub(con, "target", type=str(c.get("targetType", "serial")),
             port=str(c.get("targetPort", "0")))  # fmt: skip
    chan = _sub(dev, "channel", type="unix")
    _sub(chan, "target", type="virtio", name="org.qemu.guest_agent.0")
    rng = _sub(dev, "rng", model="virtio")
    _sub(rng, "backend", "/dev/urandom", model="random")
    return _xml(dom)


def _disk_letter(n: int) -> str:
    letters = ""
    n += 1
    while n:
        n, r = divmod(n - 1, 26)
        letters = chr(ord("a") + r) + letters
    return letters


def _nic_network(plan: Plan, nic: dict[str, Any]) -> str:
    if nic.get("networkName"):
        return str(nic["networkName"])
    if nic.get("networkId"):
        return str(plan.by_id(str(nic["networkId"]), LIBVIRT_NETWORK).inputs["name"])
    raise TwinstackError("network interface without networkId/networkName is not supported here")


def _domain_digest(dom: Any) -> str | None:
    try:
        meta = dom.metadata(2, META_NS, 0)  # VIR_DOMAIN_METADATA_ELEMENT
    except Exception:
        return None
    try:
        return ET.fromstring(meta).get("digest")
    except ET.ParseError:
        return None


def remove_domain(dom: Any) -> None:
    """The provider's delete: hard ``virDomainDestroy`` (no guest shutdown) if running,
    then undefine with NVRAM, snapshot, managed-save and checkpoint metadata; volumes
    are separate resources and stay."""
    libvirt = libvirt_module()
    if dom.isActive():
        try:
            dom.destroy()
        except libvirt.libvirtError:
            if dom.isActive():
                raise
    dom.undefineFlags(
        libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
        | libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
        | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
        | libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA
    )


def apply_libvirt(
    plan: Plan,
    conn: Any,
    *,
    log: Log = lambda _m: None,
    console_dir: Path = CONSOLE_DIR,
    on_create: Log = lambda _n: None,
) -> LibvirtApplied:
    """Create (or keep) every libvirt resource of the plan; see the module docstring."""
    libvirt = libvirt_module()
    applied = LibvirtApplied()
    for rec in plan.of_type(LIBVIRT_NETWORK):
        _network(conn, rec, log)
        applied.networks.append(rec.inputs["name"])
    for rec in plan.of_type(LIBVIRT_POOL):
        _pool(conn, rec, log)
        applied.pools.append(rec.inputs["name"])
    volumes = list(plan.of_type(LIBVIRT_VOLUME))
    # uploads (base images) before the clones that reference them
    for rec in sorted(volumes, key=lambda r: "source" not in r.inputs):
        _volume(conn, plan, rec, log)
        applied.volumes.append(f"{rec.inputs.get('pool', 'default')}/{rec.inputs['name']}")
    console_dir.mkdir(parents=True, exist_ok=True)
    for rec in plan.of_type(LIBVIRT_DOMAIN):
        name = str(rec.inputs["name"])
        try:
            dom = conn.lookupByName(name)
        except libvirt.libvirtError:
            dom = None
        if dom is not None:
            if _domain_digest(dom) == rec.digest() and dom.isActive():
                applied.domains.append(name)
                applied.consoles[name] = console_dir / f"{name}.log"
                continue
            log(f"virsh destroy+undefine {name} (inputs changed: replace)")
            remove_domain(dom)
            applied.replaced.append(name)
        if rec.inputs.get("cloudinit"):
            _cloudinit(conn, plan.by_id(str(rec.inputs["cloudinit"]), LIBVIRT_CLOUDINIT), log)
        for n, nic in enumerate(rec.inputs.get("networkInterfaces", [])):
            for addr in nic.get("addresses", []):
                net = _nic_network(plan, nic)
                _dhcp_host(conn, net, str(nic.get("mac") or mac_for(name, n)).lower(), addr,
                           str(nic.get("hostname") or name))  # fmt: skip
        console = console_dir / f"{name}.log"
        console.unlink(missing_ok=True)
        log(f"virsh define+start {name} (type {rec.inputs.get('type', 'kvm')})")
        on_create(name)
        dom = conn.defineXML(domain_xml(conn, plan, rec, console))
        if rec.inputs.get("autostart"):
            dom.setAutostart(1)
        if rec.inputs.get("running", True):
            dom.create()
        applied.domains.append(name)
        applied.consoles[name] = console
    return applied
