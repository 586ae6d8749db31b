"""Find secrets committed in clear: private keys, secret-named values, unencrypted SOPS files.

The repository may hold secrets only encrypted with SOPS. ``scan_repository`` reads every
file git knows (tracked, and untracked but not ignored, so a file is caught before its
commit) and returns one ``Finding`` per problem with the file and line, without ever
repeating the secret itself.

Example::

    for finding in scan_repository(Path(".")):
        print(finding)    # secrets/prod.yaml:3: a secret-named value in clear (password)
"""

from __future__ import annotations

import fnmatch
import math
import re
import subprocess
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

# Test fixtures may hold throwaway keys; each entry says why it is allowed.
FIXTURE_PATHS: dict[str, str] = {
    "tests/operations/*/*.json": "pyinfra-testing fixtures with throwaway WireGuard keys",
    "tests/facts/*/*.json": "pyinfra-testing fixtures of command output",
}
# A line may opt out when a person says why: `# not-a-secret: <reason>`.
ALLOW_MARKER = re.compile(r"not-a-secret:\s*\S")

_PRIVATE_KEY_BLOCK = re.compile(r"-----BEGIN (?:[A-Z]+ )*PRIVATE KEY( BLOCK)?-----")
_AGE_IDENTITY = re.compile(r"AGE-SECRET-KEY-1[0-9A-Z]{58}")
_WIREGUARD_PRIVATE = re.compile(r"^\s*PrivateKey\s*=\s*[A-Za-z0-9+/]{42,43}=")
_CLOUD_KEYS = re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b|\bgh[pousr]_[A-Za-z0-9]{36}\b")
_SECRET_NAME = re.compile(
    r"(?:password|passwd|passphrase|secret|token|api_?key|private_?key|secret_?key|"
    r"access_?key|client_?secret|credentials?)$",
    re.IGNORECASE,
)
# "key": "value", key = 'value' anywhere in a line (TOML, YAML, JSON, Python, INI, env).
_QUOTED_PAIR = re.compile(
    r"""["']?(?P<key>[A-Za-z_][A-Za-z0-9_.-]*)["']?\s*[:=]\s*(?P<quote>["'])(?P<value>[^"'\s]+)(?P=quote)"""
)
# key: value on a line of its own, unquoted (YAML, INI, env files; never Python code).
_BARE_ASSIGNMENT = re.compile(
    r"^\s*(?:- )?(?P<key>[A-Za-z_][A-Za-z0-9_.-]*)\s*[:=]\s*(?P<value>[^\"'#\s,]+)\s*(?:#.*)?$"
)
_REFERENCE = re.compile(
    r"^(?:ENC\[.*|\$\{.*|\{\{.*|<.*>|/.*|\.{0,2}/.*|[A-Z_]+|.*PLACEHOLDER.*|.*CHANGE.?ME.*|"
    r"None|null|true|false|\d+)$",
    re.IGNORECASE,
)
_WORDS = re.compile(r"[a-z]+(?:[-_./][a-z]+)*")
_SOPS_FILE = re.compile(r"[^/]\.sops\.(?:ya?ml|json|env|ini)$")
_BINARY_SUFFIXES = (".png", ".jpg", ".gz", ".tgz", ".zip", ".whl", ".db", ".zst", ".tar")


@dataclass(frozen=True)
class Finding:
    """One secret-looking thing in clear: where, and what kind (never the value)."""

    path: str
    line: int
    problem: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.problem}"


def entropy(text: str) -> float:
    """Shannon entropy of ``text`` in bits per character (random base64 is near 6)."""
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def _looks_random(value: str) -> bool:
    # Names (a Secret's name, a host name) are lowercase words; code is not a value.
    if len(value) < 12 or _REFERENCE.match(value) or _WORDS.fullmatch(value):
        return False
    if "(" in value:
        return False
    classes = sum(bool(re.search(p, value)) for p in (r"[a-z]", r"[A-Z]", r"\d", r"[^\w]"))
    return classes >= 2 and entropy(value) >= 3.5


def _secret_assignment(path: str, line: str) -> str | None:
    """Return the key of a secret-named literal assigned on ``line``, if any."""
    pairs = [(m.group("key"), m.group("value")) for m in _QUOTED_PAIR.finditer(line)]
    if not path.endswith(".py") and (bare := _BARE_ASSIGNMENT.match(line)):
        pairs.append((bare.group("key"), bare.group("value")))
    for key, value in pairs:
        name = key.rsplit(".", 1)[-1]
        if _SECRET_NAME.search(name) and _looks_random(value):
            return name
    return None


def scan_text(path: str, text: str) -> Iterator[Finding]:
    """Yield the findings of one file's text (``path`` is for the report and the rules)."""
    if _SOPS_FILE.search(path) or path.startswith("secrets/"):
        yield from _scan_sops_file(path, text)
        return
    fixture = any(fnmatch.fnmatch(path, pattern) for pattern in FIXTURE_PATHS)
    for number, line in enumerate(text.splitlines(), start=1):
        if ALLOW_MARKER.search(line):
            continue
        if _PRIVATE_KEY_BLOCK.search(line) and not fixture:
            yield Finding(path, number, "a private key in clear")
        elif _AGE_IDENTITY.search(line) and not fixture:
            yield Finding(path, number, "an age identity (private key) in clear")
        elif _WIREGUARD_PRIVATE.search(line) and not fixture:
            yield Finding(path, number, "a WireGuard private key in clear")
        elif _CLOUD_KEYS.search(line):
            yield Finding(path, number, "a cloud or forge access key in clear")
        elif not fixture and (key := _secret_assignment(path, line)):
            yield Finding(path, number, f"a secret-named value in clear ({key})")
    yield from _scan_kubernetes_secrets(path, text)


def _scan_sops_file(path: str, text: str) -> Iterator[Finding]:
    if path == "secrets/README.md":
        return
    if not re.search(r"^sops:\s*$", text, re.MULTILINE) and '"sops":' not in text:
        yield Finding(path, 1, "not encrypted with SOPS (no sops metadata)")
        return
    in_metadata = False
    for number, line in enumerate(text.splitlines(), start=1):
        if re.match(r"^sops:\s*$", line):
            in_metadata = True
        elif in_metadata and line and not line[0].isspace():
            in_metadata = False
        if in_metadata or line.strip().startswith("#") or ALLOW_MARKER.search(line):
            continue
        match = re.match(r"^\s*(?:- )?[\w.-]+:\s+(?P<value>\S.*)$", line)
        if match and not match.group("value").startswith(("ENC[", "|", ">")):
            yield Finding(path, number, "a value left unencrypted in a SOPS file")


def _scan_kubernetes_secrets(path: str, text: str) -> Iterator[Finding]:
    if not path.endswith((".yaml", ".yml")) or path.startswith("tests/"):
        return
    for start, document in _yaml_documents(text):
        if re.search(r"^kind:\s*Secret\s*$", document, re.MULTILINE) and re.search(
            r"^(?:data|stringData):\s*\n\s+\S", document, re.MULTILINE
        ):
            yield Finding(path, start, "a Kubernetes Secret with data in clear")


def _yaml_documents(text: str) -> Iterator[tuple[int, str]]:
    start, lines = 1, list[str]()
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith("---"):
            yield start, "\n".join(lines)
            start, lines = number + 1, []
        else:
            lines.append(line)
    yield start, "\n".join(lines)


def repository_files(root: Path) -> list[str]:
    """Every file git tracks in ``root``, plus untracked files that are not ignored."""
    listed = subprocess.run(
        ["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True, check=True,
    ).stdout.decode()  # fmt: skip
    return sorted({name for name in listed.split("\0") if name})


def scan_repository(root: Path, paths: Iterable[str] | None = None) -> list[Finding]:
    """Return every finding in the repository at ``root`` (or in ``paths`` within it)."""
    findings: list[Finding] = []
    for name in paths if paths is not None else repository_files(root):
        file = root / name
        if name.endswith(_BINARY_SUFFIXES) or not file.is_file() or file.is_symlink():
            continue
        try:
            text = file.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        findings.extend(scan_text(name, text))
    return findings
