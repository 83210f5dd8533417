"""Content hashes that key saved evaluation runs and loaded hypernetworks (`text2lora.fingerprints`)."""

from __future__ import annotations

import os
import time

import torch

from text2lora.fingerprints import (
    base_model_weights,
    file_digest,
    files_fingerprint,
    tensors_fingerprint,
    tokenizer_fingerprint,
)


def test_a_wrapped_base_model_has_the_bare_models_fingerprint(tiny_base_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    bare = AutoModelForCausalLM.from_pretrained(tiny_base_dir)
    expected = tensors_fingerprint(base_model_weights(bare))
    assert set(base_model_weights(bare)) == set(bare.state_dict())

    wrapped = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_base_dir),
        LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    )
    weights = base_model_weights(wrapped)
    assert set(weights) == set(bare.state_dict())  # no lora_*, no .base_layer, no base_model.model. prefix
    assert tensors_fingerprint(weights) == expected

    with torch.no_grad():
        next(p for n, p in wrapped.named_parameters() if "q_proj.base_layer" in n).add_(1e-3)
    assert tensors_fingerprint(base_model_weights(wrapped)) != expected  # the base weights themselves count


def test_tokenizer_fingerprint_follows_the_chat_template(tiny_tokenizer_dir):
    from transformers import AutoTokenizer

    first = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    second = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    assert tokenizer_fingerprint(first) == tokenizer_fingerprint(second)
    second.chat_template = (second.chat_template or "") + "{{ '\n' }}"
    assert tokenizer_fingerprint(first) != tokenizer_fingerprint(second)


def test_file_digest_sees_a_rewrite_that_keeps_size_and_mtime(tmp_path):
    path = tmp_path / "weights.safetensors"
    path.write_bytes(b"a" * 64)
    before = path.stat()
    first = file_digest(path)
    time.sleep(0.02)  # past one clock tick: older kernels advance ctime once per tick
    path.write_bytes(b"b" * 64)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size and path.stat().st_mtime_ns == before.st_mtime_ns
    assert file_digest(path) != first


def test_files_fingerprint_reads_through_links_and_names_what_it_hashes(tmp_path):
    blobs, snapshot, copy = tmp_path / "blobs", tmp_path / "snapshot", tmp_path / "copy"
    for folder in (blobs, snapshot, copy):
        folder.mkdir()
    (blobs / "1").write_text('{"r": 2}')
    (blobs / "2").write_bytes(b"\0" * 32)
    (snapshot / "adapter_config.json").symlink_to(blobs / "1")  # as a Hub snapshot links to its blobs
    (snapshot / "adapter_model.safetensors").symlink_to(blobs / "2")
    (copy / "adapter_config.json").write_text('{"r": 2}')
    (copy / "adapter_model.safetensors").write_bytes(b"\0" * 32)
    names = ("adapter_config.json", "adapter_model.safetensors")
    assert files_fingerprint(snapshot, names) == files_fingerprint(copy, names)
    (copy / "adapter_model.safetensors").rename(copy / "other.safetensors")  # same bytes under another name
    (copy / "adapter_model.safetensors").write_bytes(b"\0" * 32)
    assert files_fingerprint(copy, ("adapter_config.json", "other.safetensors")) != files_fingerprint(copy, names)


def test_only_peft_renaming_is_undone():
    model = torch.nn.Module()
    model.base_layers = torch.nn.ModuleList([torch.nn.Linear(2, 2)])  # a model's own name, not PEFT's .base_layer
    assert set(base_model_weights(model)) == {"base_layers.0.weight", "base_layers.0.bias"}
