"""Stand-in for k3s's SQLite datastore: kine's table in a WAL-mode database, and a server dir.

Only for tests and benchmarks; k3s itself cannot run on the test machines. The schema is
kine's (the storage layer k3s uses over SQLite), so the agent's snapshot code meets the
same table, indexes and journal mode it meets on a node.

Example:

    db = create_datastore(tmp_path / "server" / "db" / "state.db", rows=100)
    server_dir = make_server_dir(tmp_path / "server")
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sqlite3
from pathlib import Path

KINE_SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS kine (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name INTEGER,
        created INTEGER,
        deleted INTEGER,
        create_revision INTEGER,
        prev_revision INTEGER,
        lease INTEGER,
        value BLOB,
        old_value BLOB
    )
    """,
    "CREATE INDEX IF NOT EXISTS kine_name_index ON kine (name)",
    "CREATE INDEX IF NOT EXISTS kine_name_id_index ON kine (name, id)",
    "CREATE INDEX IF NOT EXISTS kine_id_deleted_index ON kine (id, deleted)",
    "CREATE INDEX IF NOT EXISTS kine_prev_revision_index ON kine (prev_revision)",
    "CREATE UNIQUE INDEX IF NOT EXISTS kine_name_prev_revision_uindex"
    " ON kine (name, prev_revision)",
)

# kine keeps its compaction mark in a row that is updated in place; the writer updates it
# in the same transaction as each insert, so a snapshot can check that transactions are whole.
COMPACT_KEY = "compact_rev_key"


def connect(db_path: Path, busy_timeout_ms: int = 30_000) -> sqlite3.Connection:
    """Open the stand-in datastore the way kine does: WAL journal, busy timeout, autocommit."""
    conn = sqlite3.connect(db_path, isolation_level=None, timeout=busy_timeout_ms / 1000)
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    return conn


def object_value(rng: random.Random, name: str, revision: int, size: int) -> bytes:
    """A value shaped like a stored Kubernetes object: JSON with random, less compressible parts."""
    filler = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789-") for _ in range(size // 2))
    doc = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": name,
            "resourceVersion": str(revision),
            "uid": f"{rng.getrandbits(64):016x}",
        },
        "spec": {"holderIdentity": "node-1", "renewTime": revision, "annotations": filler},
    }
    raw = json.dumps(doc).encode()
    return raw[:size] if len(raw) > size else raw + b" " * (size - len(raw))


def create_datastore(db_path: Path, rows: int = 0, value_size: int = 1500, seed: int = 1) -> Path:
    """Create a WAL-mode datastore with kine's schema, the compaction row (id 1) and `rows` rows.

    Every row is an insert of its own revision, as kine writes them; ids run 1..rows+1.
    """
    db_path.parent.mkdir(parents=True, exist_ok=True)
    conn = connect(db_path)
    try:
        for stmt in KINE_SCHEMA:
            conn.execute(stmt)
        existing = conn.execute("SELECT count(*) FROM kine").fetchone()[0]
        if existing == 0:
            conn.execute(
                "INSERT INTO kine (name, created, deleted, create_revision, prev_revision,"
                " lease, value, old_value) VALUES (?, 1, 0, 0, 0, 0, NULL, NULL)",
                (COMPACT_KEY,),
            )
        fill_rows(conn, rows, value_size=value_size, seed=seed)
    finally:
        conn.close()
    return db_path


def fill_rows(conn: sqlite3.Connection, rows: int, value_size: int = 1500, seed: int = 1) -> None:
    """Append `rows` kine revisions in large transactions (fast set-up, not a live writer)."""
    rng = random.Random(seed)
    batch = 2000
    done = 0
    # kine allows one creation per key (unique name, prev_revision): number keys after the top id
    base = conn.execute("SELECT coalesce(max(id), 0) FROM kine").fetchone()[0]
    while done < rows:
        n = min(batch, rows - done)
        conn.execute("BEGIN IMMEDIATE")
        for _ in range(n):
            name = f"/registry/configmaps/ns-{rng.randrange(100)}/cm-{base + done}"
            conn.execute(
                "INSERT INTO kine (name, created, deleted, create_revision, prev_revision,"
                " lease, value, old_value) VALUES (?, 1, 0, 0, 0, 0, ?, NULL)",
                (name, object_value(rng, name, done, value_size)),
            )
            done += 1
        conn.execute("COMMIT")


def fill_to_size(db_path: Path, target_bytes: int, value_size: int = 1500) -> int:
    """Grow the datastore until its file is at least `target_bytes`; return the rows added."""
    conn = connect(db_path)
    added = 0
    try:
        while db_path.stat().st_size + _wal_size(db_path) < target_bytes:
            fill_rows(conn, 10_000, value_size=value_size, seed=added + 7)
            added += 10_000
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return added


def _wal_size(db_path: Path) -> int:
    wal = db_path.with_name(db_path.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


def make_server_dir(server_dir: Path, config_file: Path | None = None) -> dict[str, bytes]:
    """Lay out a fake k3s server dir: token, tls/, cred/ and a config.yaml; return what was written.

    The returned mapping (relative path -> content) lets a test compare a restore with the
    original. The config goes to `config_file` (default: server_dir/../config.yaml).
    """
    def pem(label: str, body: str) -> bytes:
        return f"-----BEGIN {label}-----\n{body}\n-----END {label}-----\n".encode()

    files: dict[str, bytes] = {
        "token": f"K10{os.urandom(16).hex()}::server:{os.urandom(16).hex()}\n".encode(),
        "tls/server-ca.crt": pem("CERTIFICATE", "stand-in server CA"),
        "tls/server-ca.key": pem("EC PRIVATE KEY", os.urandom(24).hex()),
        "tls/client-ca.crt": pem("CERTIFICATE", "stand-in client CA"),
        "tls/etcd/peer-ca.crt": pem("CERTIFICATE", "stand-in peer CA"),
        "cred/passwd": f"{os.urandom(8).hex()},node,node,k3s:agent\n".encode(),
        "cred/ipsec.psk": f"{os.urandom(16).hex()}\n".encode(),
    }
    for rel, content in files.items():
        path = server_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        path.chmod(0o600)
    config = config_file if config_file is not None else server_dir.parent / "config.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config_content = (
        b"write-kubeconfig-mode: '0600'\ntls-san:\n  - 10.8.0.1\nflannel-backend: vxlan\n"
    )
    config.write_bytes(config_content)
    files["config.yaml"] = config_content
    return files


def install_server(root: Path, template_db: Path) -> tuple[Path, Path, dict[str, bytes]]:
    """Lay out a stand-in k3s server under `root` where a node keeps it: a copy of
    `template_db` as the datastore, plus token, tls/, cred/ and config.yaml.

    Returns the server dir, the config file, and what `make_server_dir` wrote.
    """
    # Imported here: the stand-in k3s program carries this module to test hosts, where
    # the agent's package is not installed.
    from socle_agent.sources.k3s import datastore_path

    server_dir = root / "var" / "lib" / "rancher" / "k3s" / "server"
    config_file = root / "etc" / "rancher" / "k3s" / "config.yaml"
    datastore_path(server_dir).parent.mkdir(parents=True)
    shutil.copyfile(template_db, datastore_path(server_dir))
    return server_dir, config_file, make_server_dir(server_dir, config_file)
