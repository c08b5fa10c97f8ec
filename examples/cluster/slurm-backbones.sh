#!/usr/bin/env bash
# One Slurm array task per backbone of params.yaml: each trains its backbone and pushes its run-cache to the
# project's default DVC remote; no task trains what another did. Then one job compares them all (docs/remotes.md, "Several
# machines"). Submit from the project (its .venv built, its commit the one to run, the remote reachable from every
# node, S3 credentials in AWS_* or ~/.aws):
#
#   jobid=$(sbatch --parsable examples/cluster/slurm-backbones.sh)
#   sbatch --dependency=afterok:$jobid --wrap 'dvc pull --run-cache && dvc repro && dvc push --run-cache'
#
# --array must count params.yaml's backbones (tests/test_cluster.py checks it).
#SBATCH --job-name=backbones
#SBATCH --array=0-5
#SBATCH --gpus=1
#SBATCH --cpus-per-task=8
#SBATCH --time=12:00:00
#SBATCH --output=backbones-%A-%a.out
set -euo pipefail

# A clone of its own per task: DVC lets one command at a time work in a workspace.
workdir="${TMPDIR:-/tmp}/honest-backbones-$SLURM_ARRAY_JOB_ID-$SLURM_ARRAY_TASK_ID"
git clone --quiet "$SLURM_SUBMIT_DIR" "$workdir"
if [[ -f "$SLURM_SUBMIT_DIR/.dvc/config.local" ]]; then  # the remote's local settings (endpointurl, keys)
  cp "$SLURM_SUBMIT_DIR/.dvc/config.local" "$workdir/.dvc/"
fi
cd "$workdir"
source "$SLURM_SUBMIT_DIR/.venv/bin/activate"
mapfile -t backbones < <(python -c 'import yaml; print(*yaml.safe_load(open("params.yaml"))["backbones"], sep="\n")')
backbone=${backbones[$SLURM_ARRAY_TASK_ID]}

dvc repro --pull "finetune@$backbone"   # the data stages (from the run-cache if pushed, else run), then the backbone
dvc push --run-cache                    # its outputs and run-cache, for the comparison and every clone
python examples/cluster/push_run_outputs.py  # and the metrics its run-cache restores, which that push leaves out
