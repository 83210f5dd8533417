"""Reconstruction training: a LoRA library in, a hypernetwork that reproduces it out (delta W, z-scored factors,
one-hot task ids), with layout problems reported before training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from text2lora import T2LConfig, T2LModel
from text2lora.adapters import GeneratedLora, factors_to_state_dict, lora_config_from_t2l
from text2lora.training.lora_library import LoraLibrary, read_peft_adapter, write_task_metadata
from text2lora.training.recon_config import T2LReconstructionConfig
from text2lora.training.recon_trainer import T2LReconstructionTrainer

TASKS = {
    "add": ["Add the two numbers.", "Compute the sum."],
    "negate": ["Negate the number.", "Flip the sign of the number."],
    "upper": ["Write the text in capitals.", "Uppercase the text."],
    "count": ["Count the words.", "How many words are there?"],
}


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TEXT2LORA_HOME", str(tmp_path / "t2l_home"))


def _write_library(root: Path, config: T2LConfig, rank: int | None = None, with_descriptions: bool = True) -> Path:
    if rank is not None:
        config = T2LConfig(**{**config.to_dict(), "lora_r": rank})
    gen = torch.Generator().manual_seed(0)
    for index, (task, descriptions) in enumerate(TASKS.items()):
        lora_A, lora_B = {}, {}
        for m in config.target_modules:
            d_in, d_out = config.module_shapes[m]
            lora_A[m] = torch.randn(config.num_layers, config.lora_r, d_in, generator=gen) * 0.1
            lora_B[m] = torch.randn(config.num_layers, d_out, config.lora_r, generator=gen) * 0.1 * (index + 1)
        adapter = GeneratedLora(lora_config_from_t2l(config), factors_to_state_dict(config, lora_A, lora_B))
        adapter.save_pretrained(root / task)
        if with_descriptions:
            write_task_metadata(root / task, task, descriptions)
        else:
            (root / task / "t2l_adapter.json").unlink()
    return root


def _args(tmp_path, **kw):
    defaults = dict(
        output_dir=str(tmp_path / "recon"),
        max_steps=100,
        learning_rate=1e-2,
        warmup_steps=0,
        logging_steps=10,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        use_cpu=True,
        plot_loss=False,
        cache_dir="none",
    )
    defaults.update(kw)
    return T2LReconstructionConfig(**defaults)


def _hypernetwork(library: LoraLibrary, tiny_config: T2LConfig, **overrides) -> T2LModel:
    torch.manual_seed(0)
    settings = {
        **library.t2l_config_kwargs(),
        "encoder_name_or_path": tiny_config.encoder_name_or_path,
        "task_embedding_size": 32,
        "latent_size": 16,
        "head_in_size": 32,
        "dropout": 0.0,
        **overrides,
    }
    return T2LModel(T2LConfig(**settings))


def test_library_loads_with_its_layout_and_descriptions(tmp_path, tiny_config):
    library = LoraLibrary.load(_write_library(tmp_path / "lib", tiny_config))
    assert library.names == sorted(TASKS)
    assert library.entries[0].descriptions == TASKS["add"]
    layout = library.t2l_config_kwargs()
    assert layout["module_shapes"] == tiny_config.module_shapes and layout["module_paths"] == tiny_config.module_paths
    assert (layout["num_layers"], layout["lora_r"]) == (tiny_config.num_layers, tiny_config.lora_r)
    library.check_matches(tiny_config)


def test_reconstruction_on_delta_w_drives_the_loss_down(tmp_path, tiny_config):
    library = LoraLibrary.load(_write_library(tmp_path / "lib", tiny_config))
    trainer = T2LReconstructionTrainer(_hypernetwork(library, tiny_config), library, args=_args(tmp_path, plot_loss=True))
    before = trainer.evaluate()["eval_loss"]
    trainer.train()
    after = trainer.evaluate()["eval_loss"]
    assert after < 0.5 * before, (before, after)
    assert (Path(trainer.args.output_dir) / "loss_curve.png").is_file()
    trainer.save_model()
    reloaded = T2LModel.from_pretrained(trainer.args.output_dir)
    assert reloaded.config.lora_r == tiny_config.lora_r


def test_zscored_factor_reconstruction_uses_library_statistics(tmp_path, tiny_config):
    library = LoraLibrary.load(_write_library(tmp_path / "lib", tiny_config))
    hypernetwork = _hypernetwork(library, tiny_config, output_zscore=True)
    trainer = T2LReconstructionTrainer(hypernetwork, library, args=_args(tmp_path, loss_target="factors", zscore=True))
    m = tiny_config.target_modules[0]
    stack = torch.stack([e.factors.lora_B[m] for e in library.entries])
    torch.testing.assert_close(hypernetwork.output_mean[m].B, stack.mean(0))
    torch.testing.assert_close(hypernetwork.output_std[m].B, stack.std(0, unbiased=False))
    before = trainer.evaluate()["eval_loss"]
    trainer.train()
    assert trainer.evaluate()["eval_loss"] < 0.7 * before


def test_one_hot_task_ids_compress_the_library(tmp_path, tiny_config):
    library = LoraLibrary.load(_write_library(tmp_path / "lib", tiny_config, with_descriptions=False), require_descriptions=False)
    hypernetwork = _hypernetwork(library, tiny_config, task_embedding_size=len(library))
    trainer = T2LReconstructionTrainer(
        hypernetwork, library, args=_args(tmp_path, one_hot_task_ids=True, max_steps=100, learning_rate=2e-2)
    )
    m = tiny_config.target_modules[1]
    target = library.entries[2].factors.delta_weight(m)

    def error():
        out = hypernetwork.eval()(torch.eye(len(library))[2:3])
        return (tiny_config.lora_scaling * out.lora_B[m][0] @ out.lora_A[m][0] - target).abs().mean() / target.abs().mean()

    start = float(error())
    trainer.train()
    assert float(error()) < 0.5 * start
    trainer.save_model()
    assert json.loads((Path(trainer.args.output_dir) / "task_ids.json").read_text())["task_ids"] == library.names


def test_layout_problems_are_reported_before_training(tmp_path, tiny_config):
    rank4 = LoraLibrary.load(_write_library(tmp_path / "rank4", tiny_config, rank=4))
    with pytest.raises(ValueError, match=r"does not match the hypernetwork: rank 4 vs 8"):
        T2LReconstructionTrainer(T2LModel(tiny_config), rank4, args=_args(tmp_path))
    no_descriptions = _write_library(tmp_path / "plain", tiny_config, with_descriptions=False)
    with pytest.raises(ValueError, match="has no description"):
        T2LReconstructionTrainer(T2LModel(tiny_config), str(no_descriptions), args=_args(tmp_path))
    with pytest.raises(ValueError, match=r"task_embedding_size >= 4"):
        library = LoraLibrary.load(no_descriptions, require_descriptions=False)
        T2LReconstructionTrainer(T2LModel(tiny_config.__class__(**{**tiny_config.to_dict(), "task_embedding_size": 2})),
                                 library, args=_args(tmp_path, one_hot_task_ids=True))
    mixed = _write_library(tmp_path / "mixed", tiny_config)
    _write_library(tmp_path / "other", tiny_config, rank=4)
    (tmp_path / "other" / "add").rename(mixed / "zz_add_rank4")
    with pytest.raises(ValueError, match="another layout"):
        LoraLibrary.load(mixed)
    with pytest.raises(ValueError, match="zscore=True needs a hypernetwork"):
        T2LReconstructionTrainer(T2LModel(tiny_config), LoraLibrary.load(tmp_path / "plain", require_descriptions=False),
                                 args=_args(tmp_path, zscore=True, one_hot_task_ids=True))


def test_cli_train_recon(tmp_path, tiny_config):
    from text2lora.cli import main

    _write_library(tmp_path / "lib", tiny_config)
    config = tmp_path / "recon.json"
    config.write_text(json.dumps({
        "library": str(tmp_path / "lib"),
        "hypernetwork": {"encoder_name_or_path": tiny_config.encoder_name_or_path, "task_embedding_size": 32,
                         "latent_size": 16, "head_in_size": 32},
        "training": {"output_dir": str(tmp_path / "out"), "max_steps": 4, "use_cpu": True, "report_to": "none",
                     "disable_tqdm": True, "cache_dir": "none", "zscore": True, "loss_target": "factors"},
    }))
    assert main(["train", "recon", str(config), "--set", "training.max_steps=3"]) == 0
    model = T2LModel.from_pretrained(tmp_path / "out")
    assert model.config.output_zscore and model.output_std is not None


def test_library_aligns_adapters_saved_with_target_modules_in_another_order(tmp_path, tiny_config):
    # PEFT writes target_modules from a set: two adapters of one run can list them in different orders
    root = _write_library(tmp_path / "lib", tiny_config)
    last = sorted(TASKS)[-1]
    config_file = root / last / "adapter_config.json"
    adapter_config = json.loads(config_file.read_text())
    adapter_config["target_modules"] = list(reversed(adapter_config["target_modules"]))
    config_file.write_text(json.dumps(adapter_config))
    library = LoraLibrary.load(root)
    first, moved = library.entries[0].factors, library.entries[-1].factors
    assert moved.target_modules == first.target_modules
    reread = read_peft_adapter(root / last)
    assert reread.target_modules == list(reversed(first.target_modules))  # the file's own order differs...
    for m in first.target_modules:  # ...but the library holds the same tensors under the same names
        assert torch.equal(moved.lora_A[m], reread.lora_A[m]) and torch.equal(moved.lora_B[m], reread.lora_B[m])
