"""The grammar of every string a stack file can set, declared once.

Stack-file text is untrusted: it ends up in file paths (the Docker build context), in
line-based formats (Dockerfile, systemd unit, EnvironmentFile, fstab, cloud-init) and in
shell scripts (the health probe). Each string field of the spec therefore has one of the
grammars below. A grammar is enforced at validation (``re.fullmatch``, so a trailing
newline never slips past a ``$``), shown in the JSON Schema (the same pattern, which is
valid both as a Python and an ECMA-262 regular expression), and named in the error.

Two kinds of grammar:

* **Closed** grammars (names, paths, image references, users, packages, URIs) admit no
  character that any target format would have to quote: no whitespace, quotes, ``$``,
  ``%`` or backslash. Paths must also be normalized (no ``.``/``..`` segments, no ``//``,
  no trailing ``/``), so a path always stays under the root it is joined to.
* **Open** grammars (command arguments, environment values, file content) admit almost
  any text; control characters that no format can carry faithfully are rejected, and the
  renderers quote the rest with each format's own escaping, so the rendered artefact reads
  back to exactly the spec's value (``tests/unit/test_readback.py`` proves it).
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, Field


@dataclass(frozen=True)
class Grammar:
    """A named string grammar: pattern (Python and ECMA-262), length bound and wording."""

    name: str
    pattern: str
    max_length: int
    allowed: str
    """What is allowed, in words; used in error messages and schema descriptions."""

    @property
    def schema_pattern(self) -> str:
        """The JSON Schema form: anchored, since a schema pattern searches."""
        return f"^(?:{self.pattern})$"

    def check(self, value: str) -> str:
        if len(value) > self.max_length:
            raise ValueError(
                f"is {len(value)} characters long; {self.name} is at most {self.max_length}"
            )
        if re.fullmatch(self.pattern, value) is None:
            bad = _first_bad(value)
            where = f" (character {bad})" if bad else ""
            pattern = f" (pattern {self.schema_pattern})" if len(self.pattern) <= 80 else ""
            raise ValueError(f"is not a valid {self.name}{where}; allowed: {self.allowed}{pattern}")
        return value

    def field(self, description: str | None = None) -> Any:
        """The schema side: pattern and length bound, for ``Annotated[str, ...]``."""
        return Field(
            json_schema_extra={"pattern": self.schema_pattern, "maxLength": self.max_length},
            description=description,
        )


def _first_bad(value: str) -> str:
    """The first invisible character of a value (the message shows the rest)."""
    for i, ch in enumerate(value):
        if not ch.isprintable() or (ch.isspace() and ch != " "):
            return f"{ch!r} at {i}"
    return ""


# Characters no format twinstack writes can carry faithfully, or that change a line-based
# format's structure: C0 controls except TAB and LF, DEL, C1 controls, the Unicode line and
# paragraph separators (YAML and some editors treat them as line breaks), lone surrogates
# (not encodable as UTF-8) and the byte-order mark.
_OPEN_CHARS = r"[^\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff\ufeff]"
_SEGMENT = r"(?!\.\.?(?:/|$))[A-Za-z0-9._+@=,:~-]+"

NAME = Grammar(
    "name",
    r"[a-z](?:[a-z0-9-]{0,30}[a-z0-9])?",
    32,
    "lower-case letters, digits and '-', starting with a letter, not ending with '-', 1-32 chars",
)
STACK_NAME = Grammar(
    "stack name",
    r"(?!\.\.?$)[A-Za-z0-9_.-]{1,100}",
    100,
    "letters, digits, '_', '.' and '-' (Pulumi's stack-name rule), not '.' or '..'",
)
ENV_NAME = Grammar(
    "environment variable name",
    r"[A-Za-z_][A-Za-z0-9_]*",
    128,
    "letters, digits and '_', not starting with a digit",
)
CONFIG_KEY = Grammar(
    "config key",
    r"[A-Za-z][A-Za-z0-9_.-]*",
    128,
    "letters, digits, '_', '.', '-', starting with a letter (the part after `twinstack:`)",
)
ABS_PATH = Grammar(
    "absolute path",
    rf"(?:/{_SEGMENT})+",
    1024,
    "a normalized absolute path: '/'-separated segments of letters, digits and . _ + @ = , : ~ -, "
    "no '.' or '..' segments, no '//', no trailing '/', no spaces or quotes",
)
EXECUTABLE = Grammar(
    "executable",
    rf"(?:/{_SEGMENT})+|[A-Za-z0-9_][A-Za-z0-9._+-]*",
    1024,
    "an absolute path or a bare program name (letters, digits, . _ + -, not starting with "
    "'-', '@', ':', '+' or '!')",
)
ARG = Grammar(
    "command argument",
    rf"{_OPEN_CHARS}*",
    8192,
    "any text up to 8192 characters except control characters other than TAB and newline",
)
ENV_VALUE = Grammar(
    "environment value",
    rf"{_OPEN_CHARS}*",
    32768,
    "any text up to 32768 characters except control characters other than TAB and newline",
)
CONTENT = Grammar(
    "file content",
    r"[^\x00\ud800-\udfff]*",
    1 << 20,
    "UTF-8 text up to 1 MiB without NUL characters",
)
UNIX_USER = Grammar(
    "user name",
    r"[a-z_][a-z0-9_-]{0,31}",
    32,
    "lower-case letters, digits, '_' and '-', starting with a letter or '_', 1-32 chars",
)
PACKAGE = Grammar(
    "Debian package",
    r"[a-z0-9][a-z0-9+.-]*(?:=[A-Za-z0-9.:~+_-]+)?",
    256,
    "a Debian package name, optionally '=version' (letters, digits, . : ~ + _ -)",
)
# distribution/reference: [domain[:port]/]path[:tag][@digest]; lower-case path components
_DOMAIN = r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*(?::[0-9]+)?/)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IMAGE_REF = Grammar(
    "image reference",
    rf"{_DOMAIN}{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})?"
    r"(?:@sha256:[0-9a-f]{64})?",
    255,
    "a Docker image reference [registry/]repository[:tag][@sha256:digest] (no spaces)",
)
HTTP_PATH = Grammar(
    "HTTP request path",
    r"/[A-Za-z0-9._~!$&()*+,;=:@/%?-]*",
    2048,
    "'/' then URL path and query characters (RFC 3986; percent-escapes allowed; no spaces, "
    "quotes or '#')",
)
HTTPS_URL = Grammar(
    "https URL",
    r"https://[A-Za-z0-9.-]+(?::[0-9]+)?(?:/[A-Za-z0-9._~!$&()*+,;=:@/%-]*)?",
    2048,
    "an https:// URL without spaces, quotes, query or fragment",
)
KERNEL_CMDLINE = Grammar(
    "kernel command line",
    r"[\x21-\x7e]+(?: [\x21-\x7e]+)*",
    1024,
    "printable ASCII words separated by single spaces, up to 1024 characters",
)
LIBVIRT_URI = Grammar(
    "libvirt URI",
    r"[a-z][a-z0-9+.-]*://[A-Za-z0-9._~!$&()*+,;=:@/%?-]*",
    1024,
    "a libvirt connection URI such as qemu:///system or qemu+ssh://host/system",
)
DOCKER_HOST = Grammar(
    "Docker host",
    r"(?:unix|tcp|ssh|npipe)://[A-Za-z0-9._~!$&()*+,;=:@/%?-]+",
    1024,
    "a Docker daemon address: unix://, tcp://, ssh:// or npipe:// followed by no spaces",
)


def normalized_hint(value: str) -> str:
    """For a path that fails :data:`ABS_PATH`: its normalized form, if it has one."""
    if not value.startswith("/"):
        return ""
    norm = posixpath.normpath(value)
    norm = "/" + norm.lstrip("/")
    if norm != value and re.fullmatch(ABS_PATH.pattern, norm):
        return f"; did you mean {norm!r}?"
    return ""


def check_path(value: str) -> str:
    """:data:`ABS_PATH` with a hint at the normalized form."""
    try:
        return ABS_PATH.check(value)
    except ValueError as exc:
        raise ValueError(f"{exc}{normalized_hint(value)}") from None


Name = Annotated[str, NAME.field(), AfterValidator(NAME.check)]
EnvName = Annotated[str, ENV_NAME.field(), AfterValidator(ENV_NAME.check)]
ConfigKey = Annotated[str, CONFIG_KEY.field(), AfterValidator(CONFIG_KEY.check)]
AbsPath = Annotated[str, ABS_PATH.field(), AfterValidator(check_path)]
Executable = Annotated[str, EXECUTABLE.field(), AfterValidator(EXECUTABLE.check)]
Arg = Annotated[str, ARG.field(), AfterValidator(ARG.check)]
EnvValue = Annotated[str, ENV_VALUE.field(), AfterValidator(ENV_VALUE.check)]
Content = Annotated[str, CONTENT.field(), AfterValidator(CONTENT.check)]
UnixUser = Annotated[str, UNIX_USER.field(), AfterValidator(UNIX_USER.check)]
Package = Annotated[str, PACKAGE.field(), AfterValidator(PACKAGE.check)]
ImageRef = Annotated[str, IMAGE_REF.field(), AfterValidator(IMAGE_REF.check)]
HttpPath = Annotated[str, HTTP_PATH.field(), AfterValidator(HTTP_PATH.check)]
KernelCmdline = Annotated[str, KERNEL_CMDLINE.field(), AfterValidator(KERNEL_CMDLINE.check)]
LibvirtUri = Annotated[str, LIBVIRT_URI.field(), AfterValidator(LIBVIRT_URI.check)]
DockerHost = Annotated[str, DOCKER_HOST.field(), AfterValidator(DOCKER_HOST.check)]

GRAMMARS: tuple[Grammar, ...] = (
    NAME,
    STACK_NAME,
    ENV_NAME,
    CONFIG_KEY,
    ABS_PATH,
    EXECUTABLE,
    ARG,
    ENV_VALUE,
    CONTENT,
    UNIX_USER,
    PACKAGE,
    IMAGE_REF,
    HTTP_PATH,
    HTTPS_URL,
    KERNEL_CMDLINE,
    LIBVIRT_URI,
    DOCKER_HOST,
)
"""Every grammar; README.md's table of string fields names each (a test checks it)."""
