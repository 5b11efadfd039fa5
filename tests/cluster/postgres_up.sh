#!/usr/bin/env bash
# A real PostgreSQL server on 127.0.0.1:5433 (Debian's packages, installed with apt if missing), with a role
# `digitlab` (password `digitlab-secret`) owning an empty database named by $1 (default: digitlab).
# Idempotent; `postgres_down.sh` stops it. Needs root. State lives in /var/lib/digitlab-cluster/pg.
set -euo pipefail
DB=${1:-digitlab}
STATE=/var/lib/digitlab-cluster/pg
command -v pg_ctlcluster >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null
BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
mkdir -p "$STATE" && chown postgres:postgres "$STATE"
if [ ! -f "$STATE/data/PG_VERSION" ]; then
  echo postgres-secret > "$STATE/pwfile" && chown postgres "$STATE/pwfile"
  runuser -u postgres -- "$BIN/initdb" -D "$STATE/data" -A scram-sha-256 --pwfile="$STATE/pwfile" -U postgres >/dev/null
  rm -f "$STATE/pwfile"
fi
if ! runuser -u postgres -- "$BIN/pg_ctl" -D "$STATE/data" status >/dev/null 2>&1; then
  runuser -u postgres -- "$BIN/pg_ctl" -D "$STATE/data" -l "$STATE/server.log" -w \
    -o "-p 5433 -c listen_addresses=127.0.0.1 -c unix_socket_directories=$STATE -c max_connections=200" start >/dev/null
fi
export PGPASSWORD=postgres-secret
psql() { command psql -h 127.0.0.1 -p 5433 -U postgres -v ON_ERROR_STOP=1 -q "$@"; }
psql -tc "SELECT 1 FROM pg_roles WHERE rolname='digitlab'" | grep -q 1 || psql -c "CREATE ROLE digitlab LOGIN PASSWORD 'digitlab-secret'"
psql -c "DROP DATABASE IF EXISTS \"$DB\"" -c "CREATE DATABASE \"$DB\" OWNER digitlab"
echo "postgresql://digitlab@127.0.0.1:5433/$DB"
