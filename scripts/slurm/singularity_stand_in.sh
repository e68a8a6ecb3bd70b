#!/bin/bash
# A stand-in for `singularity exec` on a machine without Singularity; local_cluster.sh puts it on
# PATH (as `singularity`) for the SLURM test only:
#
#   singularity exec [--nv] [--bind|-B SRC[:DST][,...]]... IMAGE COMMAND...
#
# It checks that IMAGE is a file and runs COMMAND on the host, in a private mount namespace where
# every bind is a bind mount of SRC at DST (at SRC itself without DST), as in the container. The
# folders in SINGULARITY_STAND_IN_HIDE (colon-separated) are covered by an empty tmpfs first, so a
# path below them is there only if it was bound, as on a cluster whose singularity does not bind
# /scratch; SINGULARITY_STAND_IN_STAGE names an empty folder to stage the binds in. COMMAND keeps
# this process's PID (unshare and bash exec it), so signals sent to `singularity` reach it.
# Needs root (unshare, mount).
set -euo pipefail

[[ ${1:-} == exec ]] || { echo "singularity stand-in: only 'exec' is supported" >&2; exit 255; }
shift
binds=()
while [[ $# -gt 0 ]]; do
    case $1 in
        --nv) shift ;;
        -B | --bind) IFS=, read -ra specs <<<"$2"; binds+=("${specs[@]}"); shift 2 ;;
        --bind=*) IFS=, read -ra specs <<<"${1#--bind=}"; binds+=("${specs[@]}"); shift ;;
        -*) echo "singularity stand-in: unsupported option $1" >&2; exit 255 ;;
        *) break ;;
    esac
done
[[ $# -ge 2 ]] || { echo "usage: singularity exec [--nv] [--bind SRC[:DST]]... IMAGE COMMAND..." >&2; exit 255; }
image=$1
shift
[[ -f $image ]] || { echo "FATAL: could not open image $image: no such file" >&2; exit 255; }
for spec in "${binds[@]}"; do
    source_dir=${spec%%:*}
    [[ -e $source_dir ]] || { echo "FATAL: bind source $source_dir does not exist" >&2; exit 255; }
done
hide=${SINGULARITY_STAND_IN_HIDE:-}
stage=${SINGULARITY_STAND_IN_STAGE:-}
if [[ -n $hide && ! -d $stage ]]; then
    echo "singularity stand-in: SINGULARITY_STAND_IN_HIDE needs SINGULARITY_STAND_IN_STAGE" >&2
    exit 255
fi

# In the new namespace: bind every source into the stage, cover the hidden folders, then move each
# staged bind to its destination (a destination below a hidden folder is made in the tmpfs).
exec unshare --mount --propagation private bash -c '
    set -euo pipefail
    hide=$1 stage=$2
    shift 2
    destinations=()
    [[ -z $stage ]] || mount -t tmpfs stand-in-stage "$stage"
    while [[ $1 != -- ]]; do
        source_dir=${1%%:*} destination=${1#*:}
        destination=${destination%%:*}
        if [[ -n $stage ]]; then
            mkdir "$stage/${#destinations[@]}"
            mount --bind "$source_dir" "$stage/${#destinations[@]}"
        fi
        destinations+=("$destination|$source_dir")
        shift
    done
    shift
    IFS=: read -ra hidden <<<"$hide"
    for dir in "${hidden[@]}"; do
        mount -t tmpfs stand-in-hidden "$dir"
    done
    for i in "${!destinations[@]}"; do
        destination=${destinations[i]%%|*} source_dir=${destinations[i]#*|}
        mkdir -p "$destination"
        if [[ -n $stage ]]; then
            mount --move "$stage/$i" "$destination"
        elif [[ $source_dir != "$destination" ]]; then
            mount --bind "$source_dir" "$destination"
        fi
    done
    exec "$@"' singularity-stand-in "$hide" "$stage" "${binds[@]}" -- "$@"
