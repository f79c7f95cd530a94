"""VM security rules for pulumi-libvirt resources.

Sources: libvirt's domain XML and security documentation (https://libvirt.org/formatdomain.html,
https://libvirt.org/drvqemu.html#security, https://libvirt.org/kbase/qemu-passthrough-security.html),
QEMU's security guide (https://www.qemu.org/docs/master/system/security.html) and
cloud-init's module reference. Property names are the provider's wire names:
see pulumi_libvirt/domain.py and _inputs.py.
"""

from __future__ import annotations

import re
from typing import Any

import yaml
from pulumi_policy import PolicyConfigSchema, ResourceValidationPolicy

from twinstack_rules.common import (
    LIBVIRT_CLOUD_INIT,
    LIBVIRT_DOMAIN,
    LIBVIRT_NETWORK,
    LIBVIRT_POOL,
    LIBVIRT_VOLUME,
    SENSITIVE_HOST_PATHS,
    Report,
    as_list,
    config,
    for_types,
    is_loopback,
    normpath,
    truthy,
    under,
)

SYSTEM_DIRS = [
    "/",
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib64",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/sys",
    "/usr",
    "/var/run",
    "/var/log",
]


@for_types(LIBVIRT_DOMAIN)
def graphics_loopback(args: Any, report: Report) -> None:
    """VNC/SPICE have no password in this provider: they must listen on loopback only."""
    graphics = args.props.get("graphics")
    if not graphics:
        return  # the provider's default SPICE device listens nowhere (listen_type none)
    kind = str(graphics.get("type") or "spice")
    listen_type = str(graphics.get("listenType") or "none").lower()
    if listen_type == "none":
        return
    if listen_type == "address":
        address = str(graphics.get("listenAddress") or "127.0.0.1")
        if is_loopback(address):
            return
        where = f"address {address}"
    else:
        where = f"listen type {listen_type!r} (the network's addresses)"
    report(
        f"Domain '{args.name}' exposes its {kind.upper()} console on {where} without a "
        'password. Set graphics.listenType="address" with listenAddress="127.0.0.1" (reach '
        "it through an SSH tunnel), or remove `graphics`."
    )


@for_types(LIBVIRT_DOMAIN)
def console_loopback(args: Any, report: Report) -> None:
    """A TCP serial console is an unauthenticated root shell on the guest: loopback only."""
    for console in args.props.get("consoles") or []:
        if str(console.get("type") or "").lower() != "tcp":
            continue
        host = str(console.get("sourceHost") or "127.0.0.1")
        if is_loopback(host):
            continue
        report(
            f"Domain '{args.name}' has a TCP serial console listening on {host}:"
            f'{console.get("sourceService") or "<random>"}. Set sourceHost="127.0.0.1" or '
            'use type="pty".'
        )


_XSLT_PATTERNS = [
    (re.compile(r"seclabel", re.IGNORECASE), "rewrites <seclabel> (sVirt confinement)"),
    (re.compile(r"qemu:commandline|qemu:arg\b|qemu:env\b"), "injects QEMU command-line arguments"),
    (re.compile(r"relabel\s*=\s*['\"]no['\"]", re.IGNORECASE), "disables sVirt relabelling"),
]


@for_types(LIBVIRT_DOMAIN)
def xslt_safe(args: Any, report: Report) -> None:
    """XSLT must not turn off sVirt labels or pass raw arguments to QEMU."""
    xml = args.props.get("xml")
    xslt = xml.get("xslt") if xml else None
    if not xslt:
        return
    for pattern, what in _XSLT_PATTERNS:
        if pattern.search(str(xslt)):
            report(
                f"Domain '{args.name}' has an XSLT transform that {what}. Remove it from "
                "xml.xslt; express the change with provider properties instead."
            )


@for_types(LIBVIRT_DOMAIN)
def filesystem_passthrough(args: Any, report: Report) -> None:
    """Host directories shared with a guest must not be sensitive, and must be read-only."""
    sensitive = config(args, "sensitivePaths", SENSITIVE_HOST_PATHS)
    for fs in args.props.get("filesystems") or []:
        source = str(fs.get("source") or "")
        hit = under(source, sensitive) if source else None
        if hit:
            report(
                f"Domain '{args.name}' shares host path {normpath(source)} (under {hit}) with "
                "the guest. Share a dedicated directory instead."
            )
        if fs.get("readonly") is not None and not truthy(fs.get("readonly")):
            report(
                f"Domain '{args.name}' shares host path {normpath(source)} writable "
                f"(readonly=false, accessmode={fs.get('accessmode') or 'mapped'}). Set "
                "readonly=true, or use a volume for guest-writable data."
            )


@for_types(LIBVIRT_DOMAIN, LIBVIRT_VOLUME)
def disk_sources(args: Any, report: Report) -> None:
    """No raw host block devices; no disk images fetched over plain HTTP."""
    if args.resource_type == LIBVIRT_VOLUME:
        source = args.props.get("source")
        if isinstance(source, str) and source.lower().startswith("http://"):
            report(
                f"Volume '{args.name}' downloads its image over plain HTTP ({source}); it can "
                "be tampered with in transit. Use an https:// URL or a local path."
            )
        return
    allowed = {normpath(str(d)) for d in config(args, "allowedBlockDevices", [])}
    for disk in args.props.get("disks") or []:
        device = disk.get("blockDevice")
        if device and normpath(str(device)) not in allowed:
            report(
                f"Domain '{args.name}' attaches raw host block device {device}. Use a "
                "libvirt volume, or allow the device in `allowedBlockDevices`."
            )
        url = disk.get("url")
        if isinstance(url, str) and url.lower().startswith("http://"):
            report(
                f"Domain '{args.name}' boots a disk from plain-HTTP URL {url}. Use a volume "
                "created from an https:// source or a local file."
            )


@for_types(LIBVIRT_DOMAIN)
def interface_allowlist(args: Any, report: Report) -> None:
    """Bridge/macvtap/passthrough/vepa put a guest straight on the host's LAN."""
    allowed = {str(i) for i in config(args, "allowedHostInterfaces", [])}
    for nic in args.props.get("networkInterfaces") or []:
        for kind in ("bridge", "macvtap", "passthrough", "vepa"):
            device = nic.get(kind)
            if device and str(device) not in allowed:
                report(
                    f"Domain '{args.name}' attaches to host interface {device} ({kind}), "
                    "bypassing libvirt's network isolation. Use networkId/networkName of a "
                    "libvirt network, or allow the interface in `allowedHostInterfaces`."
                )


@for_types(LIBVIRT_DOMAIN)
def no_tpm_passthrough(args: Any, report: Report) -> None:
    """A passed-through host TPM is shared with the guest: use the emulator backend."""
    tpm = args.props.get("tpm")
    if tpm and str(tpm.get("backendType") or "emulator").lower() == "passthrough":
        report(
            f"Domain '{args.name}' passes the host TPM "
            f"({tpm.get('backendDevicePath') or '/dev/tpm0'}) through. "
            'Set tpm.backendType="emulator" (swtpm).'
        )


@for_types(LIBVIRT_NETWORK)
def network_mode(args: Any, report: Report) -> None:
    """``open`` networks route guest traffic with no firewall rules at all."""
    forbidden = [str(m).lower() for m in config(args, "forbiddenModes", ["open"])]
    mode = str(args.props.get("mode") or "nat").lower()
    if mode in forbidden:
        report(
            f"Network '{args.name}' uses mode {mode!r}, which adds no firewall rules for the "
            'guests. Use mode="nat" or "none" (isolated).'
        )


@for_types(LIBVIRT_VOLUME)
def volume_format(args: Any, report: Report) -> None:
    """Without an explicit format, QEMU probes it — a guest can forge a qcow2 header."""
    if not str(args.props.get("format") or "").strip():
        report(
            f"Volume '{args.name}' has no explicit format, so the format is probed from the "
            'image contents. Set format="qcow2" (or "raw").'
        )


@for_types(LIBVIRT_POOL)
def pool_location(args: Any, report: Report) -> None:
    """Directory pools must not live in system directories."""
    if str(args.props.get("type") or "dir") != "dir":
        return
    system = config(args, "systemPaths", SYSTEM_DIRS)
    target = args.props.get("target")
    path = (target.get("path") if target else None) or args.props.get("path")
    if not path:
        report(
            f"Pool '{args.name}' is a dir pool without a path. Set target.path to a "
            "dedicated directory such as /var/lib/twinstack/<pool>."
        )
        return
    hit = under(str(path), system)
    if hit:
        report(
            f"Pool '{args.name}' is located at {normpath(str(path))}, inside system "
            f"directory {hit}. Use a dedicated directory such as /var/lib/twinstack/<pool>."
        )


def _cloud_config(text: str) -> dict[str, Any] | None:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    return doc if isinstance(doc, dict) else None


_PLAIN_KEYS = re.compile(r"^\s*(plain_text_passwd|password)\s*:\s*\S", re.MULTILINE)
_SSH_PWAUTH = re.compile(r"^\s*ssh_pwauth\s*:\s*(true|yes|1|on)\b", re.MULTILINE | re.IGNORECASE)
_SSHD_PW = re.compile(r"PasswordAuthentication\s+yes", re.IGNORECASE)


def _password_findings(user_data: str) -> list[str]:
    findings: list[str] = []
    doc = _cloud_config(user_data)
    if doc is None:
        # Not a single YAML document (e.g. MIME multi-part): fall back to line matching.
        if _PLAIN_KEYS.search(user_data):
            findings.append("sets a plaintext password")
        if _SSH_PWAUTH.search(user_data):
            findings.append("enables SSH password authentication (ssh_pwauth)")
    else:
        if doc.get("password"):
            findings.append("sets a plaintext password (password:)")
        chpasswd = doc.get("chpasswd")
        if isinstance(chpasswd, dict):
            entries = as_list(chpasswd.get("users")) + as_list(chpasswd.get("list"))
            for entry in entries:
                if isinstance(entry, dict) and str(entry.get("type", "text")) == "text":
                    if entry.get("password") and str(entry.get("password")).upper() != "RANDOM":
                        findings.append(
                            f"sets a plaintext password for {entry.get('name', '?')} (chpasswd)"
                        )
                elif isinstance(entry, str) and ":" in entry:
                    findings.append("sets a plaintext password (chpasswd.list)")
        for user in as_list(doc.get("users")):
            if isinstance(user, dict) and user.get("plain_text_passwd"):
                findings.append(
                    f"sets a plaintext password for user {user.get('name', '?')} "
                    "(plain_text_passwd)"
                )
        if truthy(doc.get("ssh_pwauth", False)):
            findings.append("enables SSH password authentication (ssh_pwauth)")
    if _SSHD_PW.search(user_data):
        findings.append("writes 'PasswordAuthentication yes' for sshd")
    return findings


@for_types(LIBVIRT_CLOUD_INIT)
def cloud_init_passwords(args: Any, report: Report) -> None:
    """cloud-init must not set plaintext passwords or enable password SSH logins."""
    user_data = args.props.get("userData")
    if not isinstance(user_data, str):
        return
    for finding in dict.fromkeys(_password_findings(user_data)):
        report(
            f"Cloud-init disk '{args.name}' {finding}. Use SSH keys (ssh_authorized_keys), "
            "keep ssh_pwauth false, and lock passwords (lock_passwd: true)."
        )


@for_types(LIBVIRT_VOLUME, LIBVIRT_POOL)
def protect_stateful(args: Any, report: Report) -> None:
    """Pools and data volumes hold state: `protect` stops an accidental delete/replace."""
    if args.opts.protect:
        return
    if args.resource_type == LIBVIRT_POOL:
        report(
            f"Pool '{args.name}' is not protected; deleting it destroys every volume in it. "
            "Create it with ResourceOptions(protect=True)."
        )
        return
    # Base images (downloaded from `source`) and per-replica clones (baseVolumeId) are
    # rebuilt from their sources; anything else is a data volume.
    if args.props.get("source") or args.props.get("baseVolumeId"):
        return
    if args.props.get("baseVolumeName"):
        return
    report(
        f"Volume '{args.name}' is a data volume (no source image, no base volume) and is not "
        "protected. Create it with ResourceOptions(protect=True)."
    )


# --------------------------------------------------------------------------- policies

_STR_LIST = {"type": "array", "items": {"type": "string"}}

POLICIES: list[ResourceValidationPolicy] = [
    ResourceValidationPolicy(
        name="libvirt-graphics-loopback",
        description="VNC/SPICE graphics must listen on loopback only (no password support).",
        validate=graphics_loopback,
    ),
    ResourceValidationPolicy(
        name="libvirt-console-loopback",
        description="TCP serial consoles must listen on loopback only.",
        validate=console_loopback,
    ),
    ResourceValidationPolicy(
        name="libvirt-xslt-safe",
        description="Domain XSLT must not disable sVirt labels or inject QEMU arguments.",
        validate=xslt_safe,
    ),
    ResourceValidationPolicy(
        name="libvirt-filesystem-passthrough",
        description="Shared host directories must be non-sensitive and read-only.",
        validate=filesystem_passthrough,
        config_schema=PolicyConfigSchema(
            properties={"sensitivePaths": {**_STR_LIST, "default": SENSITIVE_HOST_PATHS}}
        ),
    ),
    ResourceValidationPolicy(
        name="libvirt-disk-sources",
        description="Disks must not be raw host block devices or plain-HTTP downloads.",
        validate=disk_sources,
        config_schema=PolicyConfigSchema(
            properties={"allowedBlockDevices": {**_STR_LIST, "default": []}}
        ),
    ),
    ResourceValidationPolicy(
        name="libvirt-interface-allowlist",
        description="Bridge/macvtap/passthrough/vepa interfaces must be allowlisted.",
        validate=interface_allowlist,
        config_schema=PolicyConfigSchema(
            properties={"allowedHostInterfaces": {**_STR_LIST, "default": []}}
        ),
    ),
    ResourceValidationPolicy(
        name="libvirt-no-tpm-passthrough",
        description="Domains must not pass the host TPM through.",
        validate=no_tpm_passthrough,
    ),
    ResourceValidationPolicy(
        name="libvirt-network-mode",
        description="Networks must not use open mode (no firewall rules).",
        validate=network_mode,
        config_schema=PolicyConfigSchema(
            properties={"forbiddenModes": {**_STR_LIST, "default": ["open"]}}
        ),
    ),
    ResourceValidationPolicy(
        name="libvirt-volume-format",
        description="Volumes must declare their format explicitly (no format probing).",
        validate=volume_format,
    ),
    ResourceValidationPolicy(
        name="libvirt-pool-location",
        description="Storage pools must not be located in system directories.",
        validate=pool_location,
        config_schema=PolicyConfigSchema(
            properties={"systemPaths": {**_STR_LIST, "default": SYSTEM_DIRS}}
        ),
    ),
    ResourceValidationPolicy(
        name="libvirt-cloud-init-no-passwords",
        description="Cloud-init must not set plaintext passwords or enable password SSH.",
        validate=cloud_init_passwords,
    ),
    ResourceValidationPolicy(
        name="libvirt-protect-stateful",
        description="Storage pools and data volumes must be protected from deletion.",
        validate=protect_stateful,
    ),
]
