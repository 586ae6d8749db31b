"""`socle pins` against a stand-in release server and a stand-in image registry.

Both run here on the loopback address and speak the real protocols: the k3s release's
published ``sha256sum-<arch>.txt`` files, and the Docker Registry HTTP API v2 with its
bearer-token handshake.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from socle.versions import VERSIONS_FILE, load_versions
from socle_cli.main import main

VERSION = load_versions().k3s.version
QUOTED_VERSION = VERSION.replace("+", "%2B")
DIGEST = "sha256:" + hashlib.sha256(b"the manifest index").hexdigest()
BUSYBOX_DIGEST = "sha256:" + hashlib.sha256(b"busybox's manifest index").hexdigest()
MANIFESTS = {
    "/v2/library/postgres/manifests/16.10-bookworm": DIGEST,
    "/v2/rancher/mirrored-library-busybox/manifests/1.37.0": BUSYBOX_DIGEST,
}
TOKEN = "stand-in-token"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class Publisher:
    """What the stand-in servers answer; tests change it to break one thing."""

    port: int = 0
    files: dict[str, str] = field(default_factory=dict)
    digest_header: str | None = DIGEST
    requests: list[str] = field(default_factory=list)


def release_files(version: str) -> dict[str, str]:
    files = {}
    for arch, binary in (("amd64", "k3s"), ("arm64", "k3s-arm64")):
        listing = "".join(
            f"{sha(name)}  {name}\n"
            for name in (binary, f"k3s-airgap-images-{arch}.tar.gz",
                         f"k3s-airgap-images-{arch}.tar.zst", f"k3s-images-{arch}.txt")
        )  # fmt: skip
        files[f"/download/{version}/sha256sum-{arch}.txt"] = listing
    return files


@pytest.fixture
def publisher() -> Iterator[Publisher]:
    state = Publisher(files=release_files(QUOTED_VERSION))

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            state.requests.append(f"GET {self.path}")
            if self.path.startswith("/token?"):
                self._answer(200, {}, f'{{"token": "{TOKEN}"}}')
            elif self.path in state.files:
                self._answer(200, {}, state.files[self.path])
            else:
                self._answer(404, {}, "not found")

        def do_HEAD(self) -> None:  # noqa: N802
            state.requests.append(f"HEAD {self.path}")
            if self.path not in MANIFESTS:
                self._answer(404, {}, "")
            elif self.headers.get("Authorization") != f"Bearer {TOKEN}":
                challenge = (
                    f'Bearer realm="http://127.0.0.1:{state.port}/token",'
                    'service="registry.stand-in",scope="repository:library/postgres:pull"'
                )
                self._answer(401, {"WWW-Authenticate": challenge}, "")
            else:
                headers = {"Docker-Content-Digest": MANIFESTS[self.path]}
                self._answer(200, headers if state.digest_header else {}, "")

        def _answer(self, status: int, headers: dict[str, str], body: str) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body.encode())

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    thread.join()


@pytest.fixture
def versions_file(tmp_path: Path, publisher: Publisher) -> Path:
    """The repository's versions file, pointed at the stand-ins, every value unconfirmed."""
    text = VERSIONS_FILE.read_text()
    text = text.replace(
        'release_url = "https://github.com/k3s-io/k3s/releases/download"',
        f'release_url = "http://127.0.0.1:{publisher.port}/download"',
    ).replace(
        'image = "docker.io/library/postgres"',
        f'image = "localhost:{publisher.port}/library/postgres"',
    ).replace(
        'image = "docker.io/rancher/mirrored-library-busybox"',
        f'image = "localhost:{publisher.port}/rancher/mirrored-library-busybox"',
    )
    path = tmp_path / "versions.toml"
    path.write_text(text)
    return path


def run_pins(versions_file: Path, *args: str) -> int:
    return main(["pins", *args, "--versions-file", str(versions_file)])


def test_pins_fills_every_checksum_and_digest_from_the_publishers(versions_file: Path) -> None:
    assert run_pins(versions_file) == 0

    versions = load_versions(versions_file)
    amd64, arm64 = versions.k3s.artefacts("amd64"), versions.k3s.artefacts("arm64")
    assert amd64.require_binary() == sha("k3s")
    assert amd64.require_airgap_images() == sha("k3s-airgap-images-amd64.tar.zst")
    assert arm64.require_binary() == sha("k3s-arm64")
    assert versions.postgresql.require_reference().endswith(f"16.10-bookworm@{DIGEST}")
    assert versions.images["test-ingress"].require_reference().endswith(f"@{BUSYBOX_DIGEST}")
    assert "# The one place socle pins" in versions_file.read_text()


def test_a_second_run_changes_nothing_and_check_agrees(versions_file: Path) -> None:
    assert run_pins(versions_file) == 0
    pinned = versions_file.read_text()

    assert run_pins(versions_file) == 0
    assert run_pins(versions_file, "--check") == 0
    assert versions_file.read_text() == pinned


def test_check_reports_a_difference_and_writes_nothing(
    versions_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = versions_file.read_text()

    assert run_pins(versions_file, "k3s", "--check") == 1

    assert versions_file.read_text() == before
    assert "differs: k3s.sha256.amd64.binary" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("no airgap line", "lists no checksum for k3s-airgap-images-arm64.tar.zst"),
        ("no release", "answered 404: is v"),
        ("no digest", "gave no sha256 digest"),
    ],
)
def test_a_publisher_that_does_not_say_leaves_the_file_as_it_was(
    versions_file: Path, publisher: Publisher, capsys: pytest.CaptureFixture[str],
    breakage: str, message: str,
) -> None:  # fmt: skip
    arm64 = f"/download/{QUOTED_VERSION}/sha256sum-arm64.txt"
    if breakage == "no airgap line":
        publisher.files[arm64] = "".join(
            line + "\n" for line in publisher.files[arm64].splitlines() if ".tar.zst" not in line
        )
    elif breakage == "no release":
        publisher.files.clear()
    else:
        publisher.digest_header = None
    before = versions_file.read_text()

    assert run_pins(versions_file) == 1

    assert versions_file.read_text() == before
    assert message in capsys.readouterr().err


def test_the_registry_token_handshake_is_followed(
    versions_file: Path, publisher: Publisher
) -> None:
    assert run_pins(versions_file, "postgresql") == 0

    assert publisher.requests == [
        "HEAD /v2/library/postgres/manifests/16.10-bookworm",
        "GET /token?service=registry.stand-in&scope=repository%3Alibrary%2Fpostgres%3Apull",
        "HEAD /v2/library/postgres/manifests/16.10-bookworm",
    ]


def test_one_image_of_the_images_table_is_pinned_alone(versions_file: Path) -> None:
    assert run_pins(versions_file, "test-ingress") == 0

    versions = load_versions(versions_file)
    assert versions.images["test-ingress"].digest == BUSYBOX_DIGEST
    assert versions.postgresql.digest == "unconfirmed"


def test_an_unknown_name_is_refused_listing_the_known_ones(
    versions_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_pins(versions_file, "grafana") == 1
    assert "known: k3s, postgresql, test-ingress, all" in capsys.readouterr().err
