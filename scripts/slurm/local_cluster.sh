#!/bin/bash
# A one-node SLURM cluster on this machine, for testing the batch scripts (tests/test_slurm.py):
#
#   bash scripts/slurm/local_cluster.sh start DIR    # then: source DIR/env; sbatch ...
#   bash scripts/slurm/local_cluster.sh stop DIR
#
# start installs Debian's slurm-wlm and munge when they are missing (needs root and apt), writes
# everything into DIR (configs, keys, state, logs, the daemons' PIDs, a scratch root) and starts
# munged, slurmctld and slurmd in the background. The node pretends to have 8 CPUs, 64 GB and two
# GPUs (gres gpu:1080ti:2, backed by two fake device nodes), so the scripts' own #SBATCH requests fit
# unchanged; what really runs is the test's tiny training. A requeued job may start again after 10 s
# (cred_expire; 120 s by default). DIR/env sets SLURM_CONF, puts the
# singularity stand-in (singularity_stand_in.sh) first on PATH, and sets SCRATCH_ROOT=DIR/scratch,
# which the stand-in hides inside the "container" except for the binds the scripts ask for.
# start exits 3 when the cluster cannot be brought up (the reason on stderr), 0 once the node is idle.
#
# stop cancels the cluster's jobs, waits for them to end, and stops the three daemons by the PIDs
# that start recorded (TERM, then KILL after 10 s).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

fail() {
    echo "local_cluster: $*" >&2
    exit 3
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

install_packages() {
    command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null && return
    [[ $(id -u) == 0 ]] || fail "slurm-wlm and munge are missing and installing them needs root"
    command -v apt-get >/dev/null || fail "slurm-wlm and munge are missing and there is no apt-get"
    echo "installing slurm-wlm and munge" >&2
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq slurm-wlm munge; } >"$DIR/log/apt.log" 2>&1 \
        || fail "apt-get install slurm-wlm munge failed (see $DIR/log/apt.log)"
}

# start_daemon NAME COMMAND...: run COMMAND in the background (its own session, output to
# DIR/log/NAME.out) and record its PID in DIR/pids/NAME.
start_daemon() {
    local name=$1
    shift
    setsid "$@" >"$DIR/log/$name.out" 2>&1 </dev/null &
    echo $! >"$DIR/pids/$name"
}

write_configs() {
    local host ctld_port slurmd_port
    host=$(hostname -s)
    ctld_port=$(free_port)
    slurmd_port=$(free_port)
    # Two fake GPUs: device nodes with the NVIDIA driver's major number (nothing opens them; slurmd
    # wants character devices). Without mknod, a GRES count alone.
    local gpus="Count=2"
    rm -f "$DIR"/dev/nvidia[01]
    if mknod "$DIR/dev/nvidia0" c 195 0 2>/dev/null && mknod "$DIR/dev/nvidia1" c 195 1 2>/dev/null; then
        gpus="File=$DIR/dev/nvidia[0-1]"
    fi
    cat >"$DIR/etc/slurm.conf" <<EOF
ClusterName=localtest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.socket,cred_expire=10
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/state/slurmctld.pid
SlurmdPidFile=$DIR/spool/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
GresTypes=gpu
SlurmdParameters=config_overrides
ReturnToService=2
KillWait=30
MinJobAge=3600
SchedulerParameters=sched_interval=2
NodeName=$host NodeAddr=127.0.0.1 CPUs=8 RealMemory=65536 Gres=gpu:1080ti:2 State=UNKNOWN
PartitionName=day Nodes=$host Default=YES MaxTime=INFINITE State=UP
PartitionName=test Nodes=$host MaxTime=15 State=UP
EOF
    cat >"$DIR/etc/gres.conf" <<EOF
AutoDetect=off
NodeName=$host Name=gpu Type=1080ti $gpus
EOF
    cat >"$DIR/env" <<EOF
export SLURM_CONF=$DIR/etc/slurm.conf
export PATH=$DIR/bin:\$PATH
export SCRATCH_ROOT=$DIR/scratch
export SINGULARITY_STAND_IN_HIDE=$DIR/scratch
export SINGULARITY_STAND_IN_STAGE=$DIR/stage
EOF
}

start() {
    [[ $(id -u) == 0 ]] || fail "the daemons run as root here; this is not root"
    mkdir -p "$DIR"/{etc,state,spool,log,pids,munge,dev,bin,scratch,stage}
    chmod 700 "$DIR/munge"
    install_packages
    unshare --mount --propagation private true 2>/dev/null \
        || fail "unshare --mount does not work here (the singularity stand-in needs it)"
    write_configs
    rm -f "$DIR/bin/singularity"
    printf '#!/bin/bash\nexec bash %q "$@"\n' "$HERE/singularity_stand_in.sh" >"$DIR/bin/singularity"
    chmod +x "$DIR/bin/singularity"
    export SLURM_CONF=$DIR/etc/slurm.conf

    dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
    chmod 400 "$DIR/munge/munge.key"
    start_daemon munged munged --foreground --force --key-file="$DIR/munge/munge.key" \
        --socket="$DIR/munge/munge.socket" --pid-file="$DIR/munge/munged.pid" \
        --seed-file="$DIR/munge/munged.seed" --log-file="$DIR/log/munged.log"
    wait_for "munged" 20 test -S "$DIR/munge/munge.socket"
    start_daemon slurmctld slurmctld -D -c -f "$SLURM_CONF"
    wait_for "slurmctld" 30 scontrol ping
    start_daemon slurmd slurmd -D -f "$SLURM_CONF"
    wait_for "slurmd (the node idle)" 60 node_is_idle
    echo "local_cluster: up in $DIR (source $DIR/env)" >&2
}

node_is_idle() {
    [[ $(sinfo -h -o %t 2>/dev/null | head -n 1) == idle ]]
}

# wait_for WHAT SECONDS COMMAND...: until COMMAND succeeds; fail (with the daemons' logs) after SECONDS.
wait_for() {
    local what=$1 seconds=$2 name
    shift 2
    for ((i = 0; i < seconds * 5; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        for name in munged slurmctld slurmd; do
            if [[ -f $DIR/pids/$name ]] && ! kill -0 "$(cat "$DIR/pids/$name")" 2>/dev/null; then
                tail -n 20 "$DIR/log/$name.out" "$DIR/log/$name.log" >&2 2>/dev/null || true
                stop >/dev/null 2>&1 || true
                fail "$name exited while waiting for $what"
            fi
        done
        sleep 0.2
    done
    tail -n 20 "$DIR"/log/*.log >&2 2>/dev/null || true
    stop >/dev/null 2>&1 || true
    fail "$what did not come up within $seconds s"
}

# stop_daemon NAME: TERM the PID recorded for NAME (if it is still that daemon), KILL after 10 s.
stop_daemon() {
    local name=$1 pid
    [[ -f $DIR/pids/$name ]] || return 0
    pid=$(cat "$DIR/pids/$name")
    if [[ $(ps -o comm= -p "$pid" 2>/dev/null) == "$name" ]]; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$DIR/pids/$name"
}

stop() {
    export SLURM_CONF=$DIR/etc/slurm.conf
    if [[ -f $DIR/pids/slurmctld ]] && scontrol ping >/dev/null 2>&1; then
        scancel --full --user="$(id -un)" 2>/dev/null || true
        for ((i = 0; i < 300; i++)); do  # up to a minute: KillWait is 30 s
            [[ -z $(squeue -h -o %i 2>/dev/null) ]] && break
            sleep 0.2
        done
    fi
    stop_daemon slurmd
    stop_daemon slurmctld
    stop_daemon munged
}

[[ $# == 2 && ($1 == start || $1 == stop) ]] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }
mkdir -p "$2"
DIR=$(cd "$2" && pwd)
"$1"
