#!/usr/bin/env bash
# A one-node Slurm cluster on this machine for tests: munge + slurmctld + slurmd, no systemd, no
# accounting (jobcomp/filetxt records finished jobs), fake GPUs (character devices made with mknod)
# so --gres=gpu:N is accepted and sets CUDA_VISIBLE_DEVICES. Needs root and Debian's slurm-wlm and
# munge (scripts/ci/system_packages.sh). Idempotent: a cluster already up is left as it is.
# Prints the path of slurm.conf; state and logs live in $LMGAUGE_SLURM_DIR (default /tmp/lmgauge-slurm).
set -euo pipefail
DIR="${LMGAUGE_SLURM_DIR:-/tmp/lmgauge-slurm}"
CONF=/etc/slurm/slurm.conf
MARK="# written by lmgauge scripts/slurm/start_cluster.sh"
HOST="$(hostname -s)"
NGPU="${LMGAUGE_SLURM_GPUS:-2}"

for cmd in munged slurmctld slurmd sinfo; do
  command -v "$cmd" >/dev/null || { echo "start_cluster: $cmd not found (apt-get install --no-install-recommends slurm-wlm munge)" >&2; exit 2; }
done
if [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
  echo "start_cluster: $CONF exists and is not ours; refusing to overwrite a real cluster's config" >&2
  exit 2
fi
if [ -f "$CONF" ] && sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
  echo "$CONF"
  exit 0
fi

mkdir -p "$DIR/state" "$DIR/spool" /etc/slurm
# munge: the key ships with the package; a fresh one if it is missing
install -d -o munge -g munge -m 0755 /run/munge
install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge /etc/munge
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=128 status=none
  chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
fi
if ! munge -n >/dev/null 2>&1; then
  runuser -u munge -- munged
  for _ in $(seq 50); do munge -n >/dev/null 2>&1 && break; sleep 0.1; done
fi

# fake GPUs: character devices that are never opened; Slurm only needs them to exist
GPU_FILES=()
for i in $(seq 0 $((NGPU - 1))); do
  dev="/dev/lmgauge-fakegpu$i"
  [ -c "$dev" ] || mknod -m 0666 "$dev" c 195 $((200 + i))
  GPU_FILES+=("$dev")
done

MEM_MB=$(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo)
MEM_MB=$((MEM_MB - 1024 > 512 ? MEM_MB - 1024 : 512))
CPUS=$(nproc)
cat > "$CONF" <<CONF
$MARK
ClusterName=lmgauge
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
GresTypes=gpu
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/jobcomp.txt
ReturnToService=2
KillWait=2
MinJobAge=30
InactiveLimit=0
NodeName=$HOST CPUs=$CPUS RealMemory=$MEM_MB Gres=gpu:$NGPU State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
: > /etc/slurm/gres.conf
for i in "${!GPU_FILES[@]}"; do echo "Name=gpu File=${GPU_FILES[$i]}" >> /etc/slurm/gres.conf; done

pgrep -f "^slurmctld" >/dev/null 2>&1 || slurmctld -i
pgrep -f "^slurmd" >/dev/null 2>&1 || slurmd
for _ in $(seq 200); do
  if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
    echo "$CONF"
    exit 0
  fi
  sleep 0.1
done
echo "start_cluster: the node did not come up within 20 s; logs in $DIR" >&2
tail -n 20 "$DIR/slurmctld.log" "$DIR/slurmd.log" >&2 || true
exit 1
