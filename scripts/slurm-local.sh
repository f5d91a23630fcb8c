#!/usr/bin/env bash
# slurm-local.sh - a real single-node Slurm cluster on this machine, for
# geoexp's `sweep --executor slurm` integration test and for CI.
#
# Usage (as root, on Debian 12 / bookworm; no systemd needed):
#
#   scripts/slurm-local.sh [start]   install slurm-wlm + munge if missing (apt),
#                                    write /etc/slurm/slurm.conf, start munged,
#                                    slurmctld and slurmd as background daemons,
#                                    wait until the node is idle, print "ready".
#                                    A second `start` on a running cluster is a
#                                    quick no-op.
#   scripts/slurm-local.sh stop      stop the daemons this script started.
#   scripts/slurm-local.sh status    exit 0 if sbatch works against a responding
#                                    controller with a usable node; else exit 1
#                                    and say why.
#
# Exit status: 0 success; 1 the cluster could not be set up or is not usable
# (the message on stderr starts with "slurm-local: " and is meant to be shown
# as the reason when a test skips itself); 2 bad usage.
#
# The cluster: one node named `hostname -s` (address 127.0.0.1) with
# CPUs = nproc and RealMemory = MemTotal minus a margin, one partition `debug`
# (Default=YES, MaxTime=INFINITE), select/cons_tres with CR_Core (1-CPU tasks
# run side by side), no cgroups (proctrack/linuxproc, task/none), SlurmUser
# root, no accounting database. Without slurmdbd `sacct` does not work in
# Slurm 22.05; per-task state is in `squeue` while a job is pending/running,
# in `scontrol show job` for MinJobAge seconds after it ends, and forever in
# the job completion log /var/log/slurm/jobcomp.log (jobcomp/filetxt).
#
# Per-task state of an array job <id> (checked on this cluster):
#   squeue -h -r -t all -j <id> -O 'ArrayTaskID:12,State:16,exit_code:12'
# prints one "<task> <STATE> <wait status>" line per task: -r expands pending
# ranges (1-3%2) into tasks, -t all keeps finished tasks (COMPLETED, FAILED,
# CANCELLED, TIMEOUT, ...), exit_code is a raw wait status (768 = exit 3).
# MinJobAge (600 s) after the job ends squeue fails with "Invalid job id
# specified"; then only the completion log has it (JobId=<task's own id>
# ... JobState=FAILED ... ArrayJobId=<id> ArrayTaskId=<task> ... ExitCode=3:0).
#
# Files: /etc/slurm/slurm.conf (+ cgroup.conf), /etc/munge/munge.key,
# logs in /var/log/slurm/, state in /var/spool/slurmctld and
# /var/spool/slurmd, bookkeeping of what was started in /run/slurm-local/.
#
# Environment:
#   SLURM_LOCAL_TIMEOUT   seconds to wait for the node to become idle (60)
#   SLURM_LOCAL_PARTITION partition name (debug)
#   SLURM_LOCAL_FORCE=1   replace a slurm.conf this script did not write
#                         (the old one is kept as slurm.conf.bak.<time>)

set -euo pipefail

readonly MARKER="# written by geoexp scripts/slurm-local.sh"
readonly CONF_DIR=/etc/slurm
readonly CONF="$CONF_DIR/slurm.conf"
readonly LOG_DIR=/var/log/slurm
readonly STATE_DIR=/run/slurm-local
readonly CTLD_PID=/run/slurmctld.pid
readonly SLURMD_PID=/run/slurmd.pid
readonly MUNGE_PID=/run/munge/munged.pid
readonly MUNGE_KEY=/etc/munge/munge.key
readonly TIMEOUT="${SLURM_LOCAL_TIMEOUT:-60}"
readonly PARTITION="${SLURM_LOCAL_PARTITION:-debug}"
readonly PACKAGES=(slurm-wlm slurm-client slurmctld slurmd munge)

export DEBIAN_FRONTEND=noninteractive

say() { printf 'slurm-local: %s\n' "$*"; }
# Set once slurmctld/slurmd are being started: a failure then stops them
# again, so a failed start leaves no half-working cluster behind.
STOP_ON_DIE=0
die() {
    printf 'slurm-local: %s\n' "$*" >&2
    if ((STOP_ON_DIE)); then
        STOP_ON_DIE=0
        stop_daemon slurmd "$SLURMD_PID" >&2
        stop_daemon slurmctld "$CTLD_PID" >&2
    fi
    exit 1
}

# Last lines of the daemon logs, for error messages.
log_tails() {
    local f
    for f in "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log" /var/log/munge/munged.log \
        "$STATE_DIR"/*.stderr; do
        [[ -s $f ]] || continue
        printf -- '--- tail of %s ---\n' "$f" >&2
        tail -n 15 "$f" >&2
    done
}

# alive PID NAME: PID is a running (not zombie) process called NAME. The name
# check guards against a stale pid file naming a reused pid; the zombie check
# matters where PID 1 is not an init that reaps orphans promptly.
alive() {
    local stat
    [[ -n $1 ]] && stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    [[ $stat == "$1 ($2) "* && $stat != "$1 ($2) Z"* ]]
}

# live_pid FILE NAME: the pid in FILE if alive NAME has it, else status 1.
live_pid() {
    local pid
    [[ -r $1 ]] || return 1
    pid=$(tr -dc '0-9' <"$1")
    alive "$pid" "$2" || return 1
    printf '%s\n' "$pid"
}

# run_closed CMD...: run CMD with every file descriptor above 2 closed.
# munged keeps whatever it inherits (our lock file, a caller's pipes), and a
# daemon holding a test harness's pipe open makes the harness wait forever.
run_closed() {
    (
        for fd in /proc/"$BASHPID"/fd/*; do
            fd=${fd##*/}
            if ((fd > 2)); then
                eval "exec ${fd}>&-"
            fi
        done
        exec "$@"
    )
}

# ---------------------------------------------------------------- status

# Prints why the cluster is not usable and returns 1, or returns 0.
check_cluster() {
    local out states cmd
    for cmd in sbatch sinfo scontrol squeue; do
        command -v "$cmd" >/dev/null 2>&1 || {
            echo "$cmd not installed"
            return 1
        }
    done
    if ! out=$(timeout 10 scontrol ping 2>&1) || ! grep -q 'is UP' <<<"$out"; then
        echo "controller not responding: $(head -n1 <<<"${out:-no answer in 10 s}")"
        return 1
    fi
    states=$(timeout 10 sinfo -h -N -o '%t' 2>&1) || {
        echo "sinfo failed: $states"
        return 1
    }
    # idle, mix, alloc, comp; not with a flag like * (not responding),
    # ~ (powered off), $ (maintenance); - (planned by backfill) is fine.
    if ! grep -Eqx '(idle|mix|alloc|comp)-?' <<<"$states"; then
        echo "no usable node (sinfo node states: $(tr '\n' ' ' <<<"$states"))"
        return 1
    fi
    # Our single-node cluster: the node's slurmd must answer too (sinfo only
    # notices a dead slurmd after SlurmdTimeout).
    if grep -qsF "$MARKER" "$CONF" && ! out=$(timeout 10 scontrol show slurmd 2>&1); then
        echo "slurmd not responding: $(tr '\n' ' ' <<<"$out")"
        return 1
    fi
    if ! out=$(timeout 10 sbatch --test-only --wrap true 2>&1); then
        echo "sbatch --test-only failed: $out"
        return 1
    fi
    return 0
}

cmd_status() {
    local why
    if why=$(check_cluster); then
        say "ok: controller up, node $(sinfo -h -N -o '%N %t' | head -n1), sbatch accepted a test job"
        return 0
    fi
    die "not usable: $why"
}

# ---------------------------------------------------------------- start

install_packages() {
    local missing=() p
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
            missing+=("$p")
    done
    ((${#missing[@]} == 0)) && return 0
    command -v apt-get >/dev/null 2>&1 || die "apt-get not available; cannot install ${missing[*]}"
    say "installing ${missing[*]} (apt-get)"
    # Keep the packages' maintainer scripts from trying to start services
    # (no init system here); Docker-style images ship this file already.
    local made_policy=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        made_policy=1
    fi
    local apt=(apt-get install -y -q --no-install-recommends "${missing[@]}")
    local rc=0
    "${apt[@]}" >"$STATE_DIR/apt.log" 2>&1 || {
        # Stale or absent package lists on a fresh machine: refresh once.
        apt-get update -q >>"$STATE_DIR/apt.log" 2>&1 &&
            "${apt[@]}" >>"$STATE_DIR/apt.log" 2>&1
    } || rc=$?
    ((made_policy)) && rm -f /usr/sbin/policy-rc.d
    if ((rc != 0)); then
        tail -n 20 "$STATE_DIR/apt.log" >&2
        die "apt-get install ${missing[*]} failed (exit $rc); full log in $STATE_DIR/apt.log"
    fi
}

start_munge() {
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        return 0 # a munged (ours or not) is already serving
    fi
    getent passwd munge >/dev/null || die "user 'munge' missing (munge package broken?)"
    install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
    install -d -o munge -g munge -m 0755 /run/munge
    if [[ ! -s $MUNGE_KEY ]]; then
        say "creating munge key $MUNGE_KEY"
        if command -v mungekey >/dev/null 2>&1; then
            mungekey --create --keyfile="$MUNGE_KEY" --force
        else
            dd if=/dev/urandom of="$MUNGE_KEY" bs=1024 count=1 status=none
        fi
    fi
    chown munge:munge "$MUNGE_KEY"
    chmod 0400 "$MUNGE_KEY"
    rm -f /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock "$MUNGE_PID"
    run_closed runuser -u munge -- /usr/sbin/munged </dev/null >"$STATE_DIR/munged.stderr" 2>&1 ||
        {
            log_tails
            die "munged failed to start"
        }
    local i
    for ((i = 0; i < 50; i++)); do
        if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
            live_pid "$MUNGE_PID" munged >"$STATE_DIR/munged.started" || true
            return 0
        fi
        sleep 0.1
    done
    log_tails
    die "munged started but munge/unmunge does not work"
}

# slurm.conf for this machine, on stdout.
render_slurm_conf() {
    local host cpus mem_kb mem_mb margin
    host=$(hostname -s)
    [[ -n $host ]] || die "hostname -s is empty"
    cpus=$(nproc)
    mem_kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
    mem_mb=$((mem_kb / 1024))
    # Leave 5% (at least 256 MB) so slurmd never finds less than configured.
    margin=$((mem_mb / 20 > 256 ? mem_mb / 20 : 256))
    mem_mb=$((mem_mb > margin + 256 ? mem_mb - margin : 256))
    cat <<EOF
$MARKER
# Single-node test cluster; \`slurm-local.sh start\` rewrites this file and
# restarts the daemons when it would come out different.
ClusterName=local
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroup-based plugins: works in containers/VMs without a delegated cgroup tree.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
# No slurmdbd, so no sacct; finished jobs are appended to the completion log.
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$LOG_DIR/jobcomp.log
# Finished jobs stay visible to squeue -t all / scontrol show job this long (s).
MinJobAge=600
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
# Start batch jobs and array tasks at the next scheduler pass, not up to 3 s later.
SchedulerParameters=batch_sched_delay=0
ReturnToService=2
SlurmdParameters=config_overrides
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
Waittime=0
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

# cgroup.conf, on stdout. slurmd loads a cgroup plugin even when no cgroup
# feature is configured (autodetect); pin the one matching the mounted
# hierarchy and keep it away from systemd, which is not running.
render_cgroup_conf() {
    local plugin=cgroup/v1
    [[ $(stat -f -c %T /sys/fs/cgroup 2>/dev/null) == cgroup2fs ]] && plugin=cgroup/v2
    printf '%s\nCgroupPlugin=%s\nIgnoreSystemd=yes\nIgnoreSystemdOnFailure=yes\n' "$MARKER" "$plugin"
    printf 'ConstrainCores=no\nConstrainRAMSpace=no\nConstrainDevices=no\n'
}

# Is our config (if present) what this script would write now? (0 = yes)
config_current() {
    grep -qsF "$MARKER" "$CONF" || return 0 # not ours: leave it be
    cmp -s <(render_slurm_conf) "$CONF" || return 1
    if grep -qsF "$MARKER" "$CONF_DIR/cgroup.conf"; then
        cmp -s <(render_cgroup_conf) "$CONF_DIR/cgroup.conf" || return 1
    fi
    return 0
}

# Writes slurm.conf and cgroup.conf; returns 0 if either changed, 1 if not.
write_config() {
    if [[ -e $CONF ]] && ! grep -qF "$MARKER" "$CONF"; then
        [[ ${SLURM_LOCAL_FORCE:-0} == 1 ]] ||
            die "$CONF exists and was not written by this script; set SLURM_LOCAL_FORCE=1 to replace it"
        cp -p "$CONF" "$CONF.bak.$(date +%s)"
    fi
    install -d -m 0755 "$CONF_DIR" "$LOG_DIR"
    install -d -m 0700 /var/spool/slurmctld /var/spool/slurmd
    local changed=1 f
    for f in slurm cgroup; do
        if [[ $f == cgroup && -e $CONF_DIR/cgroup.conf ]] &&
            ! grep -qF "$MARKER" "$CONF_DIR/cgroup.conf"; then
            continue # someone else's cgroup.conf: keep it
        fi
        "render_${f}_conf" >"$CONF_DIR/$f.conf.new"
        if cmp -s "$CONF_DIR/$f.conf.new" "$CONF_DIR/$f.conf"; then
            rm -f "$CONF_DIR/$f.conf.new"
        else
            chmod 0644 "$CONF_DIR/$f.conf.new"
            mv "$CONF_DIR/$f.conf.new" "$CONF_DIR/$f.conf"
            changed=0
        fi
    done
    return "$changed"
}

# start_daemon NAME PIDFILE PORT: start NAME unless it is running.
start_daemon() {
    local name=$1 pidfile=$2 port=$3
    if live_pid "$pidfile" "$name" >/dev/null; then
        return 0
    fi
    port_free "$port" || die "cannot start $name: port $port is already in use by another program"
    rm -f "$pidfile"
    # stdio to a file: the daemon must not hold the caller's pipes open
    # (a test harness waiting for EOF on them would hang).
    run_closed "$name" </dev/null >"$STATE_DIR/$name.stderr" 2>&1 || {
        log_tails
        die "$name failed to start"
    }
    local i pid
    for ((i = 0; i < 50; i++)); do
        if pid=$(live_pid "$pidfile" "$name"); then
            printf '%s\n' "$pid" >"$STATE_DIR/$name.started"
            return 0
        fi
        sleep 0.1
    done
    log_tails
    die "$name did not write $pidfile"
}

# stop_daemon NAME PIDFILE: stop NAME if this script started it.
stop_daemon() {
    local name=$1 pidfile=$2 pid i
    pid=$(live_pid "$STATE_DIR/$name.started" "$name") || {
        rm -f "$STATE_DIR/$name.started"
        return 0
    }
    rm -f "$STATE_DIR/$name.started"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        alive "$pid" "$name" || {
            say "stopped $name (pid $pid)"
            return 0
        }
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    say "killed $name (pid $pid)"
    rm -f "$pidfile"
}

daemons_alive() {
    if ! live_pid "$CTLD_PID" slurmctld >/dev/null; then
        log_tails
        die "slurmctld exited during startup (see the log above)"
    fi
    if ! live_pid "$SLURMD_PID" slurmd >/dev/null; then
        log_tails
        die "slurmd exited during startup (see the log above)"
    fi
}

# port_free PORT: nothing listens on 127.0.0.1:PORT.
port_free() {
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

cmd_start() {
    local why
    if why=$(check_cluster 2>&1) && { ((EUID != 0)) || config_current; }; then
        say "ready (already running): $(sinfo -h -N -o 'node %N %t, %c CPUs, partition %P')"
        return 0
    fi
    if ((EUID != 0)); then
        { command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; } ||
            die "cluster not usable ($why) and starting it needs root (or password-less sudo)"
        exec sudo -n --preserve-env=SLURM_LOCAL_TIMEOUT,SLURM_LOCAL_PARTITION,SLURM_LOCAL_FORCE \
            "$(readlink -f "$0")" start
    fi
    [[ $(uname -s) == Linux ]] || die "Linux only"
    install -d -m 0755 "$STATE_DIR"
    # One start at a time (parallel tests may all call it); whoever waited
    # may find the cluster up already.
    exec 9>"$STATE_DIR/lock"
    flock -w $((TIMEOUT + 300)) 9 || die "another slurm-local.sh start holds $STATE_DIR/lock"
    if why=$(check_cluster 2>&1) && config_current; then
        say "ready (already running): $(sinfo -h -N -o 'node %N %t, %c CPUs, partition %P')"
        return 0
    fi

    install_packages
    start_munge
    local changed=0
    write_config && changed=1

    # A controller/slurmd running with an old config: restart ours.
    if ((changed)); then
        stop_daemon slurmd "$SLURMD_PID"
        stop_daemon slurmctld "$CTLD_PID"
    fi
    STOP_ON_DIE=1
    start_daemon slurmctld "$CTLD_PID" 6817
    start_daemon slurmd "$SLURMD_PID" 6818

    local deadline=$((SECONDS + TIMEOUT)) resumed=0 state
    while ((SECONDS < deadline)); do
        daemons_alive
        if why=$(check_cluster 2>&1); then
            STOP_ON_DIE=0
            say "ready: $(sinfo -h -N -o 'node %N %t, %c CPUs, partition %P')"
            return 0
        fi
        # A node left DOWN/DRAIN in the saved state from an earlier run.
        state=$(sinfo -h -N -o '%t' 2>/dev/null | head -n1 || true)
        if ((!resumed)) && [[ $state =~ ^(down|drain|drng|fail) ]]; then
            scontrol update NodeName="$(hostname -s)" State=RESUME >/dev/null 2>&1 || true
            resumed=1
        fi
        sleep 0.5
    done
    daemons_alive
    log_tails
    die "cluster not ready after ${TIMEOUT}s: $why"
}

cmd_stop() {
    local any=0 f
    for f in slurmd slurmctld munged; do
        [[ -e $STATE_DIR/$f.started ]] && any=1
    done
    ((any)) || {
        say "nothing to stop (no daemons started by this script)"
        return 0
    }
    if ((EUID != 0)); then
        { command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; } ||
            die "stopping the daemons needs root (or password-less sudo)"
        exec sudo -n "$(readlink -f "$0")" stop
    fi
    stop_daemon slurmd "$SLURMD_PID"
    stop_daemon slurmctld "$CTLD_PID"
    stop_daemon munged "$MUNGE_PID"
}

case "${1:-start}" in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
-h | --help | help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0" ;;
*)
    echo "usage: $0 [start|stop|status]" >&2
    exit 2
    ;;
esac
