#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, with accounting: munge, MariaDB, slurmdbd, slurmctld,
# slurmd (Debian's packages, installed with apt if missing). Idempotent; `slurm_down.sh` stops it all.
# Needs root. State lives in /var/lib/digitlab-cluster so that nothing else on the machine is touched.
set -euo pipefail
STATE=/var/lib/digitlab-cluster
HOST=$(hostname -s)
CPUS=$(nproc)
MEM_MB=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))

if ! command -v slurmctld >/dev/null || ! command -v slurmdbd >/dev/null || ! command -v mariadbd >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm slurmdbd munge mariadb-server >/dev/null
fi
mkdir -p "$STATE"/{spool,ctld,log,run,mysql}
chown -R slurm:slurm "$STATE"/{spool,ctld,log,run}

# munge: the cluster's authentication
if ! pgrep -x munged >/dev/null; then
  [ -s /etc/munge/munge.key ] || mungekey --create --keyfile=/etc/munge/munge.key
  chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
  mkdir -p /run/munge && chown munge:munge /run/munge
  runuser -u munge -- /usr/sbin/munged
fi

# MariaDB for slurmdbd's accounting (sacct), on a socket of its own
if [ ! -d "$STATE/mysql/mysql" ]; then
  chown mysql:mysql "$STATE/mysql"
  mariadb-install-db --user=mysql --datadir="$STATE/mysql" >/dev/null
fi
if ! pgrep -x mariadbd >/dev/null; then
  install -d -o mysql -g mysql "$STATE/mysqlrun"
  rm -f "$STATE/mysqlrun/mysqld.sock"  # left by a server that was killed
  runuser -u mysql -- mariadbd --datadir="$STATE/mysql" --socket="$STATE/mysqlrun/mysqld.sock" \
    --pid-file="$STATE/mysqlrun/mysqld.pid" --skip-networking=0 --bind-address=127.0.0.1 --port=3307 \
    --log-error="$STATE/mysql/mariadb.log" &>/dev/null &
  for _ in $(seq 120); do
    mariadb-admin --socket="$STATE/mysqlrun/mysqld.sock" -u root ping >/dev/null 2>&1 && break; sleep 0.5
  done
  mariadb --socket="$STATE/mysqlrun/mysqld.sock" -u root <<SQL
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurmdbpass';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
FLUSH PRIVILEGES;
SQL
fi

cat > /etc/slurm/slurmdbd.conf <<CONF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=slurm
LogFile=$STATE/log/slurmdbd.log
PidFile=$STATE/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageLoc=slurm_acct_db
StorageUser=slurm
StoragePass=slurmdbpass
StoragePort=3307
CONF
chown slurm:slurm /etc/slurm/slurmdbd.conf && chmod 600 /etc/slurm/slurmdbd.conf
# slurmdbd reaches MariaDB through its default socket path
ln -sf "$STATE/mysqlrun/mysqld.sock" /run/mysqld/mysqld.sock 2>/dev/null || { mkdir -p /run/mysqld; ln -sf "$STATE/mysqlrun/mysqld.sock" /run/mysqld/mysqld.sock; }

cat > /etc/slurm/slurm.conf <<CONF
ClusterName=digitlab
SlurmctldHost=$HOST
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobCompType=jobcomp/none
MinJobAge=300
KillWait=10
InactiveLimit=0
SchedulerParameters=bf_interval=1,sched_interval=1
MessageTimeout=20
NodeName=$HOST CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF

pgrep -x slurmdbd >/dev/null || slurmdbd
for _ in $(seq 60); do sacctmgr -i list cluster >/dev/null 2>&1 && break; sleep 0.5; done
sacctmgr -i add cluster digitlab >/dev/null 2>&1 || true
pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd
for _ in $(seq 60); do sinfo -h -o %T 2>/dev/null | grep -qE "idle|mixed|alloc" && break; sleep 0.5; done
scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true
sinfo
