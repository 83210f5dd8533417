"""Baselines through the T2L data pipeline: the multi-task LoRA (TRL SFTTrainer) and per-task oracle LoRAs that
form a LoRA library; their adapters fit the hypernetwork (warm start, reconstruction)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig

from text2lora import T2LConfig, T2LModel
from text2lora.training.baselines import lora_config_for, tokenized_sft_dataset, train_multitask_lora, train_oracle_loras
from text2lora.training.collators import T2LSFTCollator
from text2lora.training.lora_library import LoraLibrary, read_peft_adapter
from text2lora.training.losses import completion_loss
from text2lora.training.task_data import TokenizedTasks
from text2lora.training.warm_start import warm_start_from_lora

sys.path.insert(0, str(Path(__file__).parent / "scripts"))
from t2l_tiny_tasks import task_dataset  # noqa: E402


def _sft_args(tmp_path, name, **kw):
    defaults = dict(
        output_dir=str(tmp_path / name), max_steps=20, learning_rate=1e-2, per_device_train_batch_size=4, logging_steps=5,
        save_strategy="no", report_to="none", max_length=64, use_cpu=True, disable_tqdm=True, warmup_steps=0.1,
    )
    defaults.update(kw)
    return SFTConfig(**defaults)


def _mean_loss(model, tasks, tokenizer) -> float:
    collate = T2LSFTCollator(tokenizer.pad_token_id, torch.zeros(1, 1))
    features = []
    for row in range(len(tasks)):
        ids, start = tasks.example(row)
        features.append({"input_ids": ids, "completion_start": start, "description_id": 0})
    batch = collate(features)
    with torch.no_grad():
        return float(completion_loss(model, batch["input_ids"], batch["attention_mask"], batch["labels"]))


def test_trl_sees_the_same_tokens_and_labels_as_t2l(tiny_base_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_base_dir)
    tasks = TokenizedTasks.from_dataset(task_dataset(), tokenizer, max_length=64)
    dataset = tokenized_sft_dataset(tasks)
    for row in (0, 7, len(tasks) - 1):
        ids, start = tasks.example(row)
        assert dataset[row]["input_ids"] == ids.tolist()
        assert dataset[row]["labels"] == [-100] * start + ids[start:].tolist()


def test_multitask_lora_learns_and_fits_the_hypernetwork(tmp_path, tiny_base_dir, tiny_config):
    tokenizer = AutoTokenizer.from_pretrained(tiny_base_dir)
    base = AutoModelForCausalLM.from_pretrained(tiny_base_dir)
    data = task_dataset()
    tasks = TokenizedTasks.from_dataset(data, tokenizer, max_length=64)
    before = _mean_loss(base, tasks, tokenizer)
    trainer = train_multitask_lora(base, tokenizer, data, _sft_args(tmp_path, "mt"), lora_config_for(tiny_config))
    after = _mean_loss(trainer.model.eval(), tasks, tokenizer)
    assert after < before - 0.2, (before, after)
    out = tmp_path / "mt"
    assert (out / "adapter_config.json").is_file() and (out / "loss_curve.png").is_file()

    reloaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_base_dir), out).eval()
    assert abs(_mean_loss(reloaded, tasks, tokenizer) - after) < 1e-4
    hypernetwork = T2LModel(T2LConfig(**{**tiny_config.to_dict(), "ab_offset": True}))
    warm_start_from_lora(hypernetwork, out)  # same shapes and scale: the warm start of T2L SFT
    factors = read_peft_adapter(out)
    m = tiny_config.target_modules[0]
    torch.testing.assert_close(hypernetwork.ab_offsets[m].B, factors.lora_B[m])


def test_oracle_loras_form_a_library_and_resume(tmp_path, tiny_base_dir, tiny_config):
    tokenizer = AutoTokenizer.from_pretrained(tiny_base_dir)
    base = AutoModelForCausalLM.from_pretrained(tiny_base_dir)
    args = _sft_args(tmp_path, "scratch", max_steps=3, per_device_train_batch_size=2, logging_steps=1)
    library = train_oracle_loras(base, tokenizer, task_dataset(), tmp_path / "library", args, lora_config_for(tiny_config),
                                 tasks=["reverse", "sort"])
    assert library.names == ["reverse", "sort"]
    assert library.entries[0].descriptions == ["Write the words in reverse order.", "Reverse the list of words."]
    library.check_matches(tiny_config)
    assert (tmp_path / "library" / "loss_curves.png").is_file()
    assert not any(isinstance(m, torch.nn.ModuleDict) and "default" in m for m in base.modules()), "LoRA left in base"
    first = library.entries[0].factors.lora_B[tiny_config.target_modules[0]]
    assert first.abs().sum() > 0  # trained away from B = 0

    stamp = (tmp_path / "library" / "reverse" / "adapter_model.safetensors").stat().st_mtime_ns
    again = train_oracle_loras(base, tokenizer, task_dataset(), tmp_path / "library", args, lora_config_for(tiny_config),
                               tasks=["reverse", "first_word"])
    assert (tmp_path / "library" / "reverse" / "adapter_model.safetensors").stat().st_mtime_ns == stamp  # kept
    assert again.names == ["first_word", "reverse"]
    assert LoraLibrary.load(tmp_path / "library").names == ["first_word", "reverse", "sort"]
    with pytest.raises(ValueError, match=r"\['nope'\] have no examples"):
        train_oracle_loras(base, tokenizer, task_dataset(), tmp_path / "library", args, lora_config_for(tiny_config), tasks=["nope"])


def test_cli_mt_lora_and_oracle_lora(tmp_path, tiny_base_dir):
    from text2lora.cli import main

    task_dataset().save_to_disk(str(tmp_path / "tasks"))
    training = {"max_steps": 2, "per_device_train_batch_size": 2, "learning_rate": 0.001, "max_length": 64,
                "use_cpu": True, "report_to": "none", "disable_tqdm": True, "save_strategy": "no"}
    common = {"base_model": str(tiny_base_dir), "train_dataset": str(tmp_path / "tasks"),
              "hypernetwork": {"lora_r": 4, "lora_alpha": 8}}
    mt = tmp_path / "mt.json"
    mt.write_text(json.dumps({**common, "training": {**training, "output_dir": str(tmp_path / "mt")}}))
    assert main(["train", "mt-lora", str(mt)]) == 0
    assert read_peft_adapter(tmp_path / "mt").rank == 4
    oracle = tmp_path / "oracle.json"
    oracle.write_text(json.dumps({**common, "library_dir": str(tmp_path / "lib"), "tasks": ["sort"],
                                  "training": {**training, "output_dir": str(tmp_path / "scratch")}}))
    assert main(["train", "oracle-lora", str(oracle)]) == 0
    assert LoraLibrary.load(tmp_path / "lib").names == ["sort"]
