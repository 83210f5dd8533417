"""Document processing, local loaders and scorers referenced (`!function utils.x`) by the task YAMLs here.

lm-eval imports this file by path, so everything from text2lora is imported absolutely. Loaders read the
benchmark files exactly as their authors published them (see each benchmark's SOURCE.md); lm-eval calls them
as `custom_dataset(**metadata, **dataset_kwargs)`, so they take `data_files` and ignore other keywords.
"""

from __future__ import annotations

import bz2
import gzip
import json
import os
import re
from pathlib import Path

import datasets

from text2lora.evaluation.code_execution import SandboxConfig, check_solution
from text2lora.evaluation.metrics import (
    exact_match,
    extract_code,
    extract_final_number,
    lenient_bool,
    lenient_choice,
    numbers_equal,
    paper_bool,
    paper_choice_correct,
)

CODE_TIMEOUT_ENV = "TEXT2LORA_CODE_TIMEOUT"


# ------------------------------------------------------------------------------------------- multiple choice


def _science_doc(doc: dict) -> dict:
    labels = [choice["label"] for choice in doc["question"]["choices"]]
    if doc["answerKey"] not in labels:
        raise ValueError(f"Record {doc.get('id')}: answerKey {doc['answerKey']!r} is not one of its labels {labels}.")
    return {
        "choices": [choice["text"] for choice in doc["question"]["choices"]],
        "gold": labels.index(doc["answerKey"]),
    }


def process_arc(dataset: datasets.Dataset) -> datasets.Dataset:
    """ARC records (`question.stem`, `question.choices`, `answerKey`) -> query / choices / gold."""

    def convert(doc):
        return {"query": f"Question: {doc['question']['stem']}\nAnswer:", **_science_doc(doc)}

    return dataset.map(convert)


def process_openbookqa(dataset: datasets.Dataset) -> datasets.Dataset:
    """OpenBookQA stems are often sentence beginnings, so the options continue the stem directly."""

    def convert(doc):
        return {"query": doc["question"]["stem"], **_science_doc(doc)}

    return dataset.map(convert)


def process_boolq(dataset: datasets.Dataset) -> datasets.Dataset:
    def convert(doc):
        return {
            "query": f"{doc['passage']}\nQuestion: {doc['question']}?\nAnswer:",
            "choices": ["no", "yes"],
            "gold": int(bool(doc["answer"])),
        }

    return dataset.map(convert)


def load_piqa(data_files: dict, **_) -> datasets.DatasetDict:
    """PIQA keeps its labels in a separate `valid-labels.lst`, aligned line by line with `valid.jsonl`."""
    records = _read_jsonl(data_files["validation"])
    labels = [int(line) for line in Path(data_files["labels"]).read_text().split()]
    if len(labels) != len(records):
        raise ValueError(f"PIQA: {len(records)} records but {len(labels)} labels; the files do not belong together.")
    rows = [
        {"goal": r["goal"], "query": f"Question: {r['goal']}\nAnswer:", "choices": [r["sol1"], r["sol2"]], "gold": label,
         "sol1": r["sol1"], "sol2": r["sol2"], "labels": ["0", "1"], "options": [r["sol1"], r["sol2"]],
         "gold_label": str(label)}
        for r, label in zip(records, labels)
    ]
    return datasets.DatasetDict({"validation": datasets.Dataset.from_list(rows)})


def load_hellaswag(data_files: dict, **_) -> datasets.DatasetDict:
    """HellaSwag in its 6-lines-per-item text form (context, label, four endings); see its SOURCE.md."""
    path = data_files["validation"]
    opener = bz2.open if str(path).endswith(".bz2") else open
    with opener(path, "rt", encoding="utf-8") as handle:
        lines = handle.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if len(lines) % 6:
        raise ValueError(f"HellaSwag file {path} has {len(lines)} lines, not a multiple of 6 (context, label, 4 endings).")
    rows = []
    for start in range(0, len(lines), 6):
        context, label, *endings = lines[start : start + 6]
        endings = [e.strip() for e in endings]
        rows.append({
            "query": context.strip(), "choices": endings, "gold": int(label),
            # the generative prompt shows the context without its "<activity label>: " (the raw `ctx`)
            "ctx": context.strip().split(": ", 1)[-1], "labels": ["0", "1", "2", "3"], "options": endings,
            "gold_label": str(int(label)),
        })
    return datasets.DatasetDict({"validation": datasets.Dataset.from_list(rows)})


def winogrande_doc_to_text(doc: dict) -> int:
    """Winogrande is scored by partial evaluation: each option fills the blank, and the model scores the
    rest of the sentence. lm-eval's multiple-input mode expects the gold option's index here."""
    return {"1": 0, "2": 1}[str(doc["answer"])]


def winogrande_doc_to_target(doc: dict) -> str:
    blank = doc["sentence"].index("_") + 1
    return " " + doc["sentence"][blank:].strip()


def winogrande_doc_to_choice(doc: dict) -> list[str]:
    blank = doc["sentence"].index("_")
    return [doc["sentence"][:blank] + option for option in (doc["option1"], doc["option2"])]


# ------------------------------------------------------------------------ multiple choice, generative protocol
#
# The `*_generative.yaml` tasks ask for an option label and generate the reply; every doc carries `labels` (as
# the prompt shows them), `options` (their texts) and `gold_label`, and is scored by `option_process_results`.


def process_arc_generative(dataset: datasets.Dataset) -> datasets.Dataset:
    """ARC / OpenBookQA records -> `stem`, `option_lines` ("A: text" per line), `labels`, `options`, `gold_label`.

    As in the paper, questions with fewer than four options are padded to four with "N/A" (letters continue
    A-D, numeric labels continue 1-4). Unlike the paper's template, which shows the first four, a fifth option
    is shown too (the handful of 5-option ARC questions would otherwise hide their answer when it is E)."""

    def convert(doc):
        labels = [str(choice["label"]) for choice in doc["question"]["choices"]]
        options = [choice["text"] for choice in doc["question"]["choices"]]
        if str(doc["answerKey"]) not in labels:
            raise ValueError(f"Record {doc.get('id')}: answerKey {doc['answerKey']!r} is not one of its labels {labels}.")
        while len(labels) < 4:
            labels.append(str(len(labels) + 1) if labels[0].isdigit() else "ABCD"[len(labels)])
            options.append("N/A")
        return {
            "stem": doc["question"]["stem"],
            "labels": labels,
            "options": options,
            "option_lines": "\n".join(f"{label}: {text}" for label, text in zip(labels, options)),
            "gold_label": str(doc["answerKey"]),
        }

    return dataset.map(convert)


def process_boolq_generative(dataset: datasets.Dataset) -> datasets.Dataset:
    return dataset.map(lambda doc: {"gold_label": "true" if doc["answer"] else "false"})


def process_winogrande_generative(dataset: datasets.Dataset) -> datasets.Dataset:
    def convert(doc):
        return {"labels": ["1", "2"], "options": [doc["option1"], doc["option2"]], "gold_label": str(doc["answer"])}

    return dataset.map(convert)


def option_process_results(doc: dict, results: list[str]) -> dict[str, float]:
    """`acc`: the paper's rule (the reply starts with the gold label, after stripping quotes, colons, brackets
    and full stops); `acc_lenient`: the label read leniently (`metrics.lenient_choice`) is the gold one."""
    reply = results[0]
    return {
        "acc": paper_choice_correct(reply, doc["gold_label"]),
        "acc_lenient": float(lenient_choice(reply, doc["labels"], doc["options"]) == doc["gold_label"]),
    }


def boolq_process_results(doc: dict, results: list[str]) -> dict[str, float]:
    """`acc`: the paper's flexible boolean reading (1/0, yes/no, true/false, ... as substrings, in that order);
    `acc_lenient`: the first whole word yes/no/true/false/1/0."""
    reply, gold = results[0], bool(doc["answer"])
    return {"acc": float(paper_bool(reply) is gold), "acc_lenient": float(lenient_bool(reply) is gold)}


# ------------------------------------------------------------------------------------------------- GSM8K

_CALCULATOR = re.compile(r"<<[^>]*>>")


def process_gsm8k(dataset: datasets.Dataset) -> datasets.Dataset:
    """Adds `query`, `target` (the worked solution without calculator annotations, ending `#### N`) and
    `answer_number` (the reference number)."""

    def convert(doc):
        solution = _CALCULATOR.sub("", doc["answer"]).strip()
        return {
            "query": f"Question: {doc['question']}\nAnswer:",
            "target": solution,
            "answer_number": solution.split("####")[-1].strip().replace(",", ""),
        }

    return dataset.map(convert)


def gsm8k_process_results(doc: dict, results: list[str]) -> dict[str, float]:
    """Exact match of the final number of the reply with the reference number (numerically)."""
    return {"exact_match": float(numbers_equal(extract_final_number(results[0]), doc["answer_number"]))}


def exact_match_process_results(doc: dict, results: list[str]) -> dict[str, float]:
    return {"exact_match": exact_match(results[0], doc["target"])}


# -------------------------------------------------------------------------------------------------- code


def load_mbpp(data_files: dict, **_) -> datasets.DatasetDict:
    """MBPP+ problems (the set Text-to-LoRA evaluates) with their base tests; few-shot examples come from
    the original MBPP (sanitized) training problems, which MBPP+ does not contain."""
    test_rows = []
    for record in _read_jsonl(data_files["test"]):
        text, example = _mbpp_plus_prompt(record["prompt"])
        test_rows.append(
            {
                "task_id": record["task_id"],
                "text": text,
                "example_test": example,
                # some MBPP+ assertions call math.isclose; EvalPlus's harness has `math` imported
                "tests": "import math\n" + record["assertion"].strip(),
                "reference": record["canonical_solution"].strip("\n"),
            }
        )
    train_rows = []
    if "train" in data_files:
        with open(data_files["train"], encoding="utf-8") as handle:
            sanitized = json.load(handle)
        for record in sanitized:
            if 601 <= int(record["task_id"]) <= 974:  # MBPP's official training range
                tests = [t.strip() for t in record["test_list"]]
                train_rows.append(
                    {
                        "task_id": f"mbpp-train/{record['task_id']}",
                        "text": record["prompt"].strip(),
                        "example_test": tests[0],
                        "tests": "\n".join([*record.get("test_imports", []), *tests]),
                        "reference": record["code"].replace("\r\n", "\n").strip("\n"),
                    }
                )
    splits = {"test": datasets.Dataset.from_list(test_rows)}
    if train_rows:
        splits["train"] = datasets.Dataset.from_list(train_rows)
    return datasets.DatasetDict(splits)


def _mbpp_plus_prompt(prompt: str) -> tuple[str, str]:
    """MBPP+ prompts are a docstring holding the task and one example assert: split them apart."""
    body = prompt.strip().strip('"').strip()
    lines = [line.strip() for line in body.splitlines() if line.strip()]
    asserts = [line for line in lines if line.startswith("assert")]
    text = " ".join(line for line in lines if not line.startswith("assert"))
    return text, (asserts[0] if asserts else "")


def load_humaneval(data_files: dict, **_) -> datasets.DatasetDict:
    rows = [
        {
            "task_id": r["task_id"],
            "prompt": r["prompt"],
            "tests": f"{r['test'].strip()}\n\ncheck({r['entry_point']})",
            "reference": r["canonical_solution"],
        }
        for r in _read_jsonl(data_files["test"])
    ]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})


def _sandbox() -> SandboxConfig:
    return SandboxConfig(timeout_s=float(os.environ.get(CODE_TIMEOUT_ENV, "10")))


def mbpp_process_results(doc: dict, results: list[str]) -> dict[str, float]:
    """pass@1 with greedy decoding: the generated function must pass every base test of the problem."""
    code = extract_code(results[0], prefix="```python\n")
    return _code_metrics(check_solution(code, doc["tests"], _sandbox()))


def humaneval_process_results(doc: dict, results: list[str]) -> dict[str, float]:
    """The problem's prompt (imports, helpers, signature) then the reply: a full function in the reply
    redefines the prompt's stub, a bare body completes it."""
    code = doc["prompt"] + "\n" + extract_code(results[0], prefix="```python\n")
    return _code_metrics(check_solution(code, doc["tests"], _sandbox()))


def _code_metrics(result) -> dict[str, float]:
    return {
        "pass_at_1": float(result.passed),
        "timeout": float(result.status == "timeout"),
        "sandbox_denied": float(result.status == "denied"),
    }


# -------------------------------------------------------------------------------------------------- files


def _read_jsonl(path: str | os.PathLike) -> list[dict]:
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]
