#!/usr/bin/env bash
# Makes sure the local PostgreSQL the tests use answers on 127.0.0.1:5432 (trust auth, user postgres),
# starting the Debian/Ubuntu cluster if it is down; does nothing if it is already up. `make test`
# runs it first, so the tracking-server and PostgreSQL tests find their database (and .ci/run,
# which runs `make test`, gets it too).
#
#   scripts/ensure_postgres.sh
#   PROMPTOPS_PG_PORT=5433 PROMPTOPS_PG_CLUSTER=scratch scripts/ensure_postgres.sh   # another cluster
set -euo pipefail

port=${PROMPTOPS_PG_PORT:-5432}
cluster=${PROMPTOPS_PG_CLUSTER:-main}

fail() {
    echo "ensure_postgres: $*" >&2
    exit 1
}

if pg_isready -q -h 127.0.0.1 -p "$port" 2>/dev/null; then
    exit 0
fi
command -v pg_ctlcluster >/dev/null || fail "no PostgreSQL on 127.0.0.1:$port and no pg_ctlcluster to start one: install postgresql (apt-get install postgresql) or start yours"
version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
[ -n "$version" ] || fail "no PostgreSQL on 127.0.0.1:$port and no cluster in /etc/postgresql: create one with pg_createcluster"
if ! started=$(pg_ctlcluster --skip-systemctl-redirect "$version" "$cluster" start 2>&1); then
    pg_isready -q -h 127.0.0.1 -p "$port" 2>/dev/null && exit 0  # started meanwhile by someone else
    fail "cannot start PostgreSQL $version/$cluster for 127.0.0.1:$port: $(echo "$started" | tail -n 1)"
fi
for _ in $(seq 1 60); do
    pg_isready -q -h 127.0.0.1 -p "$port" 2>/dev/null && exit 0
    sleep 0.5
done
fail "PostgreSQL $version/$cluster did not answer on 127.0.0.1:$port within 30 s after pg_ctlcluster start: see /var/log/postgresql/postgresql-$version-$cluster.log"
