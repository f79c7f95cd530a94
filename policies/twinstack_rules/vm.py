"""VM security rules for pulumi-libvirt resources.

Sources: libvirt's domain XML and security documentation (https://libvirt.org/formatdomain.html,
https://libvirt.org/drvqemu.html#security, https://libvirt.org/kbase/qemu-passthrough-security.html),
QEMU's security guide (https://www.qemu.org/docs/master/system/security.html) and
cloud-init's module reference. Property names are the provider's wire names:
see pulumi_libvirt/domain.py and _inputs.py.
"""

from __future__ import annotations

import base64
import email
import gzip
import posixpath
import re
import shlex
from dataclasses import dataclass
from typing import Any

from pulumi_policy import PolicyConfigSchema, ResourceValidationPolicy, StackValidationPolicy

from twinstack_rules.common import (
    LIBVIRT_CLOUD_INIT,
    LIBVIRT_DOMAIN,
    LIBVIRT_NETWORK,
    LIBVIRT_POOL,
    LIBVIRT_VOLUME,
    SECRET_PLACEHOLDER_RE,
    SENSITIVE_HOST_PATHS,
    UNKNOWN_VALUE,
    Report,
    YAMLError,
    as_list,
    config,
    credential_looking_value,
    for_types,
    is_loopback,
    load_yaml,
    normpath,
    peek,
    resource_policy,
    secret_looking_key,
    truthy,
    under,
)
from twinstack_rules.formats import declared_secret_keys

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


# Network modes that keep guests behind libvirt's NAT or fully isolated; every other mode
# (bridge, route, open, and libvirt's macvtap-style forward modes) puts them on the host's
# network. twinstack's "isolated" is libvirt's "none".
CONFINED_NETWORK_MODES = ("nat", "none", "isolated")


@dataclass(frozen=True)
class _HostNetwork:
    res: Any
    mode: str
    bridge: str | None
    id: Any
    name: str | None


def _host_networks(args: Any) -> tuple[dict[str, _HostNetwork], set[str]]:
    """Networks in host-facing modes that are not allowlisted (by URN), and the known ids
    of every other network."""
    allowed_ifaces = {str(i) for i in config(args, "allowedHostInterfaces", [])}
    allowed_nets = {str(n) for n in config(args, "allowedNetworks", [])}
    exposed: dict[str, _HostNetwork] = {}
    other_ids: set[str] = set()
    for res in args.resources:
        if res.resource_type != LIBVIRT_NETWORK:
            continue
        net_id = peek(res.props, "id")  # only in the engine's outputs; unknown until created
        mode = str(res.props.get("mode") or "nat").lower()
        name = peek(res.props, "name")
        bridge = peek(res.props, "bridge")  # route/open: computed by libvirt
        if bridge is UNKNOWN_VALUE:
            bridge = res.props.get("bridge") if allowed_ifaces else None  # needed: read it
        names = {res.name, name} if isinstance(name, str) else {res.name}
        allowlisted = (bridge is not None and str(bridge) in allowed_ifaces) or bool(
            names & allowed_nets
        )
        if mode in CONFINED_NETWORK_MODES or allowlisted:
            if isinstance(net_id, str) and net_id:
                other_ids.add(net_id)
            continue
        exposed[res.urn] = _HostNetwork(
            res,
            mode,
            str(bridge) if bridge else None,
            net_id,
            name if isinstance(name, str) else None,
        )
    return exposed, other_ids


def bridged_network_allowlist(args: Any, report: Report) -> None:
    """A bridge/route/open network puts its guests on the host's LAN, like a bridge interface."""
    exposed, other_ids = _host_networks(args)
    if not exposed:
        return
    for dom in args.resources:
        if dom.resource_type != LIBVIRT_DOMAIN:
            continue
        joined: dict[str, _HostNetwork] = {}
        unresolved = False  # a networkId we cannot match by value (unknown in a preview)
        for nic in dom.props.get("networkInterfaces") or []:
            net_id, net_name = peek(nic, "networkId"), peek(nic, "networkName")
            if isinstance(net_id, str) and net_id:
                hits = [n for n in exposed.values() if n.id == net_id]
                joined.update((n.res.urn, n) for n in hits)
                unresolved |= not hits and net_id not in other_ids
            elif net_id is UNKNOWN_VALUE or net_name is UNKNOWN_VALUE:
                unresolved = True
            elif isinstance(net_name, str) and net_name:
                joined.update((n.res.urn, n) for n in exposed.values() if n.name == net_name)
        if unresolved:
            # The reference's dependency names the network even when its id is not known.
            deps = dom.property_dependencies.get("networkInterfaces") or dom.dependencies
            joined.update((d.urn, exposed[d.urn]) for d in deps if d.urn in exposed)
        for net in joined.values():
            where = f"mode {net.mode!r}" + (f" on host bridge {net.bridge}" if net.bridge else "")
            allow = f"allow {net.bridge} in `allowedHostInterfaces` or " if net.bridge else "allow "
            report(
                f"Domain '{dom.name}' joins network '{net.res.name}' ({where}), which puts "
                "the guest on the host's network, bypassing libvirt's network isolation. "
                'Join a mode="nat" or "none" (isolated) network instead, or '
                f"{allow}the network in `allowedNetworks`.",
                dom.urn,
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


# --------------------------------------------------------------------------- cloud-init
#
# User-data is one of: a ``#cloud-config`` YAML document, a shell script (``#!``, or
# ``#cloud-boothook``), a ``#cloud-config-archive`` list of parts, a MIME multi-part
# message of any of these (parts may be base64- or gzip-encoded), or any of them behind a
# ``## template: jinja`` line. The rules below look at every part cloud-init would run.


@dataclass(frozen=True)
class _Part:
    kind: str  # "cloud-config", "script" or "other"
    text: str
    doc: dict[str, Any] | None = None  # the parsed cloud-config, if it is a YAML mapping


_MIME_START = re.compile(r"(content-type|mime-version)\s*:", re.IGNORECASE)
_SCRIPT_TYPES = ("text/x-shellscript", "text/cloud-boothook")
_MAX_NESTING = 5


def _cloud_config(text: str) -> dict[str, Any] | None:
    try:
        doc = load_yaml(text)
    except YAMLError:
        return None
    return doc if isinstance(doc, dict) else None


def _user_data_parts(text: str, depth: int = 0) -> list[_Part]:
    """The parts of a user-data text, by its first line (cloud-init's own dispatch)."""
    body = text.lstrip("\ufeff \t\r\n")
    first = body.split("\n", 1)[0].strip()
    if depth > _MAX_NESTING:
        return [_Part("other", text)]
    if first.lower().replace(" ", "").startswith("##template:jinja"):
        return _user_data_parts(body.split("\n", 1)[1] if "\n" in body else "", depth + 1)
    if first.startswith("#cloud-config-archive"):
        return _archive_parts(body, depth)
    if first.startswith("#cloud-config"):
        return [_Part("cloud-config", text, _cloud_config(text))]
    if first.startswith(("#!", "#cloud-boothook")):
        return [_Part("script", text)]
    if _MIME_START.match(first):
        return _mime_parts(body, depth)
    doc = _cloud_config(text)  # no header: judged as YAML if it is a mapping
    return [_Part("cloud-config" if doc is not None else "other", text, doc)]


def _typed_part(content_type: str, content: str, depth: int) -> list[_Part]:
    content_type = content_type.strip().lower()
    if content_type == "text/cloud-config-archive":
        return _archive_parts(content, depth)
    if content_type == "text/cloud-config":
        return [_Part("cloud-config", content, _cloud_config(content))]
    if content_type.startswith(_SCRIPT_TYPES):
        return [_Part("script", content)]
    return _user_data_parts(content, depth + 1)  # text/plain, text/jinja2, ...: by content


def _archive_parts(text: str, depth: int) -> list[_Part]:
    try:
        items = load_yaml(text)
    except YAMLError:
        return [_Part("other", text)]
    parts: list[_Part] = []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, str):
            parts += _user_data_parts(item, depth + 1)
        elif isinstance(item, dict) and isinstance(item.get("content"), str):
            kind = item.get("type")
            if isinstance(kind, str):
                parts += _typed_part(kind, item["content"], depth + 1)
            else:
                parts += _user_data_parts(item["content"], depth + 1)
    return parts or [_Part("other", text)]


def _mime_parts(text: str, depth: int) -> list[_Part]:
    parts: list[_Part] = []
    for part in email.message_from_string(text).walk():
        if part.is_multipart():
            continue
        payload = part.get_payload(decode=True)  # undoes base64 / quoted-printable
        if isinstance(payload, bytes):
            content = _decompress(payload).decode("utf-8", "replace")
        else:
            content = str(part.get_payload())
        parts += _typed_part(part.get_content_type(), content, depth + 1)
    return parts


def _decompress(data: bytes) -> bytes:
    if data[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(data)
        except (OSError, EOFError):
            return data
    return data


def _file_content(entry: dict[str, Any]) -> str | None:
    """A write_files entry's content, decoded as cloud-init decodes it (``encoding``)."""
    content = entry.get("content")
    if not isinstance(content, str | bytes):
        return None
    encoding = str(entry.get("encoding") or "text/plain").lower()
    data = content.encode() if isinstance(content, str) else content
    try:
        if encoding in ("b64", "base64", "gz+b64", "gzip+base64", "gz+base64", "gzip+b64"):
            data = base64.b64decode(data)
    except ValueError:
        return None
    return _decompress(data).decode("utf-8", "replace")


def _commands(doc: dict[str, Any], key: str) -> list[str]:
    """``runcmd``/``bootcmd`` entries as shell text (an argv list is joined)."""
    out = []
    for entry in as_list(doc.get(key)):
        if isinstance(entry, list):
            out.append(shlex.join(str(arg) for arg in entry))
        elif entry is not None:
            out.append(str(entry))
    return out


def _script_lines(text: str) -> list[str]:
    """A shell script's lines without comments (and so without the ``#!`` line)."""
    return [line for line in text.splitlines() if not line.lstrip().startswith("#")]


# ------------------------------------------------------------------ passwords in cloud-init

_PLAIN_KEYS = re.compile(r"^\s*(plain_text_passwd|password)\s*:\s*\S", re.MULTILINE)
_SSH_PWAUTH = re.compile(r"^\s*ssh_pwauth\s*:\s*(true|yes|1|on)\b", re.MULTILINE | re.IGNORECASE)
_SSHD_PW = re.compile(r"PasswordAuthentication\s+yes", re.IGNORECASE)
# A crypt(3) hash ($6$..., $y$...) or a locked/disabled entry ("!...", "*").
_PASSWORD_HASH = re.compile(r"\$[0-9a-z]+\$\S+|[!*]\S*")
# Commands that set a password, and how the finding names them (first match wins).
_PASSWORD_COMMANDS = [
    (re.compile(r"(?<![\w.-])chpasswd\b"), "chpasswd"),
    (re.compile(r"\bpasswd\b[^|;&\n]*\s--stdin\b"), "passwd --stdin"),
    (re.compile(r"\|\s*(?:sudo\s+)?(?:/usr)?(?:/s?bin/)?passwd\b"), "a pipe into passwd"),
    (re.compile(r"\b(usermod|useradd)\b[^|;&\n]*\s(?:-p|--password)(?:\s|=)"), "{0} -p"),
    (re.compile(r"\bopenssl\s+passwd\b"), "openssl passwd"),
    (re.compile(r"\bmkpasswd\b"), "mkpasswd"),
]


def _password_command(command: str) -> str | None:
    for pattern, what in _PASSWORD_COMMANDS:
        match = pattern.search(command)
        if match:
            return what.format(*match.groups())
    return None


def _cloud_config_password_findings(doc: dict[str, Any]) -> list[str]:
    findings: list[str] = []
    if doc.get("password"):
        findings.append("sets a plaintext password (password:)")
    chpasswd = doc.get("chpasswd")
    if isinstance(chpasswd, dict):
        for entry in as_list(chpasswd.get("users")):
            if not isinstance(entry, dict) or str(entry.get("type", "text")) != "text":
                continue  # type: hash or RANDOM
            if entry.get("password") and str(entry.get("password")).upper() != "RANDOM":
                findings.append(
                    f"sets a plaintext password for {entry.get('name', '?')} (chpasswd)"
                )
        entries = chpasswd.get("list")
        lines = entries.splitlines() if isinstance(entries, str) else as_list(entries)
        for line in lines:
            name, sep, password = str(line).strip().partition(":")
            if not sep or password.upper() in ("R", "RANDOM"):
                continue
            if not _PASSWORD_HASH.fullmatch(password):
                findings.append(f"sets a plaintext password for {name} (chpasswd.list)")
    for user in as_list(doc.get("users")):
        if not isinstance(user, dict):
            continue
        name = user.get("name", "?")
        if user.get("plain_text_passwd"):
            findings.append(f"sets a plaintext password for user {name} (plain_text_passwd)")
        for key in ("passwd", "hashed_passwd"):
            value = user.get(key)
            if value and not _PASSWORD_HASH.fullmatch(str(value)):
                findings.append(
                    f"sets a plaintext password for user {name} ({key} is not a crypt hash)"
                )
    if truthy(doc.get("ssh_pwauth", False)):
        findings.append("enables SSH password authentication (ssh_pwauth)")
    for key in ("bootcmd", "runcmd"):
        for command in _commands(doc, key):
            what = _password_command(command)
            if what:
                findings.append(f"sets a password with {what} in {key}")
    return findings


def _password_findings(user_data: str) -> list[str]:
    findings: list[str] = []
    for part in _user_data_parts(user_data):
        if part.doc is not None:
            findings += _cloud_config_password_findings(part.doc)
        else:
            # Not a YAML mapping (a script, or a cloud-config that does not parse): lines.
            if _PLAIN_KEYS.search(part.text):
                findings.append("sets a plaintext password")
            if _SSH_PWAUTH.search(part.text):
                findings.append("enables SSH password authentication (ssh_pwauth)")
        if part.kind == "script":
            for line in _script_lines(part.text):
                what = _password_command(line)
                if what:
                    findings.append(f"sets a password with {what} in its shell script")
        if _SSHD_PW.search(part.text):
            findings.append("writes 'PasswordAuthentication yes' for sshd")
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


# --------------------------------------------------------------- secrets in the environment

_ENV_LINE = re.compile(r"[ \t]*(?:export[ \t]+)?([A-Za-z_][A-Za-z0-9_.-]*)[ \t]*=[ \t]*")
_ESCAPED = ('"', "\\", "`", "$")  # what a backslash escapes in double quotes
_SHELL_ASSIGNMENT = re.compile(
    r"^\s*(?:export\s+|declare\s+-x\s+|readonly\s+)?([A-Za-z_][A-Za-z0-9_]*)=(\S.*)$"
)
_UNIT_ENVIRONMENT = re.compile(r"^\s*(?:Default)?Environment\s*=(.*)$", re.MULTILINE)
_SECRET_FILE_DIRS = ("/run/secrets/", "/run/credentials/")


def parse_env_file(text: str) -> list[tuple[str, str]]:
    """``KEY=value`` pairs of a systemd ``EnvironmentFile`` / ``.env`` file.

    Values may be single- or double-quoted (and then span lines), or continue on the next
    line after a backslash; in double quotes a backslash escapes ``"``, ``\\``, `` ` `` and
    ``$`` only (as twinstack writes them); ``#``/``;`` lines are comments; ``export
    KEY=`` is accepted.
    """
    pairs: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while i < n:
        match = _ENV_LINE.match(text, i)
        if not match:  # blank, comment or not an assignment: skip the line
            end = text.find("\n", i)
            i = n if end < 0 else end + 1
            continue
        key, i = match.group(1), match.end()
        value: list[str] = []
        while i < n and text[i] != "\n":
            char = text[i]
            if char in "\"'":
                i += 1
                while i < n and text[i] != char:
                    if char == '"' and text[i] == "\\" and text[i + 1 : i + 2] in _ESCAPED:
                        value.append(text[i + 1])
                        i += 2
                        continue
                    if char == '"' and text[i : i + 2] == "\\\n":  # line continuation
                        i += 2
                        continue
                    value.append(text[i])
                    i += 1
                i += 1  # the closing quote
            elif char == "\\" and i + 1 < n:
                if text[i + 1] != "\n":
                    value.append(text[i + 1])
                i += 2
            else:
                value.append(char)
                i += 1
        pairs.append((key, "".join(value).strip()))
        i += 1
    return pairs


def _shell_value(raw: str) -> str | None:
    """The literal value of a shell assignment's right-hand side; None if it expands
    anything (``$VAR``, ``$(...)``, backticks), since that is not a value in user-data."""
    raw = raw.strip()
    if raw.startswith("'"):
        return raw[1:].split("'", 1)[0]
    if raw.startswith('"'):
        value = re.split(r'(?<!\\)"', raw[1:], maxsplit=1)[0]
    else:
        value = re.split(r"[\s;&|]", raw, maxsplit=1)[0]
    return None if "$" in value or "`" in value else value


def _unit_environment(text: str) -> list[tuple[str, str]]:
    """``Environment=`` assignments of a systemd unit or drop-in."""
    pairs = []
    for match in _UNIT_ENVIRONMENT.finditer(text):
        try:
            words = shlex.split(match.group(1))
        except ValueError:
            continue
        for word in words:
            key, sep, value = word.partition("=")
            if sep:
                pairs.append((key, value))
    return pairs


def _env_file_kind(path: str) -> str | None:
    """``env`` for environment files (``*.env``, ``environment``, ``environment.d/*.conf``),
    ``unit`` for systemd units and drop-ins, None for anything else."""
    path = posixpath.normpath(path.strip())
    base, parent = posixpath.basename(path), posixpath.basename(posixpath.dirname(path))
    if base.endswith(".env") or base == "environment":
        return "env"
    if parent.endswith("environment.d") and base.endswith(".conf"):
        return "env"
    if base.endswith(".service") or (
        "/systemd/" in path and base.endswith(".conf") and parent.endswith(".d")
    ):
        return "unit"
    return None


def _environment_entries(user_data: str) -> list[tuple[str, str, str]]:
    """``(where, key, value)`` for every environment assignment user-data carries, except
    the variables an env file declares as filled from Pulumi secrets (twinstack's env files
    name them on their first line: formats.declared_secret_keys)."""
    entries: list[tuple[str, str, str]] = []
    for part in _user_data_parts(user_data):
        if part.doc is not None:
            for item in as_list(part.doc.get("write_files")):
                if not isinstance(item, dict) or not isinstance(item.get("path"), str):
                    continue
                kind = _env_file_kind(item["path"])
                content = _file_content(item) if kind else None
                if content is None:
                    continue
                pairs = parse_env_file(content) if kind == "env" else _unit_environment(content)
                secret = declared_secret_keys(content) if kind == "env" else frozenset()
                entries += [(item["path"], k, v) for k, v in pairs if k not in secret]
            for key in ("bootcmd", "runcmd"):
                for command in _commands(part.doc, key):
                    entries += [(key, k, v) for k, v in _shell_assignments(command)]
        elif part.kind == "script":
            script = "\n".join(_script_lines(part.text))
            entries += [("shell script", k, v) for k, v in _shell_assignments(script)]
    return entries


def _shell_assignments(text: str) -> list[tuple[str, str]]:
    pairs = []
    for line in text.splitlines():
        match = _SHELL_ASSIGNMENT.match(line)
        value = _shell_value(match.group(2)) if match else None
        if match and value is not None:
            pairs.append((match.group(1), value))
    return pairs


@for_types(LIBVIRT_CLOUD_INIT)
def cloud_init_env_secrets(args: Any, report: Report) -> None:
    """User-data is plain text in the seed ISO, the stack state and the guest's /var/lib/cloud."""
    user_data = args.props.get("userData")
    if not isinstance(user_data, str) or not user_data:
        return
    allowed = {str(k) for k in config(args, "allowedKeys", [])}
    seen: set[tuple[str, str]] = set()
    for where, key, value in _environment_entries(user_data):
        if not value or key in allowed or (where, key) in seen:
            continue
        if SECRET_PLACEHOLDER_RE.search(value):
            continue  # filled from a Pulumi secret (the offline plan's placeholder)
        if key.endswith("_FILE") or value.startswith(_SECRET_FILE_DIRS):
            continue  # points at a secret file
        seen.add((where, key))
        if secret_looking_key(key):
            report(
                f"Cloud-init disk '{args.name}' sets {key} to a literal value in its "
                f"environment ({where}). Move it to the service's build.secrets "
                "(image.secrets for a prebuilt image), which twinstack fills from `pulumi "
                f"config set --secret`, or add {key} to `allowedKeys` if it is not a secret."
            )
        elif credential_looking_value(value):
            report(
                f"Cloud-init disk '{args.name}' has what looks like a credential in "
                f"environment variable {key} ({where}). Move it to the service's "
                "build.secrets (image.secrets for a prebuilt image) instead of writing it "
                "into user-data."
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

POLICIES: list[ResourceValidationPolicy | StackValidationPolicy] = [
    resource_policy(
        name="libvirt-graphics-loopback",
        description="VNC/SPICE graphics must listen on loopback only (no password support).",
        validate=graphics_loopback,
    ),
    resource_policy(
        name="libvirt-console-loopback",
        description="TCP serial consoles must listen on loopback only.",
        validate=console_loopback,
    ),
    resource_policy(
        name="libvirt-xslt-safe",
        description="Domain XSLT must not disable sVirt labels or inject QEMU arguments.",
        validate=xslt_safe,
    ),
    resource_policy(
        name="libvirt-filesystem-passthrough",
        description="Shared host directories must be non-sensitive and read-only.",
        validate=filesystem_passthrough,
        config_schema=PolicyConfigSchema(
            properties={"sensitivePaths": {**_STR_LIST, "default": SENSITIVE_HOST_PATHS}}
        ),
    ),
    resource_policy(
        name="libvirt-disk-sources",
        description="Disks must not be raw host block devices or plain-HTTP downloads.",
        validate=disk_sources,
        config_schema=PolicyConfigSchema(
            properties={"allowedBlockDevices": {**_STR_LIST, "default": []}}
        ),
    ),
    resource_policy(
        name="libvirt-interface-allowlist",
        description="Bridge/macvtap/passthrough/vepa interfaces must be allowlisted.",
        validate=interface_allowlist,
        config_schema=PolicyConfigSchema(
            properties={"allowedHostInterfaces": {**_STR_LIST, "default": []}}
        ),
    ),
    StackValidationPolicy(
        name="libvirt-bridged-network-allowlist",
        description="Domains may join bridge, route or open networks only if allowlisted.",
        validate=bridged_network_allowlist,
        config_schema=PolicyConfigSchema(
            properties={
                "allowedHostInterfaces": {**_STR_LIST, "default": []},
                "allowedNetworks": {**_STR_LIST, "default": []},
            }
        ),
    ),
    resource_policy(
        name="libvirt-no-tpm-passthrough",
        description="Domains must not pass the host TPM through.",
        validate=no_tpm_passthrough,
    ),
    resource_policy(
        name="libvirt-network-mode",
        description="Networks must not use open mode (no firewall rules).",
        validate=network_mode,
        config_schema=PolicyConfigSchema(
            properties={"forbiddenModes": {**_STR_LIST, "default": ["open"]}}
        ),
    ),
    resource_policy(
        name="libvirt-volume-format",
        description="Volumes must declare their format explicitly (no format probing).",
        validate=volume_format,
    ),
    resource_policy(
        name="libvirt-pool-location",
        description="Storage pools must not be located in system directories.",
        validate=pool_location,
        config_schema=PolicyConfigSchema(
            properties={"systemPaths": {**_STR_LIST, "default": SYSTEM_DIRS}}
        ),
    ),
    resource_policy(
        name="libvirt-cloud-init-no-passwords",
        description="Cloud-init must not set plaintext passwords or enable password SSH.",
        validate=cloud_init_passwords,
    ),
    resource_policy(
        name="libvirt-no-env-secrets",
        description="Secrets must not be literal environment variables in cloud-init user-data.",
        validate=cloud_init_env_secrets,
        config_schema=PolicyConfigSchema(properties={"allowedKeys": {**_STR_LIST, "default": []}}),
    ),
    resource_policy(
        name="libvirt-protect-stateful",
        description="Storage pools and data volumes must be protected from deletion.",
        validate=protect_stateful,
    ),
]
