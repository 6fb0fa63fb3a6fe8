#!/usr/bin/env bash
# Start a PostgreSQL server from Debian's packages for the shared-ledger tests, and print the
# environment that points the tests at it. Usage: eval "$(.ci/postgres.sh)"
# Installs the `postgresql` package when the server is missing (needs root, as CI has).
set -euo pipefail
log() { echo "$*" >&2; }
if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    log "installing PostgreSQL from Debian's packages"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
fi
version=$(ls /usr/lib/postgresql | sort -V | tail -1)
if ! pg_lsclusters -h 2>/dev/null | awk '{print $1, $2}' | grep -q "^$version main$"; then
    pg_createcluster "$version" main >&2
fi
pg_ctlcluster "$version" main start >&2 2>/dev/null || true
port=$(pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" {print $3}')
for _ in $(seq 30); do
    runuser -u postgres -- pg_isready -q -p "$port" && break
    sleep 1
done
runuser -u postgres -- pg_isready -q -p "$port" || { log "PostgreSQL did not start"; exit 1; }
password="ci-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
runuser -u postgres -- psql -q -p "$port" -v ON_ERROR_STOP=1 >&2 <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'automixer') THEN
    CREATE ROLE automixer LOGIN CREATEDB;
  END IF;
END \$\$;
ALTER ROLE automixer PASSWORD '$password';
SQL
log "PostgreSQL $version listening on 127.0.0.1:$port"
echo "export AUTOMIXER_TEST_POSTGRES_URL=postgresql://automixer:$password@127.0.0.1:$port/postgres"
echo "export AUTOMIXER_REQUIRE_POSTGRES=1"
