"""`t2l generate --prompt` and `text2lora.compare`: base and adapted answers, on the tiny models."""

import pytest
import torch
from peft import PeftModel
from peft.tuners.tuners_utils import BaseTunerLayer

from text2lora import load_base_model
from text2lora.cli import main
from text2lora.compare import answer, compare_answers

PROMPT = "What is two plus two?"
TOKENS = 12


def _one(adapters):
    return adapters[0] if isinstance(adapters, list) else adapters


@pytest.fixture
def nonzero_t2l_dir(tmp_path, tiny_t2l_nonzero):
    path = tmp_path / "t2l_nonzero"
    tiny_t2l_nonzero.save_pretrained(path)
    return path


@pytest.fixture
def adapter_dirs(tmp_path, tiny_t2l_nonzero, tiny_t2l):
    """A non-zero adapter and a zero one (untrained L hypernetwork: B = 0) for the same description."""
    nonzero, zero = tmp_path / "nonzero", tmp_path / "zero"
    _one(tiny_t2l_nonzero.generate_lora("Translate English to French.")).save_pretrained(nonzero)
    zero_adapter = _one(tiny_t2l.generate_lora("Translate English to French."))
    assert all(float(v.abs().max()) == 0 for k, v in zero_adapter.state_dict.items() if "lora_B" in k)
    zero_adapter.save_pretrained(zero)
    return nonzero, zero


def _logits(model, tokenizer):
    ids = tokenizer("two plus two", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return model(ids).logits


def _independent_answers(base_dir, adapter_dir, prompt=PROMPT, tokens=TOKENS):
    """The same answers computed without `compare_answers`: a fresh base model, and PEFT's own PeftModel."""
    model, tokenizer = load_base_model(str(base_dir))
    base = answer(model.eval(), tokenizer, prompt, tokens)
    adapted_model = PeftModel.from_pretrained(model, str(adapter_dir)).eval()
    return base, answer(adapted_model, tokenizer, prompt, tokens)


def test_compare_answers_uses_the_adapter_and_leaves_the_model_bare(tiny_base_dir, adapter_dirs):
    nonzero, zero = adapter_dirs
    model, tokenizer = load_base_model(str(tiny_base_dir))
    model.eval()
    keys_before = set(model.state_dict())
    logits_before = _logits(model, tokenizer)

    base, adapted = compare_answers(model, tokenizer, nonzero, PROMPT, TOKENS)

    assert base and adapted and base != adapted
    assert (base, adapted) == _independent_answers(tiny_base_dir, nonzero)
    # The model is back to the bare base model: no adapter config, no LoRA layers, same outputs.
    assert not getattr(model, "_hf_peft_config_loaded", False) and not hasattr(model, "peft_config")
    assert not any(isinstance(m, BaseTunerLayer) for m in model.modules())
    assert set(model.state_dict()) == keys_before
    assert torch.equal(_logits(model, tokenizer), logits_before)
    assert not model.training

    # A zero adapter (B = 0) answers exactly as the base model; the base answer is reproducible.
    assert compare_answers(model, tokenizer, zero, PROMPT, TOKENS) == (base, base)


def test_compare_answers_reuses_a_given_base_answer_and_keeps_existing_adapters(tiny_base_dir, adapter_dirs):
    nonzero, zero = adapter_dirs
    model, tokenizer = load_base_model(str(tiny_base_dir))
    model.eval()
    assert compare_answers(model, tokenizer, nonzero, PROMPT, TOKENS, base_answer="given").base == "given"

    # With an adapter already loaded: the base answer has it disabled, and it is active again afterwards.
    expected_base, expected_adapted = _independent_answers(tiny_base_dir, nonzero)
    model.load_adapter(str(zero), adapter_name="mine")
    result = compare_answers(model, tokenizer, nonzero, PROMPT, TOKENS)
    assert result == (expected_base, expected_adapted)
    assert list(model.peft_config) == ["mine"] and model.active_adapters() == ["mine"]


def test_compare_answers_rejects_an_empty_prompt(tiny_base_dir, adapter_dirs):
    model, tokenizer = load_base_model(str(tiny_base_dir))
    with pytest.raises(ValueError, match="prompt is empty"):
        compare_answers(model, tokenizer, adapter_dirs[0], "   ", TOKENS)
    assert not hasattr(model, "peft_config")


def test_cli_prints_base_and_adapted_answers(nonzero_t2l_dir, tiny_base_dir, tmp_path, capsys):
    out = tmp_path / "adapter"
    args = ["generate", "Translate English to French.", "--t2l", str(nonzero_t2l_dir), "--out", str(out)]
    assert main(args + ["--prompt", PROMPT, "--max-new-tokens", str(TOKENS)]) == 0
    printed = capsys.readouterr().out

    base, adapted = _independent_answers(tiny_base_dir, out)
    assert base != adapted
    assert f"wrote {out}" in printed and PROMPT in printed and "'Translate English to French.'" in printed
    assert f"--- base model:\n{base}\n--- with the adapter:\n{adapted}\n" in printed

    # Without --prompt nothing is answered.
    assert main(args + ["--overwrite"]) == 0
    assert "--- base model:" not in capsys.readouterr().out


def test_cli_answers_once_per_adapter(nonzero_t2l_dir, tiny_base_dir, tmp_path, capsys):
    out = tmp_path / "many"
    descriptions = ["Translate English to French.", "Count the legs of animals."]
    args = ["generate", *descriptions, "--t2l", str(nonzero_t2l_dir), "--out", str(out), "--prompt", PROMPT]
    assert main(args + ["--max-new-tokens", str(TOKENS)]) == 0
    printed = capsys.readouterr().out

    folders = [out / "000-translate-english-to-french", out / "001-count-the-legs-of-animals"]
    assert printed.count("--- base model:") == 2 and printed.count("--- with the adapter:") == 2
    for description, folder in zip(descriptions, folders):
        base, adapted = _independent_answers(tiny_base_dir, folder)
        block = f"=== {description!r}  ({folder})\n--- base model:\n{base}\n--- with the adapter:\n{adapted}\n"
        assert block in printed


def test_cli_mixed_adapter_names_its_weights(nonzero_t2l_dir, tiny_base_dir, tmp_path, capsys):
    out = tmp_path / "mixed"
    args = ["generate", "Translate to French.", "Count legs.", "--weights", "0.7", "0.3", "--t2l", str(nonzero_t2l_dir)]
    assert main(args + ["--out", str(out), "--prompt", PROMPT, "--max-new-tokens", str(TOKENS)]) == 0
    printed = capsys.readouterr().out
    base, adapted = _independent_answers(tiny_base_dir, out)
    assert "=== 0.7 x 'Translate to French.' + 0.3 x 'Count legs.'" in printed
    assert f"--- base model:\n{base}\n--- with the adapter:\n{adapted}\n" in printed


@pytest.mark.parametrize("prompt", ["", "   \n"])
def test_cli_empty_prompt_is_an_error_before_anything_is_written(nonzero_t2l_dir, tmp_path, capsys, prompt):
    out = tmp_path / "never"
    args = ["generate", "A task.", "--t2l", str(nonzero_t2l_dir), "--out", str(out), "--prompt", prompt]
    assert main(args) == 1
    captured = capsys.readouterr()
    assert "prompt is empty" in captured.err and "Traceback" not in captured.err
    assert not out.exists()


def test_cli_rejects_a_non_positive_token_limit(nonzero_t2l_dir, tmp_path, capsys):
    out = tmp_path / "never"
    args = ["generate", "A task.", "--t2l", str(nonzero_t2l_dir), "--out", str(out), "--prompt", PROMPT]
    with pytest.raises(SystemExit) as exit_info:  # a usage error, caught by argparse before anything loads
        main(args + ["--max-new-tokens", "0"])
    assert exit_info.value.code == 2
    assert "--max-new-tokens" in capsys.readouterr().err
    assert not out.exists()


def test_cli_prompt_works_when_the_adapter_comes_from_the_cache(nonzero_t2l_dir, tiny_base_dir, tmp_path, capsys):
    out = tmp_path / "cached"
    args = ["generate", "Write haiku about rain.", "--t2l", str(nonzero_t2l_dir), "--out", str(out)]
    args += ["--prompt", PROMPT, "--max-new-tokens", str(TOKENS)]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert main(args + ["--overwrite"]) == 0  # no hypernetwork loaded: the base model comes from the adapter config
    second = capsys.readouterr().out
    assert "from the adapter cache" in second
    base, adapted = _independent_answers(tiny_base_dir, out)
    expected = f"--- base model:\n{base}\n--- with the adapter:\n{adapted}\n"
    assert expected in first and expected in second


def test_answer_streams_the_same_text_it_returns(tiny_base_dir):
    from transformers.generation.streamers import BaseStreamer

    class Collect(BaseStreamer):
        def __init__(self):
            self.chunks = []

        def put(self, value):
            self.chunks.append(value.reshape(-1).tolist())

        def end(self):
            self.chunks.append("end")

    model, tokenizer = load_base_model(str(tiny_base_dir))
    streamer = Collect()
    text = answer(model.eval(), tokenizer, PROMPT, TOKENS, streamer=streamer)

    assert streamer.chunks[-1] == "end"
    prompt_ids, *new_ids = streamer.chunks[:-1]  # generate streams the prompt first, then one token per step
    assert len(prompt_ids) > 1 and len(new_ids) == TOKENS
    streamed = tokenizer.decode([ids[0] for ids in new_ids], skip_special_tokens=True).strip()
    assert text == streamed == answer(model, tokenizer, PROMPT, TOKENS)
