#!/usr/bin/env bash
# Stop what slurm_up.sh started (its state folder stays, so the next start is quick).
STATE=/var/lib/digitlab-cluster
pkill -x slurmd; pkill -x slurmctld; pkill -x slurmdbd
[ -f "$STATE/mysqlrun/mysqld.pid" ] && kill "$(cat "$STATE/mysqlrun/mysqld.pid")" 2>/dev/null
pkill -x munged
running() { for name in slurmd slurmctld slurmdbd mariadbd munged; do pgrep -x "$name" >/dev/null && return 0; done; return 1; }
for _ in $(seq 40); do running || break; sleep 0.25; done
exit 0
