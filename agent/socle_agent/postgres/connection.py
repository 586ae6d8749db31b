"""Reaching PostgreSQL: where (configuration or the cluster), as whom, within what time.

Every call here has a deadline: connections take `connect_timeout`, the Kubernetes API
requests `_request_timeout`, both from the job's context, so a server that accepts and
never answers fails the job instead of blocking it.

Example:

    connection = resolve_connection(context, config.postgres)
    with connect(context, connection, "app") as conn:
        conn.execute("select 1")
"""

from __future__ import annotations

import base64
import contextlib
import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from socle_agent.base import AgentError, JobContext
from socle_agent.config import KubernetesConnection, PostgresSection

log = logging.getLogger(__name__)


class PostgresError(AgentError):
    """PostgreSQL or one of its programs failed; the message says which and why."""


class ClusterUnreachable(PostgresError):
    """The cluster that says where PostgreSQL is cannot be asked (no kubeconfig, no answer)."""


@dataclass(frozen=True)
class Connection:
    """Where and as whom to connect; the password stays out of command lines."""

    host: str
    port: int
    user: str
    password: str | None = None
    dsn: str | None = None

    def conninfo(self, database: str) -> str:
        """A libpq connection string for `database` (without the password)."""
        if self.dsn:
            return make_conninfo(self.dsn, dbname=database)
        return make_conninfo(host=self.host, port=self.port, user=self.user, dbname=database)

    def describe(self) -> str:
        """Where the server is, for messages."""
        if self.dsn:
            params = conninfo_to_dict(self.dsn)
            return f"{params.get('host', 'localhost')}:{params.get('port', 5432)}"
        return f"{self.host}:{self.port}"


def resolve_connection(
    context: JobContext, section: PostgresSection, core_api: Any = None
) -> Connection:
    """The connection the configuration describes.

    With [postgres.kubernetes] the address is the Service's cluster IP and port and the
    password is read from the Secret, with `core_api` (a kubernetes CoreV1Api; made from
    the kubeconfig, or the in-cluster credentials, when not given).
    """
    if section.kubernetes is not None:
        api = core_api if core_api is not None else core_api_for(section.kubernetes)
        return connection_from_cluster(context, section.kubernetes, section.user, api)
    password = None
    if section.password_file is not None:
        password = section.password_file.read_text(encoding="utf-8").rstrip("\r\n")
    return Connection(section.host, section.port, section.user, password, section.dsn)


def core_api_for(kube: KubernetesConnection) -> Any:
    """A CoreV1Api client: the given kubeconfig, else in-cluster, else the default kubeconfig.

    Raises ClusterUnreachable when no credentials exist yet (the cluster is deployed after
    the agent on a first deploy).
    """
    # Imported here: the client is large, and most runs of the agent never need it.
    from kubernetes import client
    from kubernetes import config as kube_config

    try:
        if kube.kubeconfig is not None:
            if not kube.kubeconfig.exists():
                raise ClusterUnreachable(
                    f"no kubeconfig at {kube.kubeconfig} yet: the cluster cannot be asked "
                    "where PostgreSQL is"
                )
            loader = kube_config.new_client_from_config(config_file=str(kube.kubeconfig))
            return client.CoreV1Api(loader)
        try:
            kube_config.load_incluster_config()
        except kube_config.ConfigException:
            kube_config.load_kube_config()
        return client.CoreV1Api()
    except kube_config.ConfigException as exc:
        raise ClusterUnreachable(f"no credentials for the cluster: {exc}") from exc


def connection_from_cluster(
    context: JobContext, kube: KubernetesConnection, user: str, api: Any
) -> Connection:
    """Read the Service's address and the Secret's credentials through `api`, each request
    bounded by the network timeout and the job's deadline."""
    from kubernetes.client import ApiException
    from urllib3.exceptions import HTTPError

    def request(call: Any, name: str) -> Any:
        context.check(f"asking the cluster for {kube.namespace}/{name}")
        limit = context.timeout(context.config.agent.network_timeout_seconds)
        try:
            return call(name, kube.namespace, _request_timeout=(limit, limit))
        except ApiException:
            raise
        except (HTTPError, OSError) as exc:
            raise ClusterUnreachable(
                f"the Kubernetes API did not answer for {kube.namespace}/{name} "
                f"within {limit:.0f} s: {exc}"
            ) from exc

    service = request(api.read_namespaced_service, kube.service)
    host = service.spec.cluster_ip
    if not host or host == "None":
        raise PostgresError(f"service {kube.namespace}/{kube.service} has no cluster IP")
    ports = service.spec.ports or []
    if kube.port_name is not None:
        ports = [p for p in ports if p.name == kube.port_name]
    if not ports:
        wanted = f" named {kube.port_name!r}" if kube.port_name else ""
        raise PostgresError(f"service {kube.namespace}/{kube.service} has no port{wanted}")
    secret = request(api.read_namespaced_secret, kube.secret)
    data = secret.data or {}

    def decoded(key: str) -> str:
        if key not in data:
            raise PostgresError(f"secret {kube.namespace}/{kube.secret} has no key {key!r}")
        return base64.b64decode(data[key]).decode("utf-8")

    if kube.user_key is not None:
        user = decoded(kube.user_key)
    return Connection(host, int(ports[0].port), user, decoded(kube.password_key))


@dataclass(frozen=True)
class ClientEnv:
    """Environment and inherited descriptors for the PostgreSQL programs the agent runs."""

    env: dict[str, str]
    pass_fds: tuple[int, ...] = ()


@contextlib.contextmanager
def client_env(connection: Connection, context: JobContext | None = None) -> Iterator[ClientEnv]:
    """The password for PostgreSQL programs in an anonymous in-memory passfile.

    Nothing reaches a command line, the environment or the disk, so a killed agent
    leaves no password behind; the programs read the file through /proc/self/fd. With a
    `context`, their connection attempts time out as the agent's own do.
    """
    env = dict(os.environ)
    if context is not None:
        env["PGCONNECT_TIMEOUT"] = str(_whole_seconds(connect_timeout(context)))
    if connection.password is None:
        yield ClientEnv(env)
        return
    escaped = connection.password.replace("\\", "\\\\").replace(":", "\\:")
    fd = os.memfd_create("pgpass", os.MFD_CLOEXEC)
    try:
        os.write(fd, f"*:*:*:*:{escaped}\n".encode())
        # libpq ignores a passfile that others could read.
        os.fchmod(fd, 0o600)
        env["PGPASSFILE"] = f"/proc/self/fd/{fd}"
        yield ClientEnv(env, (fd,))
    finally:
        os.close(fd)


def connect_timeout(context: JobContext) -> float:
    """Seconds one connection attempt may take."""
    return context.timeout(context.config.agent.network_timeout_seconds)


def _whole_seconds(seconds: float) -> int:
    # libpq takes whole seconds, and treats 0 as "wait forever"; its minimum is 2.
    return max(2, math.ceil(seconds))


def connect(
    context: JobContext, connection: Connection, database: str, **kwargs: Any
) -> psycopg.Connection[Any]:
    """Connect, retrying `connect_attempts` times `retry_delay_seconds` apart.

    Every statement of the connection is bounded by what is left of the job's time
    (`statement_timeout`) and waits for a lock no longer than `lock_timeout_seconds`.
    """
    section = context.config.postgres
    assert section is not None
    last_error: Exception | None = None
    for attempt in range(1, section.connect_attempts + 1):
        context.check(f"connecting to {connection.describe()}")
        try:
            conn = psycopg.connect(
                connection.conninfo(database),
                password=connection.password,
                connect_timeout=_whole_seconds(connect_timeout(context)),
                **kwargs,
            )
        except psycopg.OperationalError as exc:
            last_error = exc
            log.warning(
                "connecting to %s (attempt %d of %d): %s",
                connection.describe(),
                attempt,
                section.connect_attempts,
                str(exc).strip(),
            )
            if attempt < section.connect_attempts:
                context.sleep(section.retry_delay_seconds)
            continue
        bound_statements(conn, context)
        return conn
    raise PostgresError(
        f"cannot connect to PostgreSQL at {connection.describe()} after "
        f"{section.connect_attempts} attempts: {str(last_error).strip()}"
    )


def bound_statements(conn: psycopg.Connection[Any], context: JobContext) -> None:
    """Set the connection's statement and lock timeouts from the job's deadline."""
    section = context.config.postgres
    assert section is not None
    remaining = context.remaining()
    statement_ms = 0 if math.isinf(remaining) else max(1, int(remaining * 1000))
    lock_ms = max(1, int(min(section.lock_timeout_seconds, remaining) * 1000))
    autocommit = conn.autocommit
    conn.autocommit = True
    # set_config(..., false): for the session, not only the current transaction.
    conn.execute("select set_config('statement_timeout', %s, false)", (str(statement_ms),))
    conn.execute("select set_config('lock_timeout', %s, false)", (str(lock_ms),))
    conn.autocommit = autocommit


def admin_connect(context: JobContext, connection: Connection) -> psycopg.Connection[Any]:
    """An autocommit connection to the `postgres` database, for CREATE/DROP/ALTER DATABASE."""
    return connect(context, connection, "postgres", autocommit=True)
