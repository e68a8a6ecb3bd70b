#!/bin/bash
# Runs inside the container (repository at /mnt):  bash /mnt/train.sh SCRATCH_DIR [more model.main flags]
# The config's "./gameplay-data.hdf5" is read from SCRATCH_DIR; --resume continues from the run
# folder's quicksave.ckpt after a requeue or a resubmission (and starts afresh the first time).
set -euo pipefail
if [[ $# -lt 1 ]]; then
    echo "usage: bash /mnt/train.sh SCRATCH_DIR [model.main flags]: runs inside the course container, started by train.sbatch (sbatch train.sbatch)" >&2
    exit 2
fi
cd /mnt
exec python -m model.main -cfg "${CONFIG:-/mnt/config/vit.json}" --train --scratch "$1" --resume "${@:2}"
