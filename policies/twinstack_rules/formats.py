"""Readers for the line-based formats twinstack renders into a VM's user-data.

The policy packs read what an instance will really run from the recorded inputs, so they
decode each format by that format's own rules, not by pattern-matching the text:

* :func:`read_unit` and :func:`split_exec`: a systemd unit file and an ``ExecStart=``
  value (systemd.syntax(7), systemd.service(5): double/single quotes removed, C escapes
  decoded in every word, ``%%`` and ``$$`` the literal forms).
* :func:`read_env_file`: a systemd ``EnvironmentFile`` (the rules of systemd's env-file
  parser, which for the quoted form twinstack writes are those of a POSIX shell).

They are the inverse of ``components.renderers`` (tests/unit/test_readback.py proves the
round trip over arbitrary text, and checks the same files with ``systemd-analyze verify``
and ``bash``). Input they cannot decode faithfully raises :class:`FormatError`.
"""

from __future__ import annotations


class FormatError(ValueError):
    """Text that is not in the format, or uses a construct these readers do not decode."""


# --------------------------------------------------------------------------- unit files


def read_unit(text: str) -> dict[str, list[tuple[str, str]]]:
    """Sections of a unit file: ``{section: [(key, value), ...]}`` in file order.

    Comment lines (``#``/``;``) and blank lines are skipped; a line ending in a
    backslash continues on the next line (the backslash becomes a space).
    """
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        while line.endswith("\\") and i < len(lines):
            line = line[:-1] + " " + lines[i].strip()
            i += 1
        key, sep, value = line.partition("=")
        if not sep or current is None:
            raise FormatError(f"not a unit file assignment: {line[:60]!r}")
        current.append((key.strip(), value.strip()))
    return sections


def unit_values(unit: dict[str, list[tuple[str, str]]], section: str, key: str) -> list[str]:
    """Every value of ``key`` in ``section`` (systemd settings may repeat)."""
    return [v for k, v in unit.get(section, []) if k == key]


def unit_value(unit: dict[str, list[tuple[str, str]]], section: str, key: str) -> str | None:
    """The effective (last) value of a single-valued setting, or ``None``."""
    values = unit_values(unit, section, key)
    return values[-1] if values else None


_C_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    '"': '"',
    "'": "'",
    "s": " ",
}


def _unescape(word: str, i: int) -> tuple[str, int]:
    """Decode the C escape starting after the backslash at ``word[i]``."""
    c = word[i]
    if c in _C_ESCAPES:
        return _C_ESCAPES[c], i + 1
    if c == "x" and i + 2 < len(word) + 1:
        digits = word[i + 1 : i + 3]
        if len(digits) == 2 and all(d in "0123456789abcdefABCDEF" for d in digits):
            return chr(int(digits, 16)), i + 3
    if c in "uU":
        n = 4 if c == "u" else 8
        digits = word[i + 1 : i + 1 + n]
        if len(digits) == n and all(d in "0123456789abcdefABCDEF" for d in digits):
            return chr(int(digits, 16)), i + 1 + n
    if c in "01234567":
        digits = word[i : i + 3]
        if len(digits) == 3 and all(d in "01234567" for d in digits):
            return chr(int(digits, 8)), i + 3
    raise FormatError(f"unknown escape '\\{c}'")


def _undouble(word: str, sign: str, problem: str) -> str:
    """``sign`` doubled is the literal ``sign``; a single one is a run-time expansion
    (``%`` a unit specifier, ``$`` a variable) that depends on the machine: not decodable."""
    out = []
    i = 0
    while i < len(word):
        if word[i] == sign:
            if word[i + 1 : i + 2] == sign:
                out.append(sign)
                i += 2
                continue
            raise FormatError(f"{problem}: {word[i : i + 2]!r}")
        out.append(word[i])
        i += 1
    return "".join(out)


def _specifiers(word: str) -> str:
    return _undouble(word, "%", "unit specifier depends on the machine")


def _variables(word: str) -> str:
    return _undouble(word, "$", "ExecStart= expands $VARIABLES at run time")


def split_exec(value: str) -> list[str]:
    """The argv an ``ExecStart=`` value runs (one command, no prefixes).

    Words are split on whitespace; a word that starts with a quote runs to the matching
    quote, which must be followed by whitespace or the end; C escapes are decoded inside
    and outside quotes; then ``%%`` and ``$$`` become ``%`` and ``$``.
    """
    words: list[str] = []
    i, n = 0, len(value)
    while True:
        while i < n and value[i] in " \t\n":
            i += 1
        if i >= n:
            break
        if value[i] == ";" and (i + 1 == n or value[i + 1] in " \t\n"):
            raise FormatError("ExecStart= holds more than one command (';')")
        out: list[str] = []
        quote = value[i] if value[i] in "\"'" else None
        if quote:
            i += 1
        while True:
            if i >= n:
                if quote:
                    raise FormatError("unbalanced quoting in ExecStart=")
                break
            c = value[i]
            if quote and c == quote:
                i += 1
                if i < n and value[i] not in " \t\n":
                    raise FormatError("a closing quote must be followed by whitespace")
                break
            if not quote and c in " \t\n":
                break
            if c == "\\":
                if i + 1 >= n:
                    raise FormatError("ExecStart= ends in a lone backslash")
                decoded, i = _unescape(value, i + 1)
                out.append(decoded)
                continue
            out.append(c)
            i += 1
        words.append(_variables(_specifiers("".join(out))))
    if not words:
        raise FormatError("empty ExecStart=")
    if words[0][:1] in ("-", "@", ":", "+", "!"):
        raise FormatError(f"ExecStart= prefix {words[0][0]!r} changes how the command runs")
    return words


# --------------------------------------------------------------------------- env files

SECRET_KEYS_COMMENT = "# twinstack: from Pulumi secrets:"
"""The comment twinstack's env files start with when variables come from Pulumi secrets
(``components.renderers.SECRET_KEYS_COMMENT``; a test holds the two equal)."""


def declared_secret_keys(text: str) -> frozenset[str]:
    """Variables an env file declares as filled from Pulumi secrets (its first line)."""
    first = text.split("\n", 1)[0]
    if not first.startswith(SECRET_KEYS_COMMENT):
        return frozenset()
    return frozenset(first[len(SECRET_KEYS_COMMENT) :].split())


_ESCAPABLE_IN_DOUBLE_QUOTES = '"\\`$'


def read_env_file(text: str) -> dict[str, str]:
    """Variables of a systemd ``EnvironmentFile`` (later assignments win).

    Supports the forms systemd documents: ``KEY=value`` (unquoted, trailing whitespace
    trimmed, backslash escapes the next character), ``KEY="..."`` (backslash escapes
    ``" \\ ` $`` and a newline, which is then dropped; any other backslash is kept;
    newlines inside are kept), ``KEY='...'`` (literal), comment lines and ``export``-less
    assignments.
    """
    env: dict[str, str] = {}
    i, n = 0, len(text)
    while i < n:
        # skip whitespace and comment lines
        while i < n and text[i] in " \t\r\n":
            i += 1
        if i >= n:
            break
        if text[i] in "#;":
            while i < n and text[i] != "\n":
                i += 1
            continue
        start = i
        while i < n and text[i] not in "=\n":
            i += 1
        if i >= n or text[i] != "=":
            raise FormatError(f"not an assignment: {text[start:i][:60]!r}")
        key = text[start:i].strip()
        if (
            not key
            or not (key[0].isalpha() or key[0] == "_")
            or not all(c.isalnum() or c == "_" for c in key)
        ):
            raise FormatError(f"invalid variable name {key[:60]!r}")
        i += 1
        value: list[str] = []
        trailing = 0  # unquoted trailing whitespace to trim
        while i < n and text[i] in " \t":
            i += 1  # whitespace before the value is skipped
        while i < n and text[i] != "\n":
            c = text[i]
            if c == '"':
                i += 1
                while True:
                    if i >= n:
                        raise FormatError(f"unterminated double quote in {key}")
                    c = text[i]
                    if c == '"':
                        i += 1
                        break
                    if c == "\\" and i + 1 < n:
                        nxt = text[i + 1]
                        if nxt in _ESCAPABLE_IN_DOUBLE_QUOTES:
                            value.append(nxt)
                        elif nxt != "\n":
                            value.append("\\" + nxt)
                        i += 2
                        continue
                    value.append(c)
                    i += 1
                trailing = 0
                continue
            if c == "'":
                end = text.find("'", i + 1)
                if end < 0:
                    raise FormatError(f"unterminated single quote in {key}")
                value.append(text[i + 1 : end])
                i = end + 1
                trailing = 0
                continue
            if c == "\\" and i + 1 < n:
                if text[i + 1] != "\n":
                    value.append(text[i + 1])
                i += 2
                trailing = 0
                continue
            value.append(c)
            trailing = trailing + 1 if c in " \t" else 0
            i += 1
        joined = "".join(value)
        env[key] = joined[: len(joined) - trailing] if trailing else joined
    return env
