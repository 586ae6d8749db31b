"""The secret check: every kind of secret in clear is named by file and line."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from pyrage import x25519

from socle.secret_scan import scan_repository, scan_text
from socle.wireguard_keys import generate_private_key
from tests.sops_files import write_sops_file

REPO = Path(__file__).resolve().parents[2]
# Built from pieces so that this file itself holds no secret-looking line.
PEM_HEADER = "-----BEGIN " + "OPENSSH PRIVATE KEY-----"
PASSWORD = "Zq8" + "vR2mXw9LpT4kNb"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text("*.age-key\n")
    return tmp_path


def problems(root: Path) -> list[str]:
    return [str(finding) for finding in scan_repository(root)]


def test_the_repository_itself_holds_no_secret_in_clear() -> None:
    assert problems(REPO) == []


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("deploy.key", f"{PEM_HEADER}\nb3Blbn\n", "deploy.key:1: a private key in clear"),
        ("notes.md", f"intro\n\n{x25519.Identity.generate()}\n",
         "notes.md:3: an age identity (private key) in clear"),
        ("admin.conf", f"[Interface]\nPrivateKey = {generate_private_key()}\n",
         "admin.conf:2: a WireGuard private key in clear"),
        ("config.toml", f'[db]\npassword = "{PASSWORD}"\n',
         "config.toml:2: a secret-named value in clear (password)"),
        ("values.yaml", f"auth:\n  api_key: {PASSWORD}\n",
         "values.yaml:2: a secret-named value in clear (api_key)"),
        ("settings.py", f'mail = {{"token": "{PASSWORD}"}}\n',
         "settings.py:1: a secret-named value in clear (token)"),
        ("gitops/db.yaml",
         "apiVersion: v1\nkind: ConfigMap\n---\napiVersion: v1\nkind: Secret\nstringData:\n"
         "  password: x\n", "gitops/db.yaml:4: a Kubernetes Secret with data in clear"),
        ("secrets/prod.yaml", "password: hunter2\n",
         "secrets/prod.yaml:1: not encrypted with SOPS (no sops metadata)"),
    ],
)  # fmt: skip
def test_each_kind_of_secret_in_clear_is_named_by_file_and_line(
    repo: Path, name: str, text: str, expected: str
) -> None:
    (repo / name).parent.mkdir(parents=True, exist_ok=True)
    (repo / name).write_text(text)

    assert problems(repo) == [expected]


def test_a_value_left_in_clear_inside_a_sops_file_is_found(repo: Path) -> None:
    (repo / "secrets").mkdir()
    sops_file, _ = write_sops_file(repo / "secrets", {"mail_password": PASSWORD})
    sops_file.rename(repo / "secrets" / "prod.sops.yaml")
    assert problems(repo) == []

    text = (repo / "secrets" / "prod.sops.yaml").read_text()
    (repo / "secrets" / "prod.sops.yaml").write_text(f"db_password: {PASSWORD}\n{text}")

    assert problems(repo) == ["secrets/prod.sops.yaml:1: a value left unencrypted in a SOPS file"]


def test_names_references_and_code_are_not_secrets() -> None:
    text = (
        'secret = "postgresql-credentials"\n'
        'password_file = "/etc/socle/postgres-password"\n'
        "password = secrets.token_urlsafe(18)\n"
        'token = "${ARGOCD_TOKEN}"\n'
        'private_key = "PLACEHOLDER-admin1-private-key"\n'
        'password = "ENC[AES256_GCM,data:abc,type:str]"\n'
    )
    assert list(scan_text("inventory.py", text)) == []


def test_a_false_alarm_is_kept_only_with_a_reason() -> None:
    line = f'token = "{PASSWORD}"'
    assert list(scan_text("a.py", line + "  # not-a-secret: a public test vector\n")) == []
    assert len(list(scan_text("a.py", line + "  # not-a-secret:\n"))) == 1


def test_fixtures_may_hold_throwaway_keys_but_nothing_else(repo: Path) -> None:
    fixture = repo / "tests" / "operations" / "wireguard.interface" / "case.json"
    fixture.parent.mkdir(parents=True)
    fixture.write_text(f'{{"private_key": "{generate_private_key()}",\n"x": "{PEM_HEADER}"}}\n')

    assert problems(repo) == []


def test_ignored_files_are_left_alone_and_untracked_ones_are_read(repo: Path) -> None:
    (repo / "operator.age-key").write_text(f"{x25519.Identity.generate()}\n")
    (repo / "new.env").write_text(f"API_KEY={PASSWORD}\n")

    assert problems(repo) == ["new.env:1: a secret-named value in clear (API_KEY)"]
