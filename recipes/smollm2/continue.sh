#!/usr/bin/env bash
# Issue 17's background job: continue T2L-SFT of the shipped default on the CPU (one thread, lowest priority),
# resuming from the last checkpoint; every checkpoint (at least every 30 min) is kept and evaluated on the validation
# tasks by `recipes/smollm2/learning_curve.py --watch` beside it. Start both at the beginning of each session:
#   nohup bash recipes/smollm2/continue.sh > runs/smollm2/continue.log 2>&1 &
set -euo pipefail
cd "$(dirname "$0")/../.."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE
[ -d ~/.cache/text2lora/data/collection/dataset ] || .venv/bin/t2l data build
# The validation curve, one thread, lowest priority: evaluates each checkpoint as it appears.
pgrep -f "learning_curve.py --watch" > /dev/null ||
  nice -n 19 .venv/bin/python recipes/smollm2/learning_curve.py --watch >> runs/smollm2/curve.log 2>&1 &
# bfloat16 autocast where the CPU has AMX or AVX512-BF16: a step took ~3 s instead of ~7 s here (6 steps alternated
# twice, one thread), with losses within 0.01 of float32's; the weights and optimiser stay float32. Without those
# instructions bfloat16 is slower than float32, so it is not used. The compute log records which one each run used.
PRECISION=()
[[ $(.venv/bin/python recipes/smollm2/fast_dtype.py) == bfloat16 ]] && PRECISION=(--set training.bf16=true)
# Each run trains at most 30 minutes (max_minutes_per_run), checkpoints and exits; the next resumes from it.
while true; do
  nice -n 19 .venv/bin/python recipes/smollm2/compute_log.py runs/smollm2/t2l-sft-continue \
    .venv/bin/t2l train sft recipes/smollm2/t2l_sft_continue.yaml "${PRECISION[@]}"
done
