"""Issue 14: silent wrong results and unclear errors, each checked through the public API or the `t2l` CLI.

Replacing an adapter in place takes the new LoRA settings; adapter names are matched exactly (not as substrings of
module paths); CLI numbers are validated by argparse; bad inputs get one line that names the input and the fix.
"""

import json

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model

from text2lora import load_description_adapter
from text2lora import T2LConfig, T2LModel
from text2lora.cli import main
from support import OTHER, TASK, logits, tiny_base



def _twin(tiny_base_dir, tiny_encoder_dir, source: T2LModel, **lora) -> T2LModel:
    """A hypernetwork with `source`'s weights (so the same A and B) but other LoRA settings (same rank)."""
    config = T2LConfig.for_base_model(
        str(tiny_base_dir), encoder_name_or_path=str(tiny_encoder_dir), task_embedding_size=32, latent_size=16,
        head_in_size=32, **lora,
    )
    twin = T2LModel(config).eval()
    twin.load_state_dict(source.state_dict())
    return twin


def _one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got {lines}"
    assert "Traceback" not in text
    return lines[0]


# ---------------------------------------------------------------- item 4: replacing in place takes the new settings


@pytest.mark.parametrize("peft_model", [False, True], ids=["transformers", "PeftModel"])
def test_replacing_an_adapter_in_place_takes_the_new_alpha_rslora_and_dropout(
    tiny_base_dir, tiny_encoder_dir, tiny_t2l_nonzero, tmp_path, peft_model
):
    first = _twin(tiny_base_dir, tiny_encoder_dir, tiny_t2l_nonzero, lora_alpha=16.0, use_rslora=True, lora_dropout=0.0)
    second = _twin(tiny_base_dir, tiny_encoder_dir, tiny_t2l_nonzero, lora_alpha=3.0, use_rslora=False, lora_dropout=0.3)
    assert first.config.lora_scaling != second.config.lora_scaling  # 16/sqrt(8) vs 3/8

    fresh = tiny_base(tiny_base_dir)
    load_description_adapter(fresh, OTHER, t2l=second, cache=False)
    expected = logits(fresh)

    if peft_model:
        model = PeftModel.from_pretrained(tiny_base(tiny_base_dir), first.generate_lora(TASK).save_pretrained(tmp_path / "a")).eval()
    else:
        model = tiny_base(tiny_base_dir)
        load_description_adapter(model, TASK, t2l=first, cache=False)
    n_params = sum(1 for _ in model.parameters())
    load_description_adapter(model, OTHER, t2l=second, cache=False)  # same name "default": replaced in place

    assert sum(1 for _ in model.parameters()) == n_params  # no new layers
    torch.testing.assert_close(logits(model), expected, rtol=1e-6, atol=1e-6)
    layer = model.get_submodule(
        "base_model.model.model.layers.0.self_attn.q_proj" if peft_model else "model.layers.0.self_attn.q_proj"
    )
    assert layer.scaling["default"] == pytest.approx(3.0 / 8)
    assert layer.lora_alpha["default"] == 3.0 and layer.use_rslora["default"] is False
    assert isinstance(layer.lora_dropout["default"], torch.nn.Dropout) and layer.lora_dropout["default"].p == 0.3
    entry = model.peft_config["default"]
    assert (entry.lora_alpha, entry.use_rslora, entry.lora_dropout) == (3.0, False, 0.3)


def test_replacing_a_dora_adapter_in_place_is_refused(tiny_base_dir, tiny_t2l_nonzero):
    """Writing A and B into a DoRA adapter would keep its magnitude vector: refuse, and name the way out."""
    model = get_peft_model(tiny_base(tiny_base_dir), LoraConfig(r=8, target_modules=["q_proj", "v_proj"], use_dora=True))
    before = logits(model)
    with pytest.raises(ValueError, match=r"cannot be replaced in place.*DoRA.*delete_adapter\('default'\)"):
        load_description_adapter(model, TASK, t2l=tiny_t2l_nonzero, cache=False)
    torch.testing.assert_close(logits(model), before, rtol=0, atol=0)  # untouched


# ---------------------------------------------------------------- item 7: adapter names matched exactly


@pytest.mark.parametrize("name", ["0", "layers", "self_attn"])
def test_freezing_a_new_adapter_leaves_other_adapters_trainable(tiny_base_dir, tiny_t2l_nonzero, name):
    model = get_peft_model(tiny_base(tiny_base_dir), LoraConfig(r=8, target_modules=["q_proj", "v_proj"]))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".default." in n for n in trainable)
    load_description_adapter(model, TASK, t2l=tiny_t2l_nonzero, adapter_name=name, cache=False)
    mine = {n for n, p in model.named_parameters() if f"lora_A.{name}." in n or f"lora_B.{name}." in n}
    assert len(mine) == 2 * 2 * 2  # A and B of q and v in 2 layers
    assert not any(p.requires_grad for n, p in model.named_parameters() if n in mine)
    assert trainable == {n for n, p in model.named_parameters() if p.requires_grad}, "another adapter was frozen"


def test_freezing_on_a_transformers_model_matches_the_adapter_name_exactly(tiny_base_dir, tiny_t2l_nonzero):
    model = tiny_base(tiny_base_dir)
    load_description_adapter(model, TASK, t2l=tiny_t2l_nonzero, is_trainable=True, cache=False)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert len(trainable) == 8
    load_description_adapter(model, OTHER, t2l=tiny_t2l_nonzero, adapter_name="0", cache=False)
    assert trainable == {n for n, p in model.named_parameters() if p.requires_grad}


def test_is_trainable_on_a_peft_model_leaves_the_new_adapter_trainable(tiny_base_dir, tiny_t2l_nonzero):
    """PEFT adds the generated adapter with its inference-mode config; is_trainable=True must still mean trainable
    (it stayed frozen), and replacing it in place follows is_trainable both ways."""
    model = get_peft_model(tiny_base(tiny_base_dir), LoraConfig(r=8, target_modules=["q_proj", "v_proj"]))
    load_description_adapter(model, TASK, t2l=tiny_t2l_nonzero, adapter_name="new", is_trainable=True, cache=False)
    new = [p for n, p in model.named_parameters() if ".new." in n]
    assert len(new) == 8 and all(p.requires_grad for p in new)
    load_description_adapter(model, OTHER, t2l=tiny_t2l_nonzero, adapter_name="new", cache=False)  # is_trainable=False
    assert not any(p.requires_grad for p in new) and model.peft_config["new"].inference_mode
    load_description_adapter(model, TASK, t2l=tiny_t2l_nonzero, adapter_name="new", is_trainable=True, cache=False)
    assert all(p.requires_grad for p in new) and not model.peft_config["new"].inference_mode


# ---------------------------------------------------------------- item 8: CLI numbers


@pytest.fixture
def t2l_dir(tmp_path, tiny_base_dir, tiny_encoder_dir):
    out = tmp_path / "t2l"
    assert main(["init", "--base", str(tiny_base_dir), "--out", str(out), "--encoder", str(tiny_encoder_dir),
                 "--latent-size", "16", "--head-in-size", "32"]) == 0
    return out


@pytest.mark.parametrize(
    "args, option",
    [
        (["generate", "A task.", "--batch-size", "-1"], "--batch-size"),
        (["generate", "A task.", "--batch-size", "0"], "--batch-size"),
        (["generate", "A task.", "--batch-size", "2.5"], "--batch-size"),
        (["generate", "A task.", "--max-new-tokens", "0", "--prompt", "Hi"], "--max-new-tokens"),
        (["generate", "A.", "B.", "--weights", "nan", "1"], "--weights"),
        (["eval", "--limit", "0"], "--limit"),
        (["eval", "--generation-limit", "-3"], "--generation-limit"),
        (["eval", "--num-descriptions", "0"], "--num-descriptions"),
        (["eval", "--num-fewshot", "0"], "--num-fewshot"),
        (["eval", "--batch-size", "0"], "--batch-size"),
        (["eval", "--max-gen-toks", "0"], "--max-gen-toks"),
        (["eval", "--threads", "-1"], "--threads"),
        (["eval", "--code-timeout", "0"], "--code-timeout"),
        (["eval", "--code-timeout", "inf"], "--code-timeout"),
        (["init", "--base", "x", "--rank", "0"], "--rank"),
        (["init", "--base", "x", "--alpha", "-2"], "--alpha"),
        (["init", "--base", "x", "--latent-size", "0"], "--latent-size"),
    ],
)
def test_bad_cli_numbers_are_one_line_usage_errors(tmp_path, capsys, args, option):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        main(args + ["--out", str(out)])
    assert exit_info.value.code == 2
    line = _one_line(capsys.readouterr().err)
    assert f"argument {option}" in line and ("1 or more" in line or "number" in line), line
    assert not out.exists()


def test_generate_lora_batch_size_must_be_positive(tiny_t2l):
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match=rf"batch_size must be a whole number of 1 or more, got {bad!r}"):
            tiny_t2l.generate_lora([TASK, OTHER], batch_size=bad)


# ---------------------------------------------------------------- item 10: clear errors, one CLI line


def test_undecodable_argv_description_is_one_clear_line(t2l_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["generate", "\udcff", "--t2l", str(t2l_dir), "--out", str(out)]) == 1  # what $'\xff' becomes
    line = _one_line(capsys.readouterr().err)
    assert "\\udcff" in line and "UTF-8" in line and line.startswith("t2l generate: error: Description 0")
    assert not out.exists()
    with pytest.raises(ValueError, match=r"Description 1 .* lone surrogate.*UTF-8"):  # the API says the same
        T2LModel.from_pretrained(t2l_dir).generate_lora(["Fine.", "bad \udcff text"])


def test_generate_file_that_is_not_utf8_is_one_clear_line(t2l_dir, tmp_path, capsys):
    listing = tmp_path / "tasks.txt"
    listing.write_bytes(b"Solve math.\n\xff\xfe broken\n")
    assert main(["generate", "--file", str(listing), "--t2l", str(t2l_dir), "--out", str(tmp_path / "o")]) == 1
    line = _one_line(capsys.readouterr().err)
    assert str(listing) in line and "not UTF-8" in line


@pytest.mark.parametrize(
    "bad, error, message",
    [
        (b"Solve math.", TypeError, r"The description is bytes .*decode it first"),
        (5, TypeError, r"descriptions must be a string, a list of strings or a task-embedding tensor, got int 5"),
        ([TASK, b"x"], TypeError, r"Description 1 is bytes"),
        ([TASK, None], TypeError, r"Description 1 must be a string, got NoneType"),
        (torch.zeros(1, 1, 32), ValueError, r"has shape \[1, 1, 32\] but this hypernetwork expects 32-d ones, "
                                            r"\[32\] or \[N, 32\]; reshape it"),
        (torch.zeros(2, 16), ValueError, r"has shape \[2, 16\] but this hypernetwork expects 32-d ones"),
        (torch.zeros(32, dtype=torch.long), TypeError, r"must hold floats"),
    ],
)
def test_generate_lora_rejects_bad_inputs_by_name(tiny_t2l, bad, error, message):
    with pytest.raises(error, match=message):
        tiny_t2l.generate_lora(bad)


def test_non_finite_task_embedding_is_blamed_on_the_input_not_the_weights(tiny_t2l):
    embeddings = torch.randn(3, 32)
    embeddings[1, 4] = float("nan")
    embeddings[2, 0] = float("inf")
    with pytest.raises(ValueError, match=r"task embedding has NaN or inf values \(rows \[1, 2\]\); the input") as info:
        tiny_t2l.generate_lora(embeddings)
    assert "weights" not in str(info.value)


def test_entry_points_before_generate_lora_check_inputs_too(tiny_base_dir, tiny_t2l_nonzero):
    from text2lora import TextLoraConfig

    with pytest.raises(TypeError, match="The description is bytes"):
        load_description_adapter(tiny_base(tiny_base_dir), b"Solve math.", t2l=tiny_t2l_nonzero)  # default cache on
    with pytest.raises(TypeError, match="The description is bytes"):
        TextLoraConfig(description=b"Solve math.", t2l=tiny_t2l_nonzero)


def test_hypernetwork_config_with_wrong_shapes_names_the_folder(t2l_dir, tmp_path, capsys):
    config = json.loads((t2l_dir / "config.json").read_text())
    config["latent_size"] = 32  # saved with 16
    (t2l_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=rf"weights in '{t2l_dir}' do not fit its config.json: \d+ tensor\(s\)"):
        T2LModel.from_pretrained(t2l_dir)
    assert main(["generate", "A task.", "--t2l", str(t2l_dir), "--out", str(tmp_path / "o")]) == 1
    line = _one_line(capsys.readouterr().err)
    assert str(t2l_dir) in line and "task_projection.weight [8, 32] (config: [16, 32])" in line


def test_hypernetwork_folder_without_config_names_the_folder(t2l_dir, tmp_path, capsys):
    (t2l_dir / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match=rf"'{t2l_dir}' has no config.json"):
        T2LModel.from_pretrained(t2l_dir)
    assert main(["info", str(t2l_dir)]) == 1
    assert "has no config.json" in _one_line(capsys.readouterr().err)


def test_folder_of_another_model_is_not_a_hypernetwork(tiny_base_dir):
    with pytest.raises(ValueError, match=r"config.json' is not a usable hypernetwork config \(its model_type is 'llama'"):
        T2LModel.from_pretrained(tiny_base_dir)


def test_missing_relative_t2l_path_says_no_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["generate", "A task.", "--t2l", "./typo", "--out", str(tmp_path / "o")]) == 1
    line = _one_line(capsys.readouterr().err)
    assert "No hypernetwork folder at './typo'" in line and "Repo id" not in line


def test_python_tag_in_reference_args_yaml_is_a_clear_error(tmp_path, capsys):
    from text2lora.convert_reference_checkpoint import load_reference_checkpoint

    folder = tmp_path / "run"
    folder.mkdir()
    torch.save({"task_encoder.mlp.0.weight": torch.zeros(2, 2)}, folder / "hypermod.pt")
    marker = tmp_path / "ran"
    (folder / "args.yaml").write_text(f"lr: 1.0e-4\nx: !!python/object/apply:os.system ['touch {marker}']\n")
    (folder / "adapter_config.json").write_text("{}")
    with pytest.raises(ValueError, match=r"args.yaml is not plain YAML training arguments .*!!python/object"):
        load_reference_checkpoint(folder)
    assert main(["convert-reference", str(folder), "--out", str(tmp_path / "out")]) == 1
    line = _one_line(capsys.readouterr().err)
    assert str(folder / "args.yaml") in line
    assert not marker.exists()


def test_unexpected_errors_are_one_line_and_debug_shows_the_traceback(t2l_dir, monkeypatch, capsys):
    import text2lora.checkpoints as checkpoints

    def broken(*args, **kwargs):
        raise RuntimeError("something broke\nsee the report above")

    monkeypatch.setattr(checkpoints, "load_hypernetwork", broken)
    assert main(["info", str(t2l_dir)]) == 1
    line = _one_line(capsys.readouterr().err)
    assert "RuntimeError: something broke see the report above" in line and "--debug" in line
    with pytest.raises(RuntimeError, match="something broke"):
        main(["info", str(t2l_dir), "--debug"])
    with pytest.raises(RuntimeError, match="something broke"):
        main(["--debug", "info", str(t2l_dir)])
