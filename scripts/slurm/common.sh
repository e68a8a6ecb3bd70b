# Shared by the SLURM batch scripts (sourced, not run). They set SCRATCH (this job's folder on the
# node: ${SCRATCH_ROOT:-/scratch}/$SLURM_JOB_ID) before sourcing this.
#
# run_and_requeue FORWARD_AS COMMAND...
#   Runs COMMAND in the background and waits for it. A stop signal to the batch shell is sent on to
#   COMMAND as FORWARD_AS (empty: as the signal itself); the training finishes its step, writes
#   quicksave.ckpt and exits, and this waits for that. Then:
#   - SIGUSR1 (the warning that `#SBATCH --signal=B:USR1@SECONDS` asks for before the time limit, or
#     `scancel --signal=USR1 --batch JOBID`): the job is put back in the queue (scontrol requeue);
#     the requeued job resumes from the quicksave (model.main --resume).
#   - SIGTERM (`scancel JOBID`, the time limit itself, pre-emption): the job ends there and is not
#     requeued by this script. (A pre-emption with PreemptMode=REQUEUE is requeued by SLURM itself
#     and then resumes the same way.) A SIGTERM also cancels an earlier SIGUSR1's requeue.
#   Returns COMMAND's exit status.

requeue_target() {
    if [[ -n "${SLURM_ARRAY_JOB_ID:-}" ]]; then
        echo "${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"
    else
        echo "$SLURM_JOB_ID"
    fi
}

run_and_requeue() {
    local forward_as=$1
    shift
    "$@" &
    local child=$! status=0
    STOP_SIGNAL=""
    trap "[[ \$STOP_SIGNAL == TERM ]] || STOP_SIGNAL=USR1; kill -s ${forward_as:-USR1} $child 2>/dev/null || true" USR1
    trap "STOP_SIGNAL=TERM; kill -s ${forward_as:-TERM} $child 2>/dev/null || true" TERM
    wait "$child" || status=$?
    # A trapped signal ends `wait` early; the training is still finishing its step and saving.
    while kill -0 "$child" 2>/dev/null; do
        status=0
        wait "$child" || status=$?
    done
    trap - USR1 TERM
    if [[ $STOP_SIGNAL == USR1 && $status -ne 0 ]]; then
        echo "got SIGUSR1; the training stopped with status $status; requeueing $(requeue_target)"
        scontrol requeue "$(requeue_target)" || echo "scontrol requeue failed; resubmit to resume" >&2
    elif [[ $STOP_SIGNAL == TERM ]]; then
        echo "got SIGTERM; the training stopped with status $status; not requeueing (resubmit to resume)"
    fi
    return "$status"
}

# job_banner TEXT: a line that opens every (re)start of the job in both of its logs (they are appended to).
job_banner() {
    local line="== $* (restart ${SLURM_RESTART_COUNT:-0}) on $(hostname) at $(date '+%F %T')"
    echo "$line"
    echo "$line" >&2
}

# copy_to_scratch FILE...: copy the files into $SCRATCH (once; through a temporary name, so an
# interrupted copy is not taken for a finished one).
copy_to_scratch() {
    local file target
    mkdir -p "$SCRATCH"
    for file in "$@"; do
        if [[ ! -f "$file" ]]; then
            echo "error: $file not found" >&2
            return 1
        fi
        target=$SCRATCH/$(basename "$file")
        if [[ ! -f "$target" ]]; then
            cp "$file" "$target.partial"
            mv "$target.partial" "$target"
        fi
    done
}

# copy_data_to_scratch FILE: copy_to_scratch, and make the file readable as $SCRATCH/gameplay-data.hdf5
# too: the configs read "./gameplay-data.hdf5", which `--scratch $SCRATCH` turns into that path.
copy_data_to_scratch() {
    copy_to_scratch "$1"
    if [[ $(basename "$1") != gameplay-data.hdf5 ]]; then
        ln -sfn "$(basename "$1")" "$SCRATCH/gameplay-data.hdf5"
    fi
}
