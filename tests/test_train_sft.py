"""T2L SFT: data checks before training, task batching, a tiny run that lowers the loss while only the hypernetwork
changes, exact resume, chunked runs, warm start, checkpointing, and the `t2l train sft` command."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from text2lora import T2LConfig, T2LModel
from text2lora.training.resume import last_complete_checkpoint
from text2lora.training.collators import T2LSFTCollator
from text2lora.training.sft_config import T2LSFTConfig
from text2lora.training.sft_trainer import T2LSFTTrainer
from text2lora.training.task_data import TokenizedTasks
from text2lora.training.task_sampling import SequentialTaskBatchSampler, TaskBatchSampler
from text2lora.training.warm_start import warm_start_from_lora

sys.path.insert(0, str(Path(__file__).parent / "scripts"))
from t2l_tiny_tasks import task_dataset, task_rows  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TEXT2LORA_HOME", str(tmp_path / "t2l_home"))


@pytest.fixture
def tokenizer(tiny_base_dir):
    return AutoTokenizer.from_pretrained(tiny_base_dir)


def _base(tiny_base_dir):
    return AutoModelForCausalLM.from_pretrained(tiny_base_dir, dtype=torch.float32)


def _hypernetwork(tiny_config, seed=0, **overrides):
    torch.manual_seed(seed)
    config = tiny_config if not overrides else T2LConfig(**{**tiny_config.to_dict(), **overrides})
    return T2LModel(config)


def _args(tmp_path, **kw):
    defaults = dict(
        output_dir=str(tmp_path / "run"),
        max_steps=8,
        learning_rate=1e-2,
        tasks_per_batch=2,
        examples_per_task=2,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        max_length=64,
        disable_tqdm=True,
        use_cpu=True,
        plot_loss=False,
        cache_dir="none",
    )
    defaults.update(kw)
    return T2LSFTConfig(**defaults)


def _losses(trainer):
    return {e["step"]: e["loss"] for e in trainer.state.log_history if "loss" in e}


# ------------------------------------------------------------------------------------------- data


def test_paper_defaults():
    args = T2LSFTConfig(output_dir="unused", report_to="none")
    assert (args.learning_rate, args.weight_decay, args.warmup_steps, args.max_grad_norm) == (2.5e-5, 1e-2, 0.2, 1.0)
    assert (args.label_smoothing_factor, args.lora_l2_penalty, args.neftune_noise_alpha) == (0.1, 1e-3, 5.0)
    assert (args.max_length, args.tasks_per_batch, args.examples_per_task) == (512, 8, 1)
    assert args.lr_scheduler_type == "linear" and args.per_device_train_batch_size == 8
    with pytest.raises(ValueError, match="tasks_per_batch"):
        T2LSFTConfig(output_dir="unused", tasks_per_batch=0)


def test_dataset_folder_and_jsonl_give_the_same_tokens(tmp_path, tokenizer):
    dataset = task_dataset()
    dataset.save_to_disk(str(tmp_path / "saved"))
    jsonl = tmp_path / "tasks.jsonl"
    jsonl.write_text("".join(json.dumps(row) + "\n" for row in task_rows()))
    results = [TokenizedTasks.from_dataset(src, tokenizer, max_length=64) for src in (dataset, tmp_path / "saved", jsonl)]
    cached = [TokenizedTasks.from_dataset(dataset, tokenizer, max_length=64, cache_dir=tmp_path / "cache") for _ in range(2)]
    assert len(list((tmp_path / "cache").glob("tokenized-*.npz"))) == 1
    results += cached
    for other in results[1:]:
        assert other.task_names == results[0].task_names
        assert other.task_descriptions == results[0].task_descriptions
        np.testing.assert_array_equal(other.tokens, results[0].tokens)
        np.testing.assert_array_equal(other.completion_starts, results[0].completion_starts)


def test_labels_cover_the_completion_only(tokenizer):
    tasks = TokenizedTasks.from_dataset(task_dataset(), tokenizer, max_length=64)
    row = 0
    ids, start = tasks.example(row)
    batch = T2LSFTCollator(tokenizer.pad_token_id, torch.zeros(8, 4))(
        [{"input_ids": ids, "completion_start": start, "description_id": 3}, {"input_ids": ids[:-2], "completion_start": start, "description_id": 3}]
    )
    labels = batch["labels"][0]
    completion = tokenizer.decode(labels[labels != -100])
    expected = task_rows()[row]["completion"]
    assert completion.replace(" ", "").startswith(expected.replace(" ", "")) and "<|im_end|>" in completion
    prompt = tokenizer.decode(batch["input_ids"][0][: start])
    assert prompt.startswith("<|im_start|> user") and prompt.rstrip().endswith("assistant")
    assert batch["attention_mask"][1].sum() == len(ids) - 2 and (batch["labels"][1][len(ids) - 2 :] == -100).all()
    assert batch["task_embeddings"].shape == (1, 4) and batch["embedding_index"].tolist() == [0, 0]


def test_messages_rows_equal_prompt_completion_rows(tokenizer):
    rows = task_rows()
    chat = [
        {"task": r["task"], "descriptions": r["descriptions"],
         "messages": [{"role": "user", "content": r["prompt"]}, {"role": "assistant", "content": r["completion"]}]}
        for r in rows
    ]
    import datasets

    a = TokenizedTasks.from_dataset(datasets.Dataset.from_list(rows), tokenizer, max_length=64)
    b = TokenizedTasks.from_dataset(datasets.Dataset.from_list(chat), tokenizer, max_length=64)
    np.testing.assert_array_equal(a.tokens, b.tokens)
    np.testing.assert_array_equal(a.completion_starts, b.completion_starts)


def _with(rows, index, **changes):
    rows = [dict(r) for r in rows]
    rows[index].update(changes)
    import datasets

    return datasets.Dataset.from_list(rows)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"descriptions": []}, r"row 3 \(task 'first_word'\) has no description"),
        ({"completion": ""}, r"row 3 .* has no completion"),
        ({"task": ""}, r"row 3: `task` is empty"),
    ],
)
def test_bad_rows_are_reported_before_training(tmp_path, tiny_base_dir, tiny_config, tokenizer, change, message):
    data = _with(task_rows(), 3, **change)
    with pytest.raises(ValueError, match=message):
        T2LSFTTrainer(_hypernetwork(tiny_config), _base(tiny_base_dir), args=_args(tmp_path), train_dataset=data, processing_class=tokenizer)


def test_tasks_without_examples_and_missing_chat_template_are_errors(tmp_path, tiny_base_dir, tiny_config, tokenizer):
    data = task_dataset()
    with pytest.raises(ValueError, match=r"'unknown_task' has descriptions but zero examples"):
        TokenizedTasks.from_dataset(data, tokenizer, task_descriptions={"unknown_task": ["Do something."]})
    with pytest.raises(ValueError, match=r"zero examples .* after cutting to max_length=8"):
        TokenizedTasks.from_dataset(data, tokenizer, max_length=8)
    plain = AutoTokenizer.from_pretrained(tiny_base_dir)
    plain.chat_template = None
    with pytest.raises(ValueError, match="has no chat template"):
        T2LSFTTrainer(_hypernetwork(tiny_config), _base(tiny_base_dir), args=_args(tmp_path), train_dataset=data, processing_class=plain)
    with pytest.raises(ValueError, match="tasks_per_batch=8 but the training data has 4"):
        T2LSFTTrainer(_hypernetwork(tiny_config), _base(tiny_base_dir), args=_args(tmp_path, tasks_per_batch=8),
                      train_dataset=data, processing_class=tokenizer)
    # Without the chat template, plain prompt + completion text trains.
    tasks = TokenizedTasks.from_dataset(data, plain, use_chat_template=False)
    assert tasks.num_tasks == 4


def test_batches_hold_distinct_tasks_and_one_description_per_task():
    task_rows_ = [np.arange(0, 5), np.arange(5, 8), np.arange(8, 20), np.arange(20, 22)]
    offsets = np.array([0, 2, 5, 6, 10])
    sampler = TaskBatchSampler(task_rows_, offsets, tasks_per_batch=3, examples_per_task=2, seed=1)
    first = list(sampler)
    assert len(first) == len(sampler) == 4  # ceil(22 / 6)
    for batch in first:
        tasks = [next(t for t, rows in enumerate(task_rows_) if row in rows) for row, _ in batch]
        assert len(set(tasks)) == 3 and all(tasks.count(t) == 2 for t in set(tasks))
        for (row, desc), task in zip(batch, tasks):
            assert offsets[task] <= desc < offsets[task + 1]
        assert batch[0][1] == batch[1][1]  # a task's examples share its description
    assert list(sampler) == first  # same (seed, epoch): same batches
    sampler.set_epoch(1)
    assert list(sampler) != first
    with pytest.raises(ValueError, match="lower tasks_per_batch"):
        TaskBatchSampler(task_rows_, offsets, tasks_per_batch=5)
    evaluation = list(SequentialTaskBatchSampler(np.array([0, 0, 0, 1]), np.array([0, 2, 3]), batch_size=3))
    assert evaluation == [[(0, 0), (1, 1), (2, 0)], [(3, 2)]]


# ------------------------------------------------------------------------------------------- training


def test_sft_lowers_the_loss_and_trains_only_the_hypernetwork(tmp_path, tiny_base_dir, tiny_config, tokenizer):
    base = _base(tiny_base_dir)
    base_before = {k: v.clone() for k, v in base.state_dict().items()}
    hypernetwork = _hypernetwork(tiny_config)
    hyper_before = {k: v.clone() for k, v in hypernetwork.state_dict().items()}
    args = _args(tmp_path, max_steps=24, save_strategy="steps", save_steps=12, plot_loss=True, neftune_noise_alpha=None,
                 warmup_steps=0.1)
    data = task_dataset()
    trainer = T2LSFTTrainer(hypernetwork, base, args=args, train_dataset=data, eval_dataset=data, processing_class=tokenizer)
    before = trainer.evaluate()["eval_loss"]
    trainer.train()
    after = trainer.evaluate()["eval_loss"]
    assert after < before - 0.2, (before, after)

    assert all(torch.equal(base_before[k], v) for k, v in base.state_dict().items()), "the base model changed"
    assert not all(p.requires_grad for p in base.parameters())
    changed = [k for k, v in hypernetwork.state_dict().items() if not torch.equal(hyper_before[k], v)]
    assert any(k.startswith("heads.") for k in changed) and any(k.startswith("mixer.") for k in changed)

    logged = [e for e in trainer.state.log_history if "loss" in e]
    assert {"completion_loss", "lora_l2", "learning_rate"} <= set(logged[0])
    out = Path(args.output_dir)
    assert (out / "loss_curve.png").stat().st_size > 1000
    checkpoint = last_complete_checkpoint(out)
    assert checkpoint is not None and checkpoint.endswith("checkpoint-24")
    reloaded = T2LModel.from_pretrained(checkpoint)
    for key, value in hypernetwork.state_dict().items():
        torch.testing.assert_close(reloaded.state_dict()[key], value)
    trainer.save_model()
    assert T2LModel.from_pretrained(out).config.num_layers == tiny_config.num_layers


def test_resume_and_chunked_runs_reproduce_the_uninterrupted_loss_curve(tmp_path, tiny_base_dir, tiny_config, tokenizer):
    data = task_dataset(examples_per_task=3)  # 12 rows, 4 per batch: epochs of 3 steps, so runs cross epochs

    def run(output_dir, resume=None, **kw):
        args = _args(tmp_path, output_dir=str(output_dir), save_strategy="steps", save_steps=4, **kw)
        trainer = T2LSFTTrainer(_hypernetwork(tiny_config), _base(tiny_base_dir), args=args, train_dataset=data,
                                processing_class=tokenizer)
        trainer.train(resume_from_checkpoint=resume)
        return trainer

    full = run(tmp_path / "full")
    reference = _losses(full)
    assert sorted(reference) == list(range(1, 9))

    resumed = run(tmp_path / "full", resume=str(tmp_path / "full" / "checkpoint-4"))
    assert _losses(resumed) == reference  # exactly, not approximately

    chunked_dir = tmp_path / "chunked"
    first = run(chunked_dir, resume="auto", max_steps_per_run=5)
    assert first.state.global_step == 5 and last_complete_checkpoint(chunked_dir).endswith("checkpoint-5")
    (chunked_dir / "checkpoint-7").mkdir()  # a save killed half-way: skipped when resuming
    (chunked_dir / "checkpoint-7" / "model.safetensors").write_bytes(b"partial")
    second = run(chunked_dir, resume="auto", max_steps_per_run=5)
    assert second.state.global_step == 8
    assert _losses(second) == reference
    for key, value in full.hypernetwork.state_dict().items():
        assert torch.equal(second.hypernetwork.state_dict()[key], value)


def test_activation_checkpointing_gives_the_same_training(tmp_path, tiny_base_dir, tiny_config, tokenizer):
    data = task_dataset()
    results = []
    for checkpointing in (False, True):
        args = _args(tmp_path, max_steps=2, activation_checkpointing=checkpointing)
        trainer = T2LSFTTrainer(_hypernetwork(tiny_config), _base(tiny_base_dir), args=args, train_dataset=data,
                                processing_class=tokenizer)
        trainer.train()
        results.append(trainer)
    base = results[1].model.base_model
    assert any(getattr(m, "gradient_checkpointing", False) for m in base.modules())
    assert _losses(results[0]).keys() == _losses(results[1]).keys()
    for step, loss in _losses(results[0]).items():
        assert abs(loss - _losses(results[1])[step]) < 1e-5
    for key, value in results[0].hypernetwork.state_dict().items():
        torch.testing.assert_close(results[1].hypernetwork.state_dict()[key], value, atol=1e-6, rtol=1e-5)


def test_bf16_autocast_and_evaluation_before_training(tmp_path, tiny_base_dir, tiny_config, tokenizer):
    data = task_dataset(examples_per_task=2)
    trainer = T2LSFTTrainer(_hypernetwork(tiny_config), _base(tiny_base_dir), args=_args(tmp_path, max_steps=1, bf16=True),
                            train_dataset=data, eval_dataset=data, processing_class=tokenizer)
    before = trainer.evaluate()["eval_loss"]
    # The evaluation-only preparation is undone, so train() prepares (and under DDP wraps) the model itself.
    assert trainer.model_wrapped is trainer.model and not getattr(trainer.model, "_is_accelerate_prepared", False)
    trainer.train()
    assert np.isfinite(_losses(trainer)[1]) and np.isfinite(before)
    assert trainer.model._is_accelerate_prepared


def _save_lora(base, config, path, seed=1, r=None):
    from peft import LoraConfig, get_peft_model

    peft_model = get_peft_model(
        base,
        LoraConfig(r=r or config.lora_r, lora_alpha=config.lora_alpha, use_rslora=config.use_rslora,
                   target_modules=list(config.target_modules)),
    )
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.1)
    peft_model.save_pretrained(path)
    peft_model.unload()
    return path


def test_warm_start_generates_the_given_lora_for_every_description(tmp_path, tiny_base_dir, tiny_config):
    from text2lora.training.lora_library import read_peft_adapter

    lora_dir = _save_lora(_base(tiny_base_dir), tiny_config, tmp_path / "mt_lora")
    hypernetwork = _hypernetwork(tiny_config, ab_offset=True)
    warm_start_from_lora(hypernetwork, lora_dir)
    assert all((head.bias == 0).all() for head in hypernetwork.heads.values())
    target = read_peft_adapter(lora_dir)
    out = hypernetwork.eval()(torch.randn(3, tiny_config.task_embedding_size))
    for m in tiny_config.target_modules:
        torch.testing.assert_close(out.lora_A[m], target.lora_A[m].expand_as(out.lora_A[m]))
        torch.testing.assert_close(out.lora_B[m], target.lora_B[m].expand_as(out.lora_B[m]))

    with pytest.raises(ValueError, match="no `ab_offsets`"):
        warm_start_from_lora(_hypernetwork(tiny_config), lora_dir)
    other = _save_lora(_base(tiny_base_dir), tiny_config, tmp_path / "rank4", r=4)
    with pytest.raises(ValueError, match="rank 4 vs 8"):
        warm_start_from_lora(hypernetwork, other)


def test_cli_train_sft_from_yaml(tmp_path, tiny_base_dir, tiny_encoder_dir):
    from text2lora.cli import main

    task_dataset().save_to_disk(str(tmp_path / "tasks"))
    config = tmp_path / "sft.yaml"
    config.write_text(
        f"""
base_model: {tiny_base_dir}
hypernetwork:
  encoder_name_or_path: {tiny_encoder_dir}
  task_embedding_size: 32
  latent_size: 16
  head_in_size: 32
train_dataset: {tmp_path / "tasks"}
training:
  output_dir: {tmp_path / "out"}
  max_steps: 50
  tasks_per_batch: 2
  learning_rate: 0.01
  max_length: 64
  save_steps: 2
  logging_steps: 1
  use_cpu: true
  report_to: none
  disable_tqdm: true
"""
    )
    assert main(["train", "sft", str(config), "--set", "training.max_steps=3", "--set", "training.cache_dir=none"]) == 0
    out = tmp_path / "out"
    assert T2LModel.from_pretrained(out).config.latent_size == 16
    assert (out / "loss_curve.png").is_file() and last_complete_checkpoint(out).endswith("checkpoint-3")
    assert main(["train", "sft", str(tmp_path / "missing.yaml")]) == 1


@pytest.mark.parametrize("name", sorted(p.name for p in (Path(__file__).parents[1] / "configs" / "train").glob("*.yaml")))
def test_example_configs_are_valid(name, monkeypatch):
    """Every shipped run config parses and its `training` section builds the right arguments class."""
    from trl import SFTConfig

    from text2lora.training.run_config import _dataclass_from, load_run_config
    from text2lora.training.recon_config import T2LReconstructionConfig

    overrides = ["training.report_to=none", "training.use_cpu=true"]  # TRL defaults to bf16 unless told CPU
    config = load_run_config(Path(__file__).parents[1] / "configs" / "train" / name, overrides)
    kind = {"sft": T2LSFTConfig, "recon": T2LReconstructionConfig}.get(name.split("_")[0], SFTConfig)
    args = _dataclass_from(kind, config["training"], name)
    assert args.output_dir
    assert "~" not in str(config.get("train_dataset", ""))


def test_completion_nll_per_task(tiny_base_dir, tiny_config, tokenizer):
    """The held-out check of a run: an untrained hypernetwork (B = 0) scores exactly like the base model, a
    hypernetwork with non-zero heads does not, and per-task numbers are token-weighted into "all"."""
    from text2lora.training.task_loss import completion_nll

    base = _base(tiny_base_dir)
    data = task_dataset(examples_per_task=3)
    plain = completion_nll(None, base, tokenizer, data, batch_size=5)
    untrained = completion_nll(_hypernetwork(tiny_config), base, tokenizer, data, batch_size=4)
    assert set(plain) == {"first_word", "last_word", "reverse", "sort", "all"}
    for task, value in plain.items():
        assert abs(untrained[task]["nll"] - value["nll"]) < 1e-5 and untrained[task]["tokens"] == value["tokens"]
    total = sum(v["nll"] * v["tokens"] for k, v in plain.items() if k != "all") / plain["all"]["tokens"]
    assert abs(total - plain["all"]["nll"]) < 1e-6
    nonzero = _hypernetwork(tiny_config)
    with torch.no_grad():
        for head in nonzero.heads.values():
            head.weight.normal_(0, 0.05)
    changed = completion_nll(nonzero, base, tokenizer, data, descriptions="other_task")
    assert abs(changed["all"]["nll"] - plain["all"]["nll"]) > 1e-3


def test_skip_empty_tasks_leaves_out_tasks_with_only_long_examples(tokenizer):
    import datasets

    rows = task_rows()
    long_task = rows[0]["task"]
    for row in rows:
        if row["task"] == long_task:
            row["prompt"] = "word " * 200  # every example of this task is longer than max_length
    data = datasets.Dataset.from_list(rows)
    with pytest.raises(ValueError, match=rf"\['{long_task}'\] have zero examples"):
        TokenizedTasks.from_dataset(data, tokenizer, max_length=64)
    kept = TokenizedTasks.from_dataset(data, tokenizer, max_length=64, skip_empty_tasks=True)
    full = TokenizedTasks.from_dataset(task_dataset(), tokenizer, max_length=64)
    assert long_task not in kept.task_names
    assert kept.task_names == [t for t in full.task_names if t != long_task]
    assert len(kept.task_descriptions) == len(kept.task_names)


def test_exponent_numbers_in_run_configs_and_overrides_are_floats(tmp_path):
    """YAML 1.1 reads `2e-4` as text; a learning rate must reach the optimizer as a number either way."""
    from text2lora.training.run_config import load_run_config, parse_override

    assert parse_override("training.learning_rate=2e-4") == (["training", "learning_rate"], 2e-4)
    assert parse_override("training.learning_rate=2.0e-4")[1] == 2e-4
    assert parse_override("training.run_name=1e5x")[1] == "1e5x"  # not a number: left alone
    path = tmp_path / "run.yaml"
    path.write_text("training:\n  learning_rate: 1e-3\n  output_dir: out\n  lr_list: [3e-5, 4]\n")
    config = load_run_config(path, ["training.weight_decay=1E-2"])
    assert config["training"]["learning_rate"] == 1e-3 and isinstance(config["training"]["learning_rate"], float)
    assert config["training"]["weight_decay"] == 0.01
    assert config["training"]["lr_list"] == [3e-5, 4]
