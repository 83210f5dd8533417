"""Issue 14: remote code only with the caller's consent, hypernetworks reloaded when their files change, no silent
truncation of long descriptions, and a Space that survives an unwritable adapter cache."""

from __future__ import annotations

import copy
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import uuid
import warnings
from pathlib import Path

import pytest
import torch

from text2lora import load_description_adapter
from text2lora import T2LModel
from text2lora.checkpoints import load_hypernetwork
from text2lora.cli import main

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------- remote code


def remote_code_encoder(tiny_encoder_dir: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the tiny encoder whose config maps AutoModel to a Python file in the folder; importing that file
    writes the returned marker file, so a test can see whether the folder's code ran."""
    folder = tmp_path / f"remote_encoder_{uuid.uuid4().hex[:8]}"
    shutil.copytree(tiny_encoder_dir, folder)
    marker = tmp_path / "remote-code-ran"
    (folder / "modeling_marker.py").write_text(
        "from pathlib import Path\n"
        "from transformers import BertModel\n\n"
        f"Path({str(marker)!r}).write_text('ran')\n\n\n"
        "class MarkerModel(BertModel):\n"
        "    pass\n"
    )
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_marker.MarkerModel"}
    (folder / "config.json").write_text(json.dumps(config))
    return folder, marker


@pytest.fixture
def remote_t2l(tiny_config, tiny_encoder_dir, tmp_path) -> tuple[Path, Path, str]:
    """(hypernetwork folder whose config asks for encoder remote code, the marker file, the encoder's path)."""
    encoder, marker = remote_code_encoder(tiny_encoder_dir, tmp_path)
    config = copy.deepcopy(tiny_config)
    config.encoder_name_or_path = str(encoder)
    config.encoder_trust_remote_code = True
    torch.manual_seed(0)
    folder = tmp_path / "t2l_remote"
    T2LModel(config).save_pretrained(folder)
    return folder, marker, str(encoder)


def test_config_asking_for_remote_code_is_refused_without_consent(remote_t2l):
    folder, marker, encoder = remote_t2l
    t2l = load_hypernetwork(str(folder))
    with pytest.raises(ValueError, match="runs Python code from its model folder") as err:
        t2l.generate_lora("Translate English to French.")
    message = str(err.value)
    assert encoder in message and "trust_remote_code=True" in message and "--trust-remote-code" in message
    assert not marker.exists()  # nothing from the encoder folder was imported


def test_remote_code_runs_when_the_caller_consents(remote_t2l):
    folder, marker, _ = remote_t2l
    adapter = load_hypernetwork(str(folder), trust_remote_code=True).generate_lora("Translate English to French.")
    assert marker.read_text() == "ran" and adapter.num_parameters > 0
    # the consenting load is a separate model: a later caller without consent is still refused
    with pytest.raises(ValueError, match="trust_remote_code=True"):
        load_hypernetwork(str(folder)).generate_lora("Translate English to Spanish.")


def test_description_encoder_from_config_does_not_grant(remote_t2l, tiny_config):
    from text2lora import T2LConfig
    from text2lora.encoder import DescriptionEncoder

    folder, marker, _ = remote_t2l
    config = T2LConfig.from_pretrained(folder)
    refused = DescriptionEncoder.from_config(config)
    assert refused.needs_remote_code and not refused.trust_remote_code
    with pytest.raises(ValueError, match="trust_remote_code=True"):
        refused.encode("Count words.")
    assert not marker.exists()
    assert DescriptionEncoder.from_config(config, trust_remote_code=True).encode("Count words.").shape == (32,)
    assert marker.exists()


def test_cli_generate_needs_the_flag(remote_t2l, tmp_path, capsys):
    folder, marker, encoder = remote_t2l
    args = ["generate", "Summarise news articles.", "--t2l", str(folder), "--no-cache"]
    assert main(args + ["--out", str(tmp_path / "refused")]) == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith("t2l generate: error: The description encoder")
    assert encoder in errors[0] and "--trust-remote-code" in errors[0]
    assert not marker.exists() and not (tmp_path / "refused").exists()
    assert main(args + ["--out", str(tmp_path / "allowed"), "--trust-remote-code"]) == 0
    assert marker.exists() and (tmp_path / "allowed" / "adapter_model.safetensors").is_file()


def test_info_says_whether_a_checkpoint_needs_remote_code(remote_t2l, tiny_t2l, tmp_path, capsys):
    folder, marker, encoder = remote_t2l
    assert main(["info", str(folder)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.split() == ["encoder", encoder] for line in lines)
    assert any(line.startswith("needs trust_remote_code") and " yes " in line for line in lines)
    assert main(["info", str(folder), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["needs_trust_remote_code"] is True
    tiny_t2l.save_pretrained(tmp_path / "plain")
    assert main(["info", str(tmp_path / "plain")]) == 0
    assert any(
        line.split() == ["needs", "trust_remote_code", "no"] for line in capsys.readouterr().out.splitlines()
    )
    assert not marker.exists()  # inspecting never loads the encoder


def test_integrations_pass_consent_through(remote_t2l, tiny_base_dir):
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from text2lora import TextLoraConfig, initialize_text_lora_weights

    folder, marker, _ = remote_t2l
    base = AutoModelForCausalLM.from_pretrained(tiny_base_dir)
    with pytest.raises(ValueError, match="trust_remote_code=True"):
        load_description_adapter(base, "Write haiku.", t2l=str(folder), cache=False)
    with pytest.raises(ValueError, match="trust_remote_code=True"):
        config = TextLoraConfig(description="Haiku.", t2l=str(folder))
        initialize_text_lora_weights(get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_base_dir), config))
    assert not marker.exists()

    adapter = load_description_adapter(base, "Write haiku.", t2l=str(folder), cache=False, trust_remote_code=True)
    assert adapter.num_parameters > 0 and marker.exists()
    config = TextLoraConfig(description="Write haiku.", t2l=str(folder), trust_remote_code=True)
    initialize_text_lora_weights(get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_base_dir), config))
    assert "trust_remote_code" not in config.to_dict()  # the saved adapter config stays a plain LoRA config


# ---------------------------------------------------------------------------------------------- stale hypernetworks


def _set_heads(model: T2LModel, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for head in model.heads.values():
            head.weight.copy_(torch.randn(head.weight.shape, generator=generator) * 0.05)


def test_a_folder_saved_again_is_loaded_again(tiny_config, tmp_path):
    folder = tmp_path / "t2l"
    first = T2LModel(tiny_config).eval()
    _set_heads(first, 1)
    first.save_pretrained(folder)
    weights = folder / "model.safetensors"
    before = weights.stat()
    loaded = load_hypernetwork(str(folder))
    assert load_hypernetwork(str(folder)) is loaded  # unchanged files: the same model, not a reload
    name = next(iter(first.heads))
    torch.testing.assert_close(loaded.heads[name].weight, first.heads[name].weight)

    second = T2LModel(tiny_config).eval()
    _set_heads(second, 2)
    second.save_pretrained(folder)
    os.utime(weights, ns=(before.st_atime_ns, before.st_mtime_ns))  # same size and mtime as the first save
    after = weights.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)

    reloaded = load_hypernetwork(str(folder))
    torch.testing.assert_close(reloaded.heads[name].weight, second.heads[name].weight)
    assert not torch.equal(reloaded.heads[name].weight, first.heads[name].weight)


def test_text_lora_config_sees_a_resaved_folder(tiny_config, tiny_base_dir, tmp_path):
    from peft import get_peft_model, get_peft_model_state_dict
    from transformers import AutoModelForCausalLM

    from text2lora import TextLoraConfig, initialize_text_lora_weights

    folder = tmp_path / "t2l"
    for seed in (1, 2):
        model = T2LModel(tiny_config).eval()
        _set_heads(model, seed)
        model.save_pretrained(folder)
        config = TextLoraConfig(description="Sort words.", t2l=str(folder))
        peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_base_dir), config)
        initialize_text_lora_weights(peft_model)
        written = get_peft_model_state_dict(peft_model)
        for key, value in model.generate_lora("Sort words.").state_dict.items():
            torch.testing.assert_close(written[key], value)


# ---------------------------------------------------------------------------------------------- truncation


def _long(ending: str) -> str:
    return "Answer questions about the weather in the given city. " * 8 + ending


def test_long_descriptions_warn_with_the_number_of_dropped_tokens(tiny_t2l_nonzero):
    encoder = tiny_t2l_nonzero.description_encoder
    text = _long("Always answer in French.")
    tokens = len(encoder.model.tokenizer(encoder.format(text))["input_ids"])
    limit = encoder.model.max_seq_length
    assert tokens > limit == 64
    with pytest.warns(UserWarning, match=rf"{tokens} tokens.*at most {limit}.*last {tokens - limit} tokens"):
        a = tiny_t2l_nonzero.generate_lora(text)
    with pytest.warns(UserWarning, match="last .* tokens are ignored"):
        b = tiny_t2l_nonzero.generate_lora(_long("Always answer in German."))
    # what the warning is about: the two descriptions differ only after the limit, and give the same adapter
    for key, value in a.state_dict.items():
        torch.testing.assert_close(b.state_dict[key], value)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tiny_t2l_nonzero.generate_lora("Answer in French.")  # a short description: no warning


def test_a_batch_of_long_descriptions_is_reported_once(tiny_encoder_dir):
    from text2lora.encoder import DescriptionEncoder

    encoder = DescriptionEncoder(str(tiny_encoder_dir))
    with pytest.warns(UserWarning) as record:
        encoder.encode([_long("One."), "Short one.", _long("Two."), _long("Three.")])
    messages = [str(w.message) for w in record if "tokens" in str(w.message)]
    assert len(messages) == 1 and messages[0].startswith("3 descriptions are longer than the 64 tokens")
    assert encoder.truncation("Short one.") is None
    cut = encoder.truncation(_long("One."))
    assert cut.limit == 64 and cut.dropped == cut.tokens - 64 > 0


def test_cli_generate_shows_the_truncation_warning(tiny_t2l_nonzero, tmp_path):
    tiny_t2l_nonzero.save_pretrained(tmp_path / "t2l")
    out = tmp_path / "adapter"
    command = [sys.executable, "-m", "text2lora", "generate", _long("In French."), "--t2l", str(tmp_path / "t2l")]
    done = subprocess.run(
        command + ["--out", str(out), "--no-cache"], capture_output=True, text=True, env={**os.environ}, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "DescriptionTruncatedWarning: The description is too long: 85 tokens" in done.stderr
    assert "its last 21 tokens are ignored" in done.stderr


# ---------------------------------------------------------------------------------------------- the Space


@pytest.fixture(scope="module")
def app():
    spec = importlib.util.spec_from_file_location("text2lora_space_app_consent", ROOT / "spaces_app" / "app.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def test_space_refuses_a_hypernetwork_that_asks_for_remote_code(app, tiny_t2l_nonzero, remote_t2l, tmp_path):
    folder, marker, encoder = remote_t2l
    space = app.Text2LoraSpace(tiny_t2l_nonzero, adapter_cache=False)
    with pytest.raises(app.SpaceError, match="never runs such code") as err:
        space.add_hypernetwork(str(folder))
    assert encoder in str(err.value) and str(folder) not in space._hypernetworks
    with pytest.raises(app.SpaceError, match="never runs such code"):
        app.Text2LoraSpace(str(folder), adapter_cache=False)  # nor as the app's own hypernetwork
    assert not marker.exists()


def test_space_shares_the_encoder_truncation_message(app, tiny_t2l_nonzero):
    space = app.Text2LoraSpace(tiny_t2l_nonzero, adapter_cache=False)
    text = _long("In French.")
    expected = tiny_t2l_nonzero.description_encoder.truncation(text).message()
    with pytest.raises(app.SpaceError) as err:
        space.adapter_request(space.default_hypernetwork, text)
    assert str(err.value) == expected and "tokens are ignored" in expected


def test_space_with_an_unwritable_adapter_cache_still_generates(app, tiny_t2l_nonzero, tmp_path, monkeypatch, caplog):
    from text2lora.cache import AdapterCache

    writes = []

    def refuse(self, key, adapter, dtype=None):
        writes.append(key)
        raise PermissionError(13, "Permission denied", str(self.cache_dir / key[:2]))

    monkeypatch.setattr(AdapterCache, "put", refuse)
    space = app.Text2LoraSpace(tiny_t2l_nonzero, adapter_cache=tmp_path / "cache")
    with caplog.at_level(logging.WARNING):
        result, _ = space.generate(space.adapter_request(space.default_hypernetwork, "Sort words alphabetically."))
    assert result.source == "hypernetwork" and result.zip_path.is_file()
    expected = tiny_t2l_nonzero.generate_lora("Sort words alphabetically.")
    for key, value in expected.state_dict.items():
        torch.testing.assert_close(result.adapter.state_dict[key], value)
    assert "cannot be written" in space.cache_warning and "Permission denied" in space.cache_warning
    assert any("cannot be written" in r.getMessage() for r in caplog.records)
    other, _ = space.generate(space.adapter_request(space.default_hypernetwork, "Count the vowels."))
    assert other.source == "hypernetwork" and len(writes) == 1  # tried once, then the app goes on without writing
