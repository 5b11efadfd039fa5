#!/usr/bin/env bash
# Stop what postgres_up.sh started (its data folder stays).
STATE=/var/lib/digitlab-cluster/pg
BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
runuser -u postgres -- "$BIN/pg_ctl" -D "$STATE/data" -m fast stop >/dev/null 2>&1 || true
