"""Stand-in for the cluster's PostgreSQL on a test host: a real server on the node itself.

Production runs PostgreSQL in k3s (phase 6); test hosts have no Kubernetes, so this
test-only deploy installs Debian's server on the node, sets the `postgres` password from
host data `standin_postgres_password`, and fills a database `app` with rows a restore
drill can count. Never used in production.
"""

from pyinfra import host
from pyinfra.facts.deb import DebPackages
from pyinfra.operations import apt, server, systemd

major = host.data.get("postgresql_major", 15)
installed = host.get_fact(DebPackages)
apt.packages(
    name="PostgreSQL server (stand-in for the cluster's)",
    packages=[f"postgresql-{major}"],
    update=f"postgresql-{major}" not in installed,
)
systemd.service(name="PostgreSQL running", service="postgresql", running=True, enabled=True)

# A throwaway password made by the test; never a real secret.
password = host.data.get("standin_postgres_password")
server.shell(
    name="postgres' password for TCP logins, and the database app",
    commands=[
        f"runuser -u postgres -- psql -qc \"ALTER USER postgres PASSWORD '{password}'\"",
        "runuser -u postgres -- psql -tAc \"SELECT 1 FROM pg_database WHERE datname = 'app'\""
        " | grep -q 1 || runuser -u postgres -- createdb app",
    ],
)
server.shell(
    name="Rows in app",
    commands=[
        "runuser -u postgres -- psql -q -d app -c "
        "\"CREATE TABLE IF NOT EXISTS orders (id serial PRIMARY KEY, customer text, "
        "total numeric(10,2), detail jsonb); "
        "INSERT INTO orders (customer, total, detail) SELECT 'customer ' || g, g * 1.5, "
        "jsonb_build_object('n', g) FROM generate_series(1, 5000) g "
        "WHERE NOT EXISTS (SELECT 1 FROM orders);\"",
    ],
)
