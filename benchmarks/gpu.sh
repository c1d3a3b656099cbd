#!/usr/bin/env bash
# The GPU benchmarks in one call, for a machine with one CUDA GPU (a lease is short: this runs
# in about 6 minutes on an H200). Run from a project after `dvc repro` (it needs data/splits and
# reports/best_params.yaml):
#
#     bash benchmarks/gpu.sh [OUT_DIR]        # logs to OUT_DIR (default benchmarks/out/gpu)
#
# 0. The tests marked `gpu` (skipped on machines without CUDA).
# 1. trainer_overhead.py on cuda: fp32; bf16 + channels-last; the same with torch.compile;
#    bf16 + channels-last at batch 256. Each table has the ratio to the "model only" floor.
# 2. weighting_step_time.py on cuda: equal and three gradient aggregators, exact (per-task
#    gradients of the shared parameters) and feature-level, each in its own process.
# 3. `mtlflow train` on cuda with precision auto, then fp32, each followed by `evaluate`
#    (writes models/ and reports/ of this project).
# Each step has its own time limit and a failed step does not stop the others.
set -u
out=${1:-benchmarks/out/gpu}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
step() {  # step NAME SECONDS COMMAND...: run one benchmark, log it, go on if it fails
    local name=$1 limit=$2
    shift 2
    echo "=== $name: $*"
    local start=$SECONDS
    timeout "$limit" "$@" >"$out/$name.log" 2>&1
    local rc=$?
    grep -v "^W[0-9]\{4\}" "$out/$name.log" | tail -n 12
    echo "=== $name: exit $rc after $((SECONDS - start)) s"
}
python -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,memory.total --format=csv
trainer="python benchmarks/trainer_overhead.py --device cuda --epochs 5 --repeats 3"
mtlflow="python -m pipelines.cli"
step gpu-tests 120 python -m pytest -q -m gpu tests
step trainer-fp32 90 $trainer
step trainer-bf16-cl 90 $trainer --bf16 --channels-last
step trainer-bf16-cl-compile 200 $trainer --bf16 --channels-last --compile
step train-cuda-auto 150 bash -c "$mtlflow train --set train.device=cuda && $mtlflow evaluate"
step weighting 150 python benchmarks/weighting_step_time.py --device cuda --steps 30 \
    --methods equal upgrad pcgrad mgda --levels parameters features
step trainer-bf16-cl-b256 90 $trainer --bf16 --channels-last --batch-size 256
step train-cuda-fp32 150 bash -c "$mtlflow train --set train.device=cuda \
    --set train.precision=fp32 && $mtlflow evaluate"
