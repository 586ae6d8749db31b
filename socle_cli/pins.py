"""Fill in versions.toml's checksums and digests from their publishers: `socle pins`.

For k3s, the release's own ``sha256sum-<arch>.txt`` files give the sha256 of the binary
and of the air-gap images archive. For the PostgreSQL image, the registry's answer to a
manifest request (Docker Registry HTTP API v2, with its token handshake) gives the digest
of the pinned tag. Nothing is computed locally and nothing is guessed: a file or header
that is missing or malformed is an error, and versions.toml is left as it was.

Example::

    socle pins k3s             # fetch and write the k3s checksums
    socle pins --check         # exit 1 if versions.toml differs from the publishers
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from socle.versions import (
    ARCHITECTURES,
    VERSIONS_FILE,
    ImagePin,
    K3sPin,
    PostgresqlPin,
    VersionsError,
    k3s_airgap_images_name,
    k3s_binary_name,
    k3s_checksums_name,
    load_versions,
    parse_versions,
)

TIMEOUT_S = 30
MAX_BYTES = 1 << 20
_CHECKSUM_LINE = re.compile(r"^(?P<sha>[0-9a-f]{64})\s+\*?(?P<name>\S+)$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)


class PinError(RuntimeError):
    """A publisher could not be read, or did not say what was expected."""


@dataclass(frozen=True)
class PinUpdate:
    """One value of versions.toml as the publisher gives it: ``table.key = value``."""

    table: str
    key: str
    value: str
    source: str


Fetch = Callable[[urllib.request.Request], tuple[int, dict[str, str], bytes]]


def _fetch(request: urllib.request.Request) -> tuple[int, dict[str, str], bytes]:
    """Send ``request`` with a deadline; return status, headers and at most 1 MiB of body."""
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return response.status, dict(response.headers), response.read(MAX_BYTES)
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read(MAX_BYTES)
    except (urllib.error.URLError, OSError) as error:
        raise PinError(f"cannot reach {request.full_url}: {error}") from None


def k3s_updates(pin: K3sPin, fetch: Fetch = _fetch) -> list[PinUpdate]:
    """Return the k3s checksums published with the pinned release, for every architecture."""
    updates = []
    for arch in ARCHITECTURES:
        url = pin.release_file_url(k3s_checksums_name(arch))
        status, _, body = fetch(urllib.request.Request(url))
        if status != 200:
            raise PinError(f"{url} answered {status}: is {pin.version} a published release?")
        published = {}
        for line in body.decode(errors="replace").splitlines():
            match = _CHECKSUM_LINE.match(line.strip())
            if match:
                published[match.group("name")] = match.group("sha")
        for key, name in (
            ("binary", k3s_binary_name(arch)),
            ("airgap_images", k3s_airgap_images_name(arch)),
        ):
            if name not in published:
                raise PinError(f"{url} lists no checksum for {name}")
            updates.append(PinUpdate(f"k3s.sha256.{arch}", key, published[name], url))
    return updates


def _registry_and_repository(image: str) -> tuple[str, str]:
    first, _, rest = image.partition("/")
    if first == "docker.io":
        repository = rest if "/" in rest else f"library/{rest}"
        return "https://registry-1.docker.io", repository
    host = first.split(":")[0]
    scheme = "http" if host in ("localhost", "127.0.0.1") else "https"
    return f"{scheme}://{first}", rest


def _bearer_token(challenge: str, fetch: Fetch) -> str:
    fields = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
    if not challenge.lower().startswith("bearer") or "realm" not in fields:
        raise PinError(f"the registry asks for an authentication socle cannot do: {challenge}")
    query = urllib.parse.urlencode({k: v for k, v in fields.items() if k in ("service", "scope")})
    url = f"{fields['realm']}?{query}"
    status, _, body = fetch(urllib.request.Request(url))
    if status != 200:
        raise PinError(f"the registry's token service {url} answered {status}")
    try:
        answer = json.loads(body)
        return str(answer.get("token") or answer["access_token"])
    except (ValueError, KeyError, AttributeError):
        raise PinError(f"the registry's token service {url} gave no token") from None


def image_digest_update(
    pin: PostgresqlPin | ImagePin, table: str, fetch: Fetch = _fetch
) -> PinUpdate:
    """Return the digest the image's registry gives for the pinned tag, for ``table``."""
    registry, repository = _registry_and_repository(pin.image)
    url = f"{registry}/v2/{repository}/manifests/{pin.tag}"
    headers = {"Accept": _MANIFEST_TYPES}
    status, answer, _ = fetch(urllib.request.Request(url, headers=headers, method="HEAD"))
    if status == 401:
        challenge = {k.lower(): v for k, v in answer.items()}.get("www-authenticate", "")
        headers["Authorization"] = f"Bearer {_bearer_token(challenge, fetch)}"
        status, answer, _ = fetch(urllib.request.Request(url, headers=headers, method="HEAD"))
    if status != 200:
        raise PinError(f"{url} answered {status}: is {pin.image}:{pin.tag} published?")
    digest = {k.lower(): v for k, v in answer.items()}.get("docker-content-digest", "")
    if not _DIGEST.match(digest):
        raise PinError(f"{url} gave no sha256 digest (Docker-Content-Digest: {digest!r})")
    return PinUpdate(table, "digest", digest, url)


def apply_updates(text: str, updates: list[PinUpdate]) -> str:
    """Return versions.toml's ``text`` with each update's value set, comments kept."""
    lines = text.splitlines(keepends=True)
    for update in updates:
        table, index = None, None
        for number, line in enumerate(lines):
            header = re.match(r"^\s*\[([^\]]+)\]\s*(?:#.*)?$", line)
            if header:
                table = header.group(1).strip()
            elif table == update.table and re.match(rf"^\s*{re.escape(update.key)}\s*=", line):
                index = number
                break
        if index is None:
            raise PinError(f"versions.toml has no {update.table}.{update.key} to fill in")
        lines[index] = f'{update.key} = "{update.value}"\n'
    return "".join(lines)


def pin(what: str, path: Path, check: bool, fetch: Fetch = _fetch) -> list[str]:
    """Fetch ``what`` (``k3s``, ``postgresql``, an image of ``[images]`` or ``all``); write
    or compare; return the changes.

    With ``check`` nothing is written. The file is replaced atomically, and only after
    every value was read, so a failure half-way leaves it as it was.
    """
    versions = load_versions(path)
    updates: list[PinUpdate] = []
    if what in ("k3s", "all"):
        updates += k3s_updates(versions.k3s, fetch)
    if what in ("postgresql", "all"):
        updates.append(image_digest_update(versions.postgresql, "postgresql", fetch))
    for name, image in versions.images.items():
        if what in (name, "all"):
            updates.append(image_digest_update(image, f"images.{name}", fetch))
    if not updates:
        known = ", ".join(["k3s", "postgresql", *versions.images, "all"])
        raise PinError(f"nothing named {what!r} to pin (known: {known})")
    text = path.read_text()
    new_text = apply_updates(text, updates)
    current = {(u.table, u.key): u for u in updates}
    changes = [
        f"{table}.{key} = {update.value} (from {update.source})"
        for (table, key), update in current.items()
        if f'{key} = "{update.value}"' not in _table_text(text, table)
    ]
    if not check and new_text != text:
        parse_versions(tomllib.loads(new_text), source=str(path))  # never write a bad file
        temporary = path.with_name(f".{path.name}.new")
        temporary.write_text(new_text)
        os.replace(temporary, path)
    return changes


def _table_text(text: str, table: str) -> str:
    match = re.search(rf"^\[{re.escape(table)}\]\s*$(?P<body>.*?)(?=^\[|\Z)", text, re.M | re.S)
    return match.group("body") if match else ""


def _pins_command(args: argparse.Namespace) -> int:
    try:
        changes = pin(args.what, args.versions_file, check=args.check)
    except (PinError, VersionsError, OSError) as error:
        print(f"socle: {error}", file=sys.stderr)
        return 1
    for change in changes:
        print(("differs: " if args.check else "pinned: ") + change)
    if not changes:
        print(f"{args.versions_file} matches the publishers", file=sys.stderr)
    return 1 if args.check and changes else 0


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `pins` to the `socle` command line."""
    pins = commands.add_parser(
        "pins",
        help="fill versions.toml's checksums and digests in from their publishers",
        description=(
            "Read the k3s release's published sha256sum-<arch>.txt files and the PostgreSQL "
            "image's digest from its registry, and write them into the versions file. "
            "Nothing is computed locally; a publisher that does not answer leaves the file "
            "as it was."
        ),
    )
    pins.add_argument("what", nargs="?", default="all",
                      help="k3s, postgresql, an image of [images] (test-ingress), or all")
    pins.add_argument("--versions-file", type=Path, default=VERSIONS_FILE)
    pins.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a value differs"
    )
    pins.set_defaults(handler=_pins_command)
