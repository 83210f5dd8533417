"""Model cards (README.md with Hub metadata) for hypernetworks and for the adapters they generate.

Both cards are Jinja templates in `text2lora/templates/` rendered into a `huggingface_hub.ModelCard`: the YAML
front matter is the Hub's own `ModelCardData`, and the body can be edited without touching code.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

TEMPLATES_DIR = Path(__file__).parent / "templates"
HYPERNETWORK_CARD_TEMPLATE = TEMPLATES_DIR / "hypernetwork_card.md"
ADAPTER_CARD_TEMPLATE = TEMPLATES_DIR / "adapter_card.md"
EVAL_RESULTS_FILE = "eval_results.json"
EXAMPLE_DESCRIPTION = "Solve grade-school math word problems and end with the final number."
HYPERNETWORK_TAGS = ["text2lora", "text-to-lora", "hypernetwork", "lora", "peft"]
ADAPTER_TAGS = ["text2lora", "text-to-lora", "lora", "peft"]
# vLLM accepts these values for --max-lora-rank; an adapter needs the smallest one >= its rank.
VLLM_MAX_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def is_hub_id(name: str | None) -> bool:
    """True for "owner/name" strings that are not an existing local path (what Hub metadata may reference)."""
    return bool(name) and _HUB_ID.match(str(name)) is not None and not Path(str(name)).exists()


def hypernetwork_is_untrained(model: Any) -> bool:
    """True when every output head's weight is zero: the heads then emit their bias whatever the description,
    so (with bias-HyperInit) every adapter is the standard LoRA initialisation."""
    return all(not bool(head.weight.detach().any()) for head in model.heads.values())


# ---------------------------------------------------------------------------------------------- eval results


def read_eval_results(folder: str | os.PathLike) -> Any | None:
    """The evaluation results saved beside a checkpoint (`eval_results.json`), or `None`."""
    path = Path(folder) / EVAL_RESULTS_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); fix or delete it and save again.") from err


def compact_eval_results(results: Any) -> Any:
    """What a checkpoint keeps of `t2l eval` results (conditions, per-task metrics, summary), without the
    per-run records and example indices; other shapes are kept as they are."""
    if not (isinstance(results, Mapping) and str(results.get("format", "")).startswith("text2lora-eval/")):
        return results
    tasks = {
        name: {k: v for k, v in info.items() if k != "example_indices"} for name, info in results.get("tasks", {}).items()
    }
    kept = {k: results[k] for k in ("format", "conditions", "summary", "paired") if k in results}
    return {**kept, "tasks": tasks}


def eval_table_markdown(results: Any) -> tuple[str, str | None]:
    """A markdown table (and an optional note) from evaluation results.

    Accepted shapes: the `results.json` that `t2l eval` writes; `{condition: {benchmark: score}}` (one row per
    condition); a list of row dicts (`[{"condition": "T2L", "arc_easy": 61.2, ...}]`); or either of the last two
    under a `"results"` key next to optional `"metric"` and `"notes"` strings.
    """
    metric = notes = None
    if isinstance(results, Mapping) and str(results.get("format", "")).startswith("text2lora-eval/"):
        return _t2l_eval_table(results)
    if isinstance(results, Mapping) and "results" in results:
        metric, notes = results.get("metric"), results.get("notes")
        results = results["results"]
    if isinstance(results, Mapping):
        rows = []
        for name, scores in results.items():
            if not isinstance(scores, Mapping):
                raise TypeError(
                    f"Evaluation results for {name!r} must map benchmark -> score, got {type(scores).__name__}; "
                    "use {condition: {benchmark: score}} or a list of row dicts."
                )
            rows.append({"condition": name, **scores})
    elif isinstance(results, Sequence) and not isinstance(results, str):
        rows = [dict(row) for row in results]
        if not all(isinstance(row, dict) for row in rows):
            raise ValueError("Evaluation results given as a list must be a list of dicts (one per table row).")
    else:
        raise TypeError(
            f"Cannot make a table from evaluation results of type {type(results).__name__}; "
            "use {condition: {benchmark: score}} or a list of row dicts."
        )
    if not rows:
        return "", None
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    lines = [
        "| " + " | ".join(columns) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(columns))) + "|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row.get(column)) for column in columns) + " |")
    note = " ".join(part for part in (f"Metric: {metric}." if metric else None, notes) if part) or None
    return "\n".join(lines), note


def _t2l_eval_table(results: Mapping[str, Any]) -> tuple[str, str | None]:
    """`t2l eval` results: one row per condition, one column per task (its primary metric, mean over runs),
    then each scope's mean (benchmarks, held-out tasks)."""
    tasks = results.get("tasks", {})
    rows = []
    for name, info in results.get("conditions", {}).items():
        row: dict[str, Any] = {"condition": info.get("label", name)}
        for task, task_info in tasks.items():
            cell = task_info.get("conditions", {}).get(name)
            if cell is not None:
                row[task] = cell["metrics"][task_info["primary_metric"]]["mean"]
        for scope, by_condition in results.get("summary", {}).items():
            if name in by_condition:
                row[f"mean: {scope}"] = by_condition[name]["mean"]
        rows.append(row)
    metrics = sorted({f"{task}: {info['primary_metric']}" for task, info in tasks.items()})
    sizes = sorted({info.get("n_examples") for info in tasks.values() if info.get("n_examples")})
    table, _ = eval_table_markdown(rows)
    note = f"From `t2l eval`; each cell is the task's primary metric ({'; '.join(metrics)}), mean over runs"
    if sizes:
        note += f", on {sizes[0]}" + (f"-{sizes[-1]}" if len(sizes) > 1 else "") + " examples per task"
    return table, note + "."


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value).replace("|", "\\|").replace("\n", " ")


# ---------------------------------------------------------------------------------------------- hypernetwork card


def hypernetwork_card(
    model: Any,
    *,
    repo_id: str | None = None,
    eval_results: Any = None,
    datasets: Sequence[str] | None = None,
    tags: Sequence[str] | None = None,
    license: str | None = None,
    model_name: str | None = None,
):
    """The `huggingface_hub.ModelCard` of a `T2LModel`: Hub metadata, usage snippets, architecture, eval table.

    Args:
        model: the `T2LModel`.
        repo_id: where the card will live ("owner/name"); used in the snippets. Defaults to the model's
            `name_or_path` when that is a Hub id, else a placeholder.
        eval_results: evaluation results (see `eval_table_markdown` for the accepted shapes).
        datasets: Hub ids (or names) of the training data, listed in the metadata and the card.
        tags: extra tags besides text2lora's own.
        license: an SPDX-style licence id for the metadata (e.g. "apache-2.0").
        model_name: the card's title (defaults to the repo name).
    """
    from huggingface_hub import ModelCardData

    config = model.config
    base = config.base_model_name_or_path
    repo_ref = repo_id or (model.name_or_path if is_hub_id(model.name_or_path) else "path/to/this/hypernetwork")
    card_data = ModelCardData(
        library_name="text2lora",
        base_model=base if is_hub_id(base) else None,
        datasets=list(datasets) if datasets else None,
        tags=_merge_tags(HYPERNETWORK_TAGS, tags),
        license=license,
        model_name=model_name,
    )
    eval_table, eval_notes = eval_table_markdown(eval_results) if eval_results is not None else ("", None)
    adapter_parameters = sum(config.lora_r * sum(config.module_shapes[m]) for m in config.target_modules)
    adapter_parameters *= config.num_layers
    variants = {"L": "L (one head emits A and B together)", "M": "M (shared head, A/B embeddings)",
                "S": "S (one rank row per pass)"}
    return _render(
        HYPERNETWORK_CARD_TEMPLATE,
        card_data,
        model_name=model_name or (repo_ref.rsplit("/", 1)[-1] if repo_id else "Text-to-LoRA hypernetwork"),
        repo_ref=repo_ref,
        base_model_md=_model_link(base),
        base_model_ref=base or "path/to/base/model",
        untrained=hypernetwork_is_untrained(model),
        example_description=EXAMPLE_DESCRIPTION,
        variant=variants.get(config.variant, config.variant),
        num_parameters=f"{model.num_parameters():,}",
        target_modules=", ".join(
            f"`{m}` ({config.module_shapes[m][0]} -> {config.module_shapes[m][1]})" for m in config.target_modules
        ),
        num_layers=config.num_layers,
        lora_r=config.lora_r,
        lora_alpha=f"{config.lora_alpha:g}",
        use_rslora=config.use_rslora,
        adapter_parameters=f"{adapter_parameters:,}",
        adapter_size=_megabytes(adapter_parameters * 4),
        encoder=config.encoder_name_or_path,
        embedding_size=config.task_embedding_size,
        eval_table=eval_table,
        eval_notes=eval_notes,
        datasets=list(datasets or []),
    )


def previous_card_fields(folder: str | os.PathLike | None) -> dict[str, Any]:
    """datasets / tags / license from the card already in a local checkpoint folder, so re-saving keeps them."""
    if folder is None or not (Path(folder) / "README.md").is_file():
        return {}
    import yaml
    from huggingface_hub import ModelCard

    try:
        data = ModelCard.load(Path(folder) / "README.md").data
    except (OSError, ValueError, yaml.YAMLError) as err:  # a hand-edited card that no longer parses
        logger.warning("Ignoring the unreadable model card in %s (%s).", folder, err)
        return {}
    fields = {"datasets": data.datasets, "license": data.license}
    extra_tags = [t for t in (data.tags or []) if t not in HYPERNETWORK_TAGS]
    if extra_tags:
        fields["tags"] = extra_tags
    return {k: v for k, v in fields.items() if v}


# ---------------------------------------------------------------------------------------------- adapter card


def adapter_card(adapter: Any, *, repo_id: str | None = None, tags: Sequence[str] | None = None) -> str:
    """Card for a generated adapter: which description(s) and which hypernetwork made it, and how to load it."""
    from huggingface_hub import ModelCardData

    config = adapter.config
    base = config.base_model_name_or_path
    hypernetwork = adapter.hypernetwork
    card_data = ModelCardData(
        library_name="peft",
        base_model=base if is_hub_id(base) else None,
        pipeline_tag="text-generation" if str(config.task_type) in ("CAUSAL_LM", "TaskType.CAUSAL_LM") else None,
        tags=_merge_tags(ADAPTER_TAGS, tags),
    )
    description = adapter.description
    if isinstance(description, list):
        weights = adapter.mix_weights or [None] * len(description)
        source = "a weighted mix of these descriptions (mixed in the encoder's embedding space)"
        descriptions = [f"(weight {w:g}) {d}" if w is not None else d for d, w in zip(description, weights)]
    elif description:
        source, descriptions = "this description", [str(description)]
    else:
        source, descriptions = "a precomputed task embedding", []
    b_factors = [t for k, t in adapter.state_dict.items() if ".lora_B." in k]
    from .nearest_tasks import adapter_far_warning

    return str(
        _render(
            ADAPTER_CARD_TEMPLATE,
            card_data,
            base_model_md=_model_link(base),
            base_model_ref=base or "path/to/base/model",
            hypernetwork_md=_model_link(hypernetwork, missing="(not saved to a folder or the Hub)"),
            hypernetwork_ref=hypernetwork or "path/to/hypernetwork",
            repo_ref=repo_id or "path/to/this/adapter",
            source=source,
            descriptions=[d.replace("\n", " ") for d in descriptions],
            nearest_tasks=[(name, f"{similarity:.2f}") for name, similarity in adapter.nearest_tasks],
            far_warning=adapter_far_warning(adapter),
            zero_update=bool(b_factors) and not any(bool(t.detach().any()) for t in b_factors),
            lora_r=config.r,
            lora_alpha=f"{config.lora_alpha:g}",
            use_rslora=config.use_rslora,
            target_modules=", ".join(f"`{m}`" for m in sorted(config.target_modules)),
            num_parameters=f"{adapter.num_parameters:,}",
            vllm_rank=next((r for r in VLLM_MAX_LORA_RANKS if r >= config.r), config.r),
        )
    )


# ---------------------------------------------------------------------------------------------- helpers


def _render(template: Path, card_data: Any, **values: Any):
    """Render a card template (front matter from `card_data`) into a `huggingface_hub.ModelCard`."""
    import jinja2
    from huggingface_hub import ModelCard

    environment = jinja2.Environment(trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    text = environment.from_string(template.read_text(encoding="utf-8")).render(card_data=card_data.to_yaml(), **values)
    return ModelCard(text)


def _merge_tags(defaults: Sequence[str], extra: Sequence[str] | None) -> list[str]:
    tags = list(defaults)
    for tag in extra or []:
        if tag not in tags:
            tags.append(tag)
    return tags


def _model_link(name: str | None, missing: str = "an unnamed model") -> str:
    if not name:
        return missing
    if is_hub_id(name):
        return f"[`{name}`](https://huggingface.co/{name})"
    return f"`{name}`"


def _megabytes(nbytes: int) -> str:
    return f"{nbytes / 1e6:.1f} MB"


__all__ = [
    "EVAL_RESULTS_FILE",
    "adapter_card",
    "compact_eval_results",
    "eval_table_markdown",
    "hypernetwork_card",
    "hypernetwork_is_untrained",
    "is_hub_id",
    "read_eval_results",
]
