# Shared by the SLURM batch scripts (sourced, not run).
#
# run_and_requeue FORWARD_AS COMMAND...
#   Runs COMMAND in the background and waits for it. When the batch shell gets SIGUSR1 (the warning
#   that `#SBATCH --signal=B:USR1@SECONDS` asks for before the time limit) or SIGTERM (pre-emption,
#   scancel), it sends FORWARD_AS to COMMAND (an empty FORWARD_AS: the signal it got), waits until the
#   training has written quicksave.ckpt and exited, and then puts the job back in the queue; the
#   requeued job resumes from that checkpoint (model.main --resume). Returns COMMAND's exit status.

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
    trap "STOP_SIGNAL=USR1; kill -s ${forward_as:-USR1} $child 2>/dev/null || true" USR1
    trap "STOP_SIGNAL=TERM; kill -s ${forward_as:-TERM} $child 2>/dev/null || true" TERM
    wait "$child" || status=$?
    # A trapped signal ends `wait` early; the training is still finishing its step and saving.
    while kill -0 "$child" 2>/dev/null; do
        status=0
        wait "$child" || status=$?
    done
    trap - USR1 TERM
    if [[ -n "$STOP_SIGNAL" && $status -ne 0 ]]; then
        echo "got SIG$STOP_SIGNAL; the training stopped with status $status; requeueing $(requeue_target)"
        scontrol requeue "$(requeue_target)" || echo "scontrol requeue failed; resubmit to resume" >&2
    fi
    return "$status"
}

# copy_to_scratch FILE...: copy the files into /scratch/$SLURM_JOB_ID/ of this node (once).
copy_to_scratch() {
    local scratch=/scratch/$SLURM_JOB_ID file
    mkdir -p "$scratch"
    for file in "$@"; do
        if [[ ! -f "$file" ]]; then
            echo "error: $file not found" >&2
            return 1
        fi
        [[ -f "$scratch/$(basename "$file")" ]] || cp "$file" "$scratch/"
    done
}
