#!/usr/bin/env bash
# Issue 13, item 4: the shipped default (text2lora/t2l-smollm2-135m-instruct) and its baselines on the seven
# multiple-choice benchmarks under both protocols (log-likelihood and the paper's generative one), 100 examples
# x 2 seeds, every condition (base, + description, 3-shot, multi-task LoRA, T2L held-out / other task's /
# random-string descriptions); then both protocols side by side with paired differences and 95% CIs; then the
# collection's 10 held-out tasks under every condition (completion NLL and exact match of free generation).
#
#   nohup bash recipes/smollm2/eval_protocols.sh > /dev/null 2>&1 &
#   tail -f runs/smollm2/eval-protocols/progress.log
#
# Resumable: every finished run (condition x benchmark x description) is saved in <out>/runs/ and `--resume`
# reuses it, so rerunning this script continues where it stopped. Each benchmark is one `t2l eval` call under
# `flock /tmp/t2l-heavy.lock` at nice 5, so heavy jobs on the shared machine take turns (one lock per ~15-60
# minutes of work, not one for the whole night). Outputs: runs/smollm2/eval-protocols/<protocol>-seed<seed>-<dtype>/
# (results.json, examples.jsonl, results.md, results.png), pooled tables in docs/results/eval-protocols/.
# Settings can be overridden from the environment (LIMIT, SEEDS, PROTOCOLS, BENCHMARKS, OUT, TABLES, THREADS, DTYPE,
# COLLECTION, COLLECTION_LIMIT, COLLECTION_TASKS (space-separated), LOCK).
#
# DTYPE (the base model's; default auto): bfloat16 on a CPU with AMX or AVX512-BF16, where it is ~2.6x faster than
# float32 for this model (measured: one ARC-Easy run of 100 questions, 17.6 s vs 46.6 s on one thread; 43 vs 44
# acc_norm), float32 elsewhere (bfloat16 without those instructions is ~4x slower). Runs of each dtype go to their
# own folders (<protocol>-seed<seed>-<dtype>) and tables pool one dtype only, so the two are never mixed.
#
# The code: the first start copies src/ of the checked-out commit (HEAD) to <out>/code/ and every call runs that
# copy (PYTHONPATH), so a night-long measurement stays on one version of the code while the working tree changes
# under it; the commit is in progress.log. Delete <out>/code/ to measure with newer code (finished runs are
# still reused when their settings match).
set -euo pipefail
cd "$(dirname "$0")/../.."

OUT=${OUT:-runs/smollm2/eval-protocols}
TABLES=${TABLES:-docs/results/eval-protocols}
LIMIT=${LIMIT:-100}
SEEDS=${SEEDS:-"0 1"}
PROTOCOLS=${PROTOCOLS:-"loglik generative"}
BENCHMARKS=${BENCHMARKS:-"arc_easy arc_challenge openbookqa piqa hellaswag winogrande boolq"}
THREADS=${THREADS:-1}
DTYPE=${DTYPE:-auto}
[[ $DTYPE == auto ]] && DTYPE=$(env -u PYTHONPATH .venv/bin/python recipes/smollm2/fast_dtype.py)
LOCK=${LOCK:-/tmp/t2l-heavy.lock}
T2L=text2lora/t2l-smollm2-135m-instruct
MT_LORA=text2lora/mt-lora-smollm2-135m-instruct
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# the benchmark data (the copied code cannot find ../shared from where it lies)
export TEXT2LORA_BENCHMARK_DIR=${TEXT2LORA_BENCHMARK_DIR:-$(cd .. && pwd)/shared/data/benchmarks}

mkdir -p "$OUT/logs"
PROGRESS="$OUT/progress.log"
log() { echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) $*" >> "$PROGRESS"; }

if [[ ! -d "$OUT/code/src/text2lora" ]]; then
    rm -rf "$OUT/code.tmp" && mkdir -p "$OUT/code.tmp"
    git archive HEAD src | tar -x -C "$OUT/code.tmp"
    git rev-parse HEAD > "$OUT/code.tmp/COMMIT"
    mv "$OUT/code.tmp" "$OUT/code"
fi
export PYTHONPATH="$PWD/$OUT/code/src"
[[ $OUT = /* ]] && export PYTHONPATH="$OUT/code/src"
T2L_CLI=(.venv/bin/python -m text2lora)

# Runs per benchmark: base 1, description 3, 3-shot 1, multi-task LoRA 1, T2L 3 + other 3 + random 3.
RUNS_PER_BENCHMARK=15
n_benchmarks=$(wc -w <<< "$BENCHMARKS")
total=$(( RUNS_PER_BENCHMARK * n_benchmarks ))

t2l_eval() {  # logfile seed out [more t2l eval arguments]: every condition, resumed, under the lock
    local logfile=$1 seed=$2 out=$3
    shift 3
    nice -n 5 flock "$LOCK" "${T2L_CLI[@]}" eval --t2l "$T2L" --mt-lora "$MT_LORA" --conditions all --seed "$seed" \
        --threads "$THREADS" --dtype "$DTYPE" --out "$out" --resume --quiet "$@" >> "$logfile" 2>&1
}

eval_once() {  # protocol seed benchmarks(comma-separated) logfile
    t2l_eval "$4" "$2" "$OUT/$1-seed$2-$DTYPE" --benchmarks "$3" --protocol "$1" --limit "$LIMIT"
}

tables() {  # pool whatever (protocol, seed) pairs are complete and write the side-by-side tables
    # local: the caller's loop variables are also called seed and protocol
    local seed protocol dirs loglik=() generative=()
    for seed in $SEEDS; do
        if [[ -f "$OUT/loglik-seed$seed-$DTYPE/COMPLETE" && -f "$OUT/generative-seed$seed-$DTYPE/COMPLETE" ]]; then
            loglik+=("$OUT/loglik-seed$seed-$DTYPE"); generative+=("$OUT/generative-seed$seed-$DTYPE")
        fi
    done
    (( ${#loglik[@]} )) || return 0
    mkdir -p "$TABLES"
    nice -n 5 "${T2L_CLI[@]}" eval-protocols --loglik "${loglik[@]}" --generative "${generative[@]}" --out "$TABLES" \
        >> "$OUT/logs/tables.log" 2>&1
    for protocol in loglik generative; do
        dirs=("${loglik[@]}"); [[ $protocol == generative ]] && dirs=("${generative[@]}")
        nice -n 5 "${T2L_CLI[@]}" eval-combine "${dirs[@]}" --out "$OUT/pooled-$protocol-$DTYPE" >> "$OUT/logs/tables.log" 2>&1
    done
    log "tables: $TABLES/protocols.md from ${#loglik[@]} seed(s) per protocol, $DTYPE"
}

trap 'log "stopped with an error (exit $?); see $OUT/logs/; rerun the script to continue"' ERR

log "start: code $(cat "$OUT/code/COMMIT") ($PYTHONPATH); seeds [$SEEDS], protocols [$PROTOCOLS], $n_benchmarks benchmarks x $LIMIT examples, $total runs per (protocol, seed), $DTYPE"
for seed in $SEEDS; do
    for protocol in $PROTOCOLS; do
        dir="$OUT/$protocol-seed$seed-$DTYPE"
        if [[ -f "$dir/COMPLETE" ]]; then
            log "$protocol seed $seed: already complete"
            continue
        fi
        for benchmark in $BENCHMARKS; do
            started=$(date +%s)
            eval_once "$protocol" "$seed" "$benchmark" "$OUT/logs/$protocol-seed$seed-$DTYPE-$benchmark.log"
            done_runs=$( (find "$dir/runs" -name '*.json' 2>/dev/null || true) | wc -l)
            log "$protocol seed $seed: $benchmark done in $(( $(date +%s) - started )) s; $done_runs/$total runs saved"
        done
        # every run is saved now: one call over all benchmarks assembles results.json / results.md / results.png
        eval_once "$protocol" "$seed" "$(tr ' ' ',' <<< "$BENCHMARKS")" "$OUT/logs/$protocol-seed$seed-$DTYPE-all.log"
        touch "$dir/COMPLETE"
        log "$protocol seed $seed: complete ($dir/results.md)"
        tables || log "tables: failed, see $OUT/logs/tables.log"
    done
done

# The collection's 10 held-out validation tasks (never trained on), every condition, completion NLL and exact match
# of free generation (--collection-generate; no protocol applies: their prompts are the tasks' own), one collection
# task per `t2l eval` call under the lock, then one call that assembles the seed's results; both seeds pooled.
COLLECTION=${COLLECTION:-$HOME/.cache/text2lora/data/collection}
COLLECTION_LIMIT=${COLLECTION_LIMIT:-30}
collection_once() {  # seed tasks(comma-separated) logfile
    t2l_eval "$3" "$1" "$OUT/collection-seed$1-$DTYPE" --benchmarks none --collection "$COLLECTION" \
        --collection-tasks "$2" --collection-generate --limit "$COLLECTION_LIMIT"
}
if [[ -d "$COLLECTION/dataset" ]]; then
    tasks=${COLLECTION_TASKS:-}
    [[ -n $tasks ]] || tasks=$(.venv/bin/python -c "import datasets, sys; split = datasets.load_from_disk(sys.argv[1])['validation']
print(' '.join(sorted(set(split['task']))))" "$COLLECTION/dataset")
    collection_dirs=()
    for seed in $SEEDS; do
        dir="$OUT/collection-seed$seed-$DTYPE"
        if [[ ! -f "$dir/COMPLETE" ]]; then
            for task in $tasks; do
                started=$(date +%s)
                collection_once "$seed" "$task" "$OUT/logs/collection-seed$seed-$DTYPE-$task.log"
                log "collection seed $seed: $task done in $(( $(date +%s) - started )) s"
            done
            collection_once "$seed" "$(tr ' ' ',' <<< "$tasks")" "$OUT/logs/collection-seed$seed-$DTYPE-all.log"
            touch "$dir/COMPLETE"
            log "collection seed $seed: complete ($dir/results.md)"
        fi
        collection_dirs+=("$dir")
    done
    mkdir -p "$TABLES"
    nice -n 5 "${T2L_CLI[@]}" eval-combine "${collection_dirs[@]}" --out "$TABLES/collection" >> "$OUT/logs/tables.log" 2>&1 \
        && log "tables: $TABLES/collection from $(wc -w <<< "$SEEDS") seed(s), $DTYPE"
else
    log "collection: $COLLECTION/dataset is missing (run t2l data build); held-out tasks skipped"
fi
log "finished"
