"""Saving and uploading hypernetworks and generated adapters, each with its own model card.

`T2LModel.save_pretrained` and `T2LModel.push_to_hub` route through `save_with_card` and
`push_hypernetwork_to_hub`: the folder gets a README.md written from `text2lora.cards` (instead of transformers'
generic card) and the upload is one `HfApi.upload_folder` commit. `push_adapter_to_hub` does the same for a
`GeneratedLora`.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .cards import (
    EVAL_RESULTS_FILE,
    HYPERNETWORK_CARD_TEMPLATE,
    adapter_card,
    compact_eval_results,
    hypernetwork_card,
    previous_card_fields,
    read_eval_results,
)
from .io_utils import atomic_file

logger = logging.getLogger(__name__)

# `save_pretrained(push_to_hub=True, ...)` keyword arguments that belong to the upload, as in transformers.
_PUSH_KWARGS = ("repo_id", "commit_message", "commit_description", "private", "token", "create_pr", "revision")


def _hf_api(token: str | bool | None = None):
    from importlib.metadata import PackageNotFoundError, version

    from huggingface_hub import HfApi

    try:
        library_version = version("text2lora")
    except PackageNotFoundError:  # running from a checkpoint's remote code, without text2lora installed
        library_version = None
    return HfApi(token=token, library_name="text2lora", library_version=library_version)


def write_hypernetwork_card(
    model: Any,
    save_directory: str | os.PathLike,
    *,
    repo_id: str | None = None,
    eval_results: Any = None,
    datasets: Sequence[str] | None = None,
    tags: Sequence[str] | None = None,
    license: str | None = None,
) -> Path | None:
    """Write README.md (and eval_results.json when results are given) into a saved hypernetwork folder.

    Results not passed are read from `eval_results.json` in the folder, then from the folder the model was
    loaded from; datasets, tags and licence not passed are kept from that folder's previous card.
    """
    folder = Path(save_directory)
    if not HYPERNETWORK_CARD_TEMPLATE.is_file():  # e.g. saving from a checkpoint's remote code copy
        logger.warning("No model card written: the card template %s is missing.", HYPERNETWORK_CARD_TEMPLATE)
        return None
    source = Path(model.name_or_path) if model.name_or_path and Path(model.name_or_path).is_dir() else None
    if eval_results is not None:
        eval_results = compact_eval_results(eval_results)
        with atomic_file(folder / EVAL_RESULTS_FILE) as handle:
            handle.write(json.dumps(eval_results, indent=2) + "\n")
    else:
        eval_results = read_eval_results(folder)
        if eval_results is None and source is not None and source.resolve() != folder.resolve():
            eval_results = read_eval_results(source)
            if eval_results is not None:
                with atomic_file(folder / EVAL_RESULTS_FILE) as handle:
                    handle.write(json.dumps(eval_results, indent=2) + "\n")
    kept = previous_card_fields(source) if source is not None else {}
    card = hypernetwork_card(
        model,
        repo_id=repo_id,
        eval_results=eval_results,
        datasets=datasets if datasets is not None else kept.get("datasets"),
        tags=tags if tags is not None else kept.get("tags"),
        license=license if license is not None else kept.get("license"),
    )
    with atomic_file(folder / "README.md", encoding="utf-8") as handle:
        handle.write(str(card))
    return folder / "README.md"


def save_with_card(
    model: Any,
    save_fn: Callable[..., Any],
    save_directory: str | os.PathLike,
    *args: Any,
    model_card: bool = True,
    eval_results: Any = None,
    datasets: Sequence[str] | None = None,
    tags: Sequence[str] | None = None,
    license: str | None = None,
    card_repo_id: str | None = None,
    push_to_hub: bool = False,
    **kwargs: Any,
):
    """`save_fn` (transformers' `save_pretrained`), then the model card; then the upload if `push_to_hub`.

    The upload is done here rather than inside transformers so that it carries our card, not the generic one.
    """
    push = {key: kwargs.pop(key) for key in _PUSH_KWARGS if key in kwargs}
    result = save_fn(save_directory, *args, **kwargs)
    is_main_process = kwargs.get("is_main_process", args[0] if args else True)
    repo_id = push.get("repo_id") or card_repo_id
    if push_to_hub and not repo_id:
        repo_id = Path(save_directory).name
    if model_card and is_main_process and not HYPERNETWORK_CARD_TEMPLATE.is_file():
        # A copy of this code in a Hub repo (trust_remote_code) has no templates folder: save without a card.
        logger.warning("No model-card template next to %s; saved without a README.md card.", __file__)
    elif model_card and is_main_process:
        write_hypernetwork_card(
            model, save_directory, repo_id=repo_id, eval_results=eval_results, datasets=datasets, tags=tags,
            license=license,
        )
    if push_to_hub and is_main_process:
        api = _hf_api(push.get("token"))
        repo_id = api.create_repo(repo_id, private=push.get("private"), exist_ok=True).repo_id
        _upload(api, save_directory, repo_id, push.get("commit_message") or "Upload Text-to-LoRA hypernetwork", push)
    return result


def push_hypernetwork_to_hub(
    model: Any,
    repo_id: str,
    *,
    commit_message: str | None = None,
    commit_description: str | None = None,
    private: bool | None = None,
    token: str | bool | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    max_shard_size: int | str | None = "50GB",
    tags: Sequence[str] | None = None,
    eval_results: Any = None,
    datasets: Sequence[str] | None = None,
    license: str | None = None,
):
    """Upload a `T2LModel` (weights, config, modelling code, model card) to the Hub in one commit.

    Same arguments as transformers' `push_to_hub`, plus the card's `eval_results`, `datasets` and `license`.
    Returns the `CommitInfo` of the upload.
    """
    api = _hf_api(token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    with tempfile.TemporaryDirectory(prefix="text2lora-push-") as tmp:
        model.save_pretrained(
            tmp,
            max_shard_size=max_shard_size,
            eval_results=eval_results,
            datasets=datasets,
            tags=tags,
            license=license,
            card_repo_id=repo_id,
        )
        options = {"commit_description": commit_description, "revision": revision, "create_pr": create_pr}
        return _upload(api, tmp, repo_id, commit_message or "Upload Text-to-LoRA hypernetwork", options)


def push_adapter_to_hub(
    adapter: Any,
    repo_id: str,
    *,
    dtype: Any = None,
    commit_message: str | None = None,
    commit_description: str | None = None,
    private: bool | None = None,
    token: str | bool | None = None,
    revision: str | None = None,
    create_pr: bool = False,
    tags: Sequence[str] | None = None,
):
    """Upload a `GeneratedLora` as a PEFT adapter repo whose card names its description(s) and hypernetwork.

    Args:
        adapter: the adapter (`T2LModel.generate_lora(...)`).
        repo_id: "owner/name" of the adapter repo (created if missing).
        dtype: saved dtype ("bf16" halves the upload); float32 by default.
        tags: extra card tags.

    Returns the `CommitInfo` of the upload.
    """
    api = _hf_api(token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    with tempfile.TemporaryDirectory(prefix="text2lora-push-") as tmp:
        folder = adapter.save_pretrained(Path(tmp) / "adapter", dtype=dtype)
        with atomic_file(Path(folder) / "README.md", encoding="utf-8") as handle:
            handle.write(adapter_card(adapter, repo_id=repo_id, tags=tags))
        options = {"commit_description": commit_description, "revision": revision, "create_pr": create_pr}
        return _upload(api, folder, repo_id, commit_message or "Upload LoRA adapter generated by Text-to-LoRA", options)


def _upload(api: Any, folder: str | os.PathLike, repo_id: str, commit_message: str, options: dict[str, Any]):
    revision = options.get("revision")
    if revision is not None and not str(revision).startswith("refs/pr"):
        api.create_branch(repo_id=repo_id, branch=revision, exist_ok=True)
    logger.info("Uploading %s to %s", sorted(os.listdir(folder)), repo_id)
    return api.upload_folder(
        repo_id=repo_id,
        folder_path=str(folder),
        commit_message=commit_message,
        commit_description=options.get("commit_description"),
        revision=revision,
        create_pr=bool(options.get("create_pr")),
    )


__all__ = ["push_adapter_to_hub", "push_hypernetwork_to_hub", "save_with_card", "write_hypernetwork_card"]
