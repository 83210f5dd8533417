#!/usr/bin/env bash
# The SmolLM2-135M-Instruct runs on one CUDA GPU: the stages of run.sh, with the independent ones side by side on
# the card (a 135M model leaves most of an H100 idle), each under a wall-clock budget (SFT_BUDGET seconds per
# variant, default 1200; the shipped checkpoint had 400 s, 650 steps, see README "Results").
# SFT uses a constant learning rate after warm-up and saves every 50 steps, so a run stopped by its budget ends
# on a usable checkpoint. Every stage logs to $RUN_DIR/logs and records its wall time in $RUN_DIR/compute.tsv.
#
#   bash recipes/smollm2/run_gpu.sh              # needs the collection (t2l data build) and a CUDA GPU
#   SMOKE=1 bash recipes/smollm2/run_gpu.sh      # a few steps of every stage on the CPU: checks the plumbing
#
# Stages: (1) multi-task LoRA || (16 oracle LoRAs, then the reconstruction T2L that compresses them); (2) T2L-SFT
# L || M || S, warm-started from the multi-task LoRA; (3) pick the variant with the lowest completion NLL on the
# collection's held-out *validation* tasks (matched descriptions); (4) `t2l eval`: every condition on the
# benchmarks and the held-out tasks || the reconstruction T2L against its oracle LoRAs.
set -uo pipefail
cd "$(dirname "$0")/../.."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
PY=${PY:-python3}
R=recipes/smollm2
OUT=${RUN_DIR:-runs/smollm2}
COLL=${COLLECTION:-$HOME/.cache/text2lora/data/collection}
BENCH=${BENCHMARK_DIR:-../shared/data/benchmarks}
DESCS=${DESCRIPTIONS_DIR:-../shared/data/descriptions}
mkdir -p "$OUT/logs"

if [ "${SMOKE:-0}" = 1 ]; then
  DEV=(--set training.use_cpu=true --set training.bf16=false); EVAL_DEV=(--device cpu --batch-size 4)
  MT=(--set training.max_steps=2 --set training.per_device_train_batch_size=2)
  ORACLE=(--set training.max_steps=1 --set training.per_device_train_batch_size=2)
  SFT=(--set training.max_steps=4 --set training.save_steps=2 --set training.tasks_per_batch=2 --set training.examples_per_task=1)
  RECON=(--set training.max_steps=5 --set training.save_steps=5)
  SEL=(--collection-tasks bigbench.tense,reasoning_gym.leg_counting); RECON_SEL=(--collection-tasks bigbench.color) HELDOUT_PARTS=(bigbench.tense,reasoning_gym.leg_counting)
  SEL_LIMIT=3; LIMIT=3; GEN_LIMIT=1; BENCHMARKS=arc_easy,gsm8k; SFT_BUDGET=600; VARIANTS=${VARIANTS:-"S M"}
else
  DEV=(--set training.use_cpu=false --set training.bf16=true); EVAL_DEV=(--device cuda --batch-size 64)
  MT=(--set training.max_steps=${MT_STEPS:-500} --set training.per_device_train_batch_size=32 --set training.save_steps=200)
  ORACLE=(--set training.num_train_epochs=2 --set training.per_device_train_batch_size=4)
  SFT=(--set training.max_steps=${SFT_STEPS:-3000} --set training.save_steps=50 --set training.save_total_limit=2
       --set training.tasks_per_batch=16 --set training.examples_per_task=4 --set training.lr_scheduler_type=constant_with_warmup
       --set training.warmup_steps=50 --set training.learning_rate=${SFT_LR:-0.0002})
  RECON=()
  SEL=(); RECON_SEL=(); HELDOUT_PARTS=(bigbench.navigate,bigbench.sports_understanding,bigbench.tense
    bigbench.word_unscrambling,reasoning_gym.caesar_cipher,reasoning_gym.leg_counting,reasoning_gym.number_sorting
    natural_instructions.subtask027_drop_answer_type_generation,natural_instructions.subtask039_qasc_find_overlapping_words,natural_instructions.subtask051_multirc_correct_answer_single_sentence)
  SEL_LIMIT=100; LIMIT=${EVAL_LIMIT:-200}; GEN_LIMIT=${GEN_LIMIT:-25}; BENCHMARKS=all; SFT_BUDGET=${SFT_BUDGET:-1200}
  VARIANTS=${VARIANTS:-"L M S"}
fi

stage() {  # stage NAME BUDGET_S CMD...: run with a wall-clock budget, log, record the time taken
  local name=$1 budget=$2; shift 2
  local t0=$(date +%s)
  timeout --signal=INT --kill-after=30 "$budget" "$@" >"$OUT/logs/$name.log" 2>&1
  local rc=$?
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$(( $(date +%s) - t0 ))" "$(date -u +%FT%TZ)" >>"$OUT/compute.tsv"
  echo "[$(date -u +%T)] $name: rc=$rc, $(( $(date +%s) - t0 )) s"
}

latest_model() {  # the folder holding the newest saved hypernetwork of a run: the final save, else the last checkpoint
  local dir=$1
  if [ -f "$dir/model.safetensors" ]; then echo "$dir"; return; fi
  local ckpt
  for ckpt in $(ls -d "$dir"/checkpoint-* 2>/dev/null | sort -V -r); do  # complete ones: trainer_state.json comes last
    [ -f "$ckpt/trainer_state.json" ] && [ -f "$ckpt/model.safetensors" ] && { echo "$ckpt"; return; }
  done
}

[ -d "$OUT/oracle-data" ] || $PY $R/oracle_split.py "$COLL" "$OUT/oracle-data" >"$OUT/logs/oracle-split.log" 2>&1

FROM=${FROM:-1}  # FROM=3 reuses the trained models in RUN_DIR and redoes the evaluation
if [ "$FROM" -le 2 ]; then
# (1) the multi-task LoRA (also the warm start), and beside it the oracle library followed by the
# reconstruction T2L that compresses it (no LLM in the loop)
stage mt-lora 360 $PY -m text2lora train mt-lora $R/mt_lora.yaml "${DEV[@]}" "${MT[@]}" \
  --set train_dataset="$COLL/dataset" --set training.output_dir="$OUT/mt-lora" &
mt_pid=$!
( stage oracle 900 $PY -m text2lora train oracle-lora $R/oracle_lora.yaml "${DEV[@]}" "${ORACLE[@]}" \
    --set train_dataset="$OUT/oracle-data" --set library_dir="$OUT/oracle-loras" --set training.output_dir="$OUT/oracle-scratch"
  stage recon 600 $PY -m text2lora train recon $R/recon.yaml "${RECON[@]}" \
    --set library="$OUT/oracle-loras" --set training.output_dir="$OUT/t2l-recon" ) &
wait $mt_pid
fi
MT_DIR=$OUT/mt-lora  # a run stopped by its budget leaves its last checkpoint instead of the final adapter
[ -f "$MT_DIR/adapter_model.safetensors" ] || MT_DIR=$(ls -d "$OUT"/mt-lora/checkpoint-* 2>/dev/null | sort -V | tail -1)

if [ "$FROM" -le 2 ]; then
# (2) T2L-SFT, one run per variant, side by side
for v in $VARIANTS; do
  OMP_NUM_THREADS=4 stage sft-$v "$SFT_BUDGET" $PY -m text2lora train sft $R/t2l_sft.yaml "${DEV[@]}" "${SFT[@]}" \
    --set hypernetwork.variant=$v --set train_dataset="$COLL/dataset" --set training.output_dir="$OUT/t2l-sft-$v" \
    --set training.warm_start_lora="$MT_DIR" &
done
wait
fi

# (3) variant choice on the held-out validation tasks (not the benchmarks)
for v in $VARIANTS; do
  model=$(latest_model "$OUT/t2l-sft-$v")
  [ -n "$model" ] || { echo "no checkpoint for variant $v"; continue; }
  stage select-$v 400 $PY -m text2lora eval --t2l "$model" --benchmarks none --collection "$COLL" \
    --conditions t2l,t2l_other,t2l_random "${SEL[@]}" --limit "$SEL_LIMIT" --num-descriptions 2 "${EVAL_DEV[@]}" --quiet \
    --out "$OUT/select-$v" &
done
wait
CHOSEN=$($PY $R/choose_variant.py "$OUT" $VARIANTS) || exit 1
echo "chosen variant: $CHOSEN"
T2L_DIR=$OUT/t2l-chosen
rm -rf "$T2L_DIR"; mkdir -p "$T2L_DIR"; cp "$(latest_model "$OUT/t2l-sft-$CHOSEN")"/{config.json,model.safetensors} "$T2L_DIR"/
RECON_DIR=$(latest_model "$OUT/t2l-recon")

# (4) the full comparison, split by benchmark over parallel processes that share one results folder, then
# assembled by a last pass that finds every run already done (--resume)
EVAL=(--t2l "$T2L_DIR" --mt-lora "$MT_DIR" --oracle-loras "$OUT/oracle-loras" --data-dir "$BENCH"
      --descriptions-dir "$DESCS" --limit "$LIMIT" --generation-limit "$GEN_LIMIT" --num-descriptions 3
      "${EVAL_DEV[@]}" --quiet --resume --out "$OUT/eval")
if [ "$BENCHMARKS" = all ]; then
  groups=("arc_easy,arc_challenge" "boolq,openbookqa" "hellaswag" "piqa,winogrande" "gsm8k" "mbpp,humaneval")
else
  groups=("$BENCHMARKS")
fi
i=0
for g in "${groups[@]}"; do
  stage eval-$i 600 $PY -m text2lora eval "${EVAL[@]}" --benchmarks "$g" &
  i=$((i + 1))
done
for part in "${HELDOUT_PARTS[@]}"; do
  stage eval-heldout-$i 600 $PY -m text2lora eval "${EVAL[@]}" --benchmarks none --collection "$COLL" --collection-tasks "$part" &
  i=$((i + 1))
done
if [ -n "$RECON_DIR" ]; then
  stage eval-recon 600 $PY -m text2lora eval --t2l "$RECON_DIR" --oracle-loras "$OUT/oracle-loras" --benchmarks none \
    --collection "$OUT/oracle-data" --collection-split test --conditions base,oracle_lora,t2l,t2l_random "${RECON_SEL[@]}" \
    --limit "$LIMIT" --num-descriptions 2 "${EVAL_DEV[@]}" --quiet --out "$OUT/eval-recon" &
  stage recon-error 300 $PY $R/recon_error.py "$RECON_DIR" "$OUT/oracle-loras" "$OUT/recon_error.json" &
fi
wait
joined=$(IFS=,; echo "${groups[*]}")
heldout=$(IFS=,; echo "${HELDOUT_PARTS[*]}")
stage eval-all 900 $PY -m text2lora eval "${EVAL[@]}" --benchmarks "$joined" --collection "$COLL" --collection-tasks "$heldout"
echo "done: $OUT"
