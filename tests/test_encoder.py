"""DescriptionEncoder: formatting rules, normalisation and scale, caching, clear errors when offline."""

import math

import pytest
import torch

from text2lora import DescriptionEncoder
from text2lora.encoder import PACKAGED_ENCODERS, format_description
from text2lora.packaged import PackagedAsset


@pytest.mark.parametrize(
    "text, expected",
    [("Translate to French", "Translate to French."), ("  Count legs?  ", "Count legs?"), ("Sum 2+2", "Sum 2+2")],
)
def test_full_stop_rule(text, expected):
    assert format_description(text) == expected


def test_embeddings_are_normalised_and_scaled(tiny_encoder_dir):
    encoder = DescriptionEncoder(str(tiny_encoder_dir))
    emb = encoder.encode(["Translate to French.", "Count the legs of animals."])
    assert emb.shape == (2, 32) and emb.dtype == torch.float32
    torch.testing.assert_close(emb.norm(dim=-1), torch.full((2,), math.sqrt(32)))
    raw = DescriptionEncoder(str(tiny_encoder_dir), normalize=True, scale=1.0).encode("Translate to French.")
    torch.testing.assert_close(emb[0], raw * math.sqrt(32))


def test_period_rule_changes_the_input(tiny_encoder_dir):
    with_period = DescriptionEncoder(str(tiny_encoder_dir), add_period=True)
    without = DescriptionEncoder(str(tiny_encoder_dir), add_period=False)
    assert torch.equal(with_period.encode("Translate to French"), without.encode("Translate to French."))
    assert not torch.equal(with_period.encode("Translate to French"), without.encode("Translate to French"))


def test_cache_avoids_recomputing(tiny_encoder_dir):
    encoder = DescriptionEncoder(str(tiny_encoder_dir), cache_size=2)
    calls = []
    original = encoder.model.encode

    def counting(texts, **kwargs):
        calls.append(list(texts))
        return original(texts, **kwargs)

    encoder.model.encode = counting
    first = encoder.encode(["a task.", "b task.", "a task."])
    again = encoder.encode("a task.")
    assert calls == [["a task.", "b task."]]
    torch.testing.assert_close(first[0], again)
    encoder.encode(["c task.", "d task."])  # evicts a and b (cache_size=2)
    encoder.encode("a task.")
    assert calls[-1] == ["a task."]


def test_missing_packaged_encoder_names_the_package(monkeypatch):
    monkeypatch.setitem(
        PACKAGED_ENCODERS,
        "acme/offline-encoder",
        PackagedAsset(package="not_installed_pkg_xyz", relative_path="model", pip_requirement="pip install acme-encoder"),
    )
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError, match="pip install acme-encoder"):
        DescriptionEncoder("acme/offline-encoder").encode("A task.")


def test_unknown_encoder_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError, match="Could not load the description encoder 'acme/nothing-here'"):
        DescriptionEncoder("acme/nothing-here").encode("A task.")


@pytest.mark.integration
def test_packaged_minilm_resolves_offline():
    encoder = DescriptionEncoder("sentence-transformers/all-MiniLM-L6-v2")
    emb = encoder.encode(["Solve math word problems.", "Solve arithmetic word problems.", "Write a poem about cats."])
    assert emb.shape == (3, 384)
    cos = torch.nn.functional.cosine_similarity
    assert cos(emb[0], emb[1], dim=0) > cos(emb[0], emb[2], dim=0)


def test_encode_on_a_given_device_moves_the_encoder_once(tiny_encoder_dir):
    texts = ["Translate to French.", "Count the legs of animals."]
    expected = DescriptionEncoder(str(tiny_encoder_dir)).encode(texts)
    encoder = DescriptionEncoder(str(tiny_encoder_dir))
    moves = []
    original_to = encoder.model.to
    encoder.model.to = lambda device: moves.append(str(device)) or original_to(device)

    emb = encoder.encode(texts, device=torch.device("cpu", 0))
    encoder.clear_cache()
    again = encoder.encode(texts, device="cpu:0")

    assert moves == ["cpu:0"] and encoder.device == "cpu:0"  # moved once, then it stays there
    assert emb.device.type == "cpu" and emb.dtype == torch.float32  # results always come back as CPU float32
    torch.testing.assert_close(emb, expected)
    torch.testing.assert_close(again, expected)


def test_trainers_embed_descriptions_on_their_accelerator():
    from types import SimpleNamespace

    from text2lora.training.trainer_base import encoding_device

    assert encoding_device(SimpleNamespace(device=torch.device("cpu"))) is None
    assert encoding_device(SimpleNamespace(device=torch.device("cuda", 1))) == torch.device("cuda", 1)


TEXTS = [
    "Answer grade-school science questions by picking the correct option.",
    "x",
    "Count the legs of the animals listed in the question and answer with a number.",
    "Summarise news articles in one sentence. " * 40,  # longer than the encoder reads: truncated the same way
    "  Classify the sentiment of a movie review as positive or negative.  ",
]


def _classic_folder(tiny_encoder_dir, tmp_path):
    """The tiny encoder in the classic sentence-transformers folder format (as most Hub encoders are saved)."""
    import json
    import shutil

    folder = tmp_path / "classic"
    shutil.copytree(tiny_encoder_dir, folder, ignore=shutil.ignore_patterns("*_Pooling", "*_Normalize"))
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]))  # fmt: skip
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 16, "do_lower_case": False}))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": 32, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False,
    }))  # fmt: skip
    (folder / "2_Normalize").mkdir()
    return folder


@pytest.mark.parametrize("which", ["tiny", "packaged"])
def test_plain_encoder_equals_sentence_transformers_bit_for_bit(which, tiny_encoder_dir, tmp_path):
    """A classic Transformer -> Pooling -> Normalize folder read with plain transformers gives exactly what
    `SentenceTransformer.encode` gives for each text alone (truncation to the encoder's limit included)."""
    from sentence_transformers import SentenceTransformer

    from text2lora.integrations.sentence_transformers import PlainSentenceEncoder

    if which == "tiny":
        folder = _classic_folder(tiny_encoder_dir, tmp_path)
    else:
        folder = PACKAGED_ENCODERS["sentence-transformers/all-MiniLM-L6-v2"].path()
    if folder is None:
        pytest.skip("the packaged encoder is not installed")
    plain = PlainSentenceEncoder.from_folder(folder)
    assert plain is not None
    reference = SentenceTransformer(str(folder), device="cpu")
    assert plain.max_seq_length == reference.max_seq_length
    assert plain.get_embedding_dimension() == reference.get_embedding_dimension()
    ours = plain.encode(TEXTS)
    for text, row in zip(TEXTS, ours):
        assert torch.equal(row, reference.encode([text], convert_to_tensor=True)[0]), text
    cls = PlainSentenceEncoder.from_folder(folder, pooling="cls").encode(TEXTS[:1])[0]
    assert not torch.equal(cls, ours[0])
    assert PlainSentenceEncoder.from_folder(folder, pooling="max") is None  # left to sentence-transformers


def test_folders_saved_by_sentence_transformers_6_are_left_to_it(tiny_encoder_dir):
    from text2lora.integrations.sentence_transformers import PlainSentenceEncoder

    assert PlainSentenceEncoder.from_folder(tiny_encoder_dir) is None


def test_a_description_embeds_the_same_whatever_is_encoded_with_it():
    """Through sentence-transformers' batched, padded encode this fails (batch of 32: another embedding)."""
    folder = "sentence-transformers/all-MiniLM-L6-v2"
    if PACKAGED_ENCODERS[folder].path() is None:
        pytest.skip("the packaged encoder is not installed")
    alone = DescriptionEncoder(folder).encode(TEXTS[0])
    for batch_size in (1, 2, 32):
        together = DescriptionEncoder(folder).encode(TEXTS, batch_size=batch_size)
        assert torch.equal(together[0], alone)


def test_the_packaged_encoder_loads_without_sentence_transformers():
    if PACKAGED_ENCODERS["sentence-transformers/all-MiniLM-L6-v2"].path() is None:
        pytest.skip("the packaged encoder is not installed")
    import subprocess
    import sys

    code = (
        "import sys; from text2lora import DescriptionEncoder; "
        "e = DescriptionEncoder('sentence-transformers/all-MiniLM-L6-v2').encode('Count legs.'); "
        "print(tuple(e.shape), 'sentence_transformers' in sys.modules, 'sklearn' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["(384,)", "False", "False"]
