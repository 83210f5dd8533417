"""lm-eval's per-sample output read into our example rows: which examples a seed picks, the prediction and the
extracted answer of a sample, the first prompt of a run and a run's mean metrics."""

from __future__ import annotations

import random

import numpy as np

from .metrics import extract_final_number, lenient_bool, lenient_choice, paper_bool, paper_choice

def select_examples(size: int, limit: int | None, seed: int, key: str) -> list[int]:
    """The indices of the examples a run evaluates: all, or `limit` of them chosen by (`seed`, `key`), sorted."""
    if limit is None or limit >= size:
        return list(range(size))
    return sorted(random.Random(f"{seed}:{key}").sample(range(size), limit))


def prediction(cfg: dict, sample: dict, task: str) -> dict:
    """The model's answer for one example, compactly: chosen option and log-likelihoods, or generated text."""
    kind = cfg.get("output_type")
    if kind == "multiple_choice":
        logliks = [float(r[0]) for r in sample["filtered_resps"]]
        return {"prediction": int(np.argmax(logliks)), "target": sample["target"], "logliks": [round(x, 4) for x in logliks]}
    if kind == "generate_until":
        response = sample["filtered_resps"][0]
        response = response[0] if isinstance(response, list) else response
        out = {"response": str(response)[:4000]}
        doc = sample["doc"]
        if "gold_label" in doc and "labels" in doc:  # multiple choice, generative protocol
            out["extracted"] = paper_choice(str(response))
            out["extracted_lenient"] = lenient_choice(str(response), doc["labels"], doc["options"])
            out["target"] = doc["gold_label"]
        elif "gold_label" in doc and "answer" in doc:  # BoolQ, generative protocol
            out["extracted"] = paper_bool(str(response))
            out["extracted_lenient"] = lenient_bool(str(response))
            out["target"] = bool(doc["answer"])
        if "answer_number" in doc:
            out["extracted"] = extract_final_number(str(response))
            out["target"] = sample["doc"]["answer_number"]
        return out
    if kind == "loglikelihood":
        loglik = sample["filtered_resps"][0][0]
        return {"completion_loglik": round(float(loglik), 4)}
    return {}


def first_prompt(samples: dict[str, list[dict]]) -> str | None:
    for task_samples in samples.values():
        if task_samples:
            arguments = task_samples[0]["arguments"][0]
            text = arguments[0] if isinstance(arguments, (list, tuple)) else arguments
            return str(text)[:6000]
    return None


def mean_metrics(examples: list[dict]) -> dict[str, float]:
    totals: dict[str, list[float]] = {}
    for example in examples:
        for metric, value in example["metrics"].items():
            totals.setdefault(metric, []).append(value)
    return {metric: float(np.mean(values)) for metric, values in totals.items()}
