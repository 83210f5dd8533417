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
    eval)    bash $R/eval.sh ;;
    *) echo "unknown stage $stage (data mt-lora sft oracle recon eval)"; exit 2 ;;
  esac
done
