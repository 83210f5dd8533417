#!/usr/bin/env bash
# Reproduce the shipped SmolLM2-135M-Instruct hypernetwork and its results, stage by stage.
# Every stage resumes where it stopped: rerun the script after an interruption.
#   bash recipes/smollm2/run.sh            # all stages
#   bash recipes/smollm2/run.sh sft eval   # some stages
set -euo pipefail
cd "$(dirname "$0")/../.."
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 OMP_WAIT_POLICY=PASSIVE
T2L=${T2L:-.venv/bin/t2l}
PY=${PY:-.venv/bin/python}
R=recipes/smollm2
OUT=runs/smollm2
stages=("$@"); [ ${#stages[@]} -eq 0 ] && stages=(data mt-lora sft oracle recon eval)

for stage in "${stages[@]}"; do
  case $stage in
    data)    $T2L data build ;;
    mt-lora) $T2L train mt-lora $R/mt_lora.yaml ;;
    sft)     $T2L train sft $R/t2l_sft.yaml ;;
    oracle)  [ -d $OUT/oracle-data ] || $PY $R/oracle_split.py ~/.cache/text2lora/data/collection $OUT/oracle-data
             $T2L train oracle-lora $R/oracle_lora.yaml ;;
    recon)   $T2L train recon $R/recon.yaml ;;
    eval)    # the README's Results: benchmarks (100 examples x 2 seeds, pooled; 3-shot at 40); held-out tasks
             # (12 examples, seed 0, used for the variant choice; then 40 fresh ones, seed 1); reconstruction (10)
             C=(--t2l $OUT/t2l-sft --mt-lora $OUT/mt-lora --num-descriptions 2 --resume)
             MC=(--benchmarks arc_easy,arc_challenge,boolq,openbookqa,piqa,winogrande,hellaswag)
             HELDOUT=(--benchmarks none --collection ~/.cache/text2lora/data/collection)
             for seed in 0 1; do
               conds=base,description,mt_lora,t2l,t2l_random; [ $seed = 0 ] && conds=$conds,t2l_other
               $T2L eval "${C[@]}" "${MC[@]}" --limit 100 --seed $seed --conditions $conds --out $OUT/eval-benchmarks-s$seed
             done
             $T2L eval-combine $OUT/eval-benchmarks-s{0,1} --out $OUT/eval-benchmarks-pooled
             $T2L eval "${C[@]}" "${MC[@]}" --limit 40 --conditions fewshot --out $OUT/eval-benchmarks-fewshot
             $T2L eval "${C[@]}" "${HELDOUT[@]}" --limit 12 --conditions base,description,fewshot,mt_lora,t2l,t2l_other,t2l_random \
               --out $OUT/eval-heldout
             $T2L eval "${C[@]}" "${HELDOUT[@]}" --limit 40 --seed 1 --conditions base,description,mt_lora,t2l,t2l_other,t2l_random \
               --out $OUT/eval-heldout-s1
             $T2L eval --t2l $OUT/t2l-recon --oracle-loras $OUT/oracle-loras --benchmarks none \
               --collection $OUT/oracle-data --collection-split test --conditions base,oracle_lora,t2l --limit 10 \
               --num-descriptions 1 --out $OUT/eval-recon
             $PY $R/recon_error.py $OUT/t2l-recon $OUT/oracle-loras $OUT/recon_error.json ;;
    *) echo "unknown stage $stage (data mt-lora sft oracle recon eval)"; exit 2 ;;
  esac
done
