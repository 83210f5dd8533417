"""AdapterCache: keys, hits without a forward pass, LRU eviction, atomic writes, and its use by the CLI and
`load_description_adapter`."""

from __future__ import annotations

import os

import pytest
import torch

from text2lora import load_description_adapter
from text2lora import T2LModel
from text2lora.cache import AdapterCache, parse_size, resolve_cache
from text2lora.fingerprints import folder_fingerprint, identify, model_fingerprint
from text2lora.cli import main as cli_main
from text2lora.pipeline import Mix, get_or_generate
from support import DESCRIPTION, cache_entry, cache_key





class ForwardCounter:
    """Counts hypernetwork forward passes (a cache hit must not run one)."""

    def __init__(self, model: T2LModel) -> None:
        self.calls = 0
        model.register_forward_hook(self._hook)

    def _hook(self, *_):
        self.calls += 1


def _assert_same_adapter(a, b):
    assert a.state_dict.keys() == b.state_dict.keys()
    for key in a.state_dict:
        torch.testing.assert_close(a.state_dict[key], b.state_dict[key], rtol=0, atol=0)


def test_repeated_description_is_a_file_read(tmp_path, tiny_t2l_nonzero):
    cache = AdapterCache(tmp_path / "cache")
    counter = ForwardCounter(tiny_t2l_nonzero)
    first = get_or_generate([DESCRIPTION], tiny_t2l_nonzero, cache=cache)[0]
    assert counter.calls == 1 and len(cache) == 1
    again = get_or_generate(["  " + DESCRIPTION + ".  "], tiny_t2l_nonzero, cache=cache)[0]  # same text after formatting
    assert counter.calls == 1
    _assert_same_adapter(first, again)
    _assert_same_adapter(first, tiny_t2l_nonzero.generate_lora(DESCRIPTION))
    assert again.description == DESCRIPTION  # provenance of the entry
    assert again.hypernetwork == first.hypernetwork
    # A different description is a miss.
    calls = counter.calls
    get_or_generate(["Translate English to French"], tiny_t2l_nonzero, cache=cache)[0]
    assert counter.calls == calls + 1 and len(cache) == 2


def test_key_covers_everything_the_adapter_depends_on(tmp_path, tiny_t2l_nonzero, tiny_config):
    base = cache_key(tiny_t2l_nonzero, DESCRIPTION)
    assert base == cache_key(tiny_t2l_nonzero, DESCRIPTION + ".")
    assert base != cache_key(tiny_t2l_nonzero, "Translate English to French")
    assert base != cache_key(tiny_t2l_nonzero, DESCRIPTION, dtype="bfloat16")
    assert base != cache_key(tiny_t2l_nonzero, Mix([DESCRIPTION, "Translate"], [0.7, 0.3]))
    assert cache_key(tiny_t2l_nonzero, Mix([DESCRIPTION, "Translate"], [0.7, 0.3])) != cache_key(
        tiny_t2l_nonzero, Mix([DESCRIPTION, "Translate"], [0.3, 0.7])
    )
    embedding = torch.randn(tiny_config.task_embedding_size)
    assert cache_key(tiny_t2l_nonzero, embedding) != cache_key(tiny_t2l_nonzero, embedding + 1)
    # Another hypernetwork (same config, other weights), and the same one after training steps.
    torch.manual_seed(5)
    other = T2LModel(tiny_config)
    assert base != cache_key(other, DESCRIPTION)
    with torch.no_grad():
        tiny_t2l_nonzero.heads["q_proj"].bias.add_(0.01)
    changed = cache_key(tiny_t2l_nonzero, DESCRIPTION)
    assert changed != base
    with torch.no_grad():  # an edit through `.data` bypasses version counters; the sample still sees it
        tiny_t2l_nonzero.heads["v_proj"].weight.data.mul_(2.0)
    assert cache_key(tiny_t2l_nonzero, DESCRIPTION) != changed
    with pytest.raises(TypeError, match="a description, a Mix or a task embedding"):
        cache_key(tiny_t2l_nonzero, [DESCRIPTION, "Translate"])  # several descriptions are a Mix
    with pytest.raises(ValueError, match="empty"):
        cache_key(tiny_t2l_nonzero, "   ")


def test_changed_weights_never_serve_a_stale_adapter(tmp_path, tiny_t2l_nonzero):
    cache = AdapterCache(tmp_path)
    before = get_or_generate([DESCRIPTION], tiny_t2l_nonzero, cache=cache)[0]
    with torch.no_grad():
        for head in tiny_t2l_nonzero.heads.values():
            head.bias.add_(0.5)
    after = get_or_generate([DESCRIPTION], tiny_t2l_nonzero, cache=cache)[0]
    key = next(iter(after.state_dict))
    assert (after.state_dict[key] - before.state_dict[key]).abs().max() > 0.1
    _assert_same_adapter(after, tiny_t2l_nonzero.generate_lora(DESCRIPTION))


def test_saved_folder_is_identified_without_loading_it(tmp_path, tiny_t2l_nonzero, monkeypatch):
    folder = tmp_path / "t2l"
    tiny_t2l_nonzero.save_pretrained(folder)
    reloaded = T2LModel.from_pretrained(folder)
    assert folder_fingerprint(folder) == model_fingerprint(reloaded) == model_fingerprint(tiny_t2l_nonzero)
    cache = AdapterCache(tmp_path / "cache")
    adapter = get_or_generate([DESCRIPTION], reloaded, cache=cache)[0]
    # The folder's fingerprint is remembered in this process: a second identification only stats the files.
    identify(folder)
    monkeypatch.setattr("text2lora.fingerprints.folder_fingerprint", lambda _: pytest.fail("re-hashed the folder"))
    hit = cache.read(cache_key(folder, DESCRIPTION))
    assert hit is not None
    _assert_same_adapter(hit, adapter)


def test_dtype_is_part_of_the_entry(tmp_path, tiny_t2l_nonzero):
    cache = AdapterCache(tmp_path)
    bf16 = get_or_generate([DESCRIPTION], tiny_t2l_nonzero, cache=cache, dtype="bfloat16")[0]
    again = get_or_generate([DESCRIPTION], tiny_t2l_nonzero, cache=cache, dtype=torch.bfloat16)[0]
    assert all(t.dtype == torch.bfloat16 for t in again.state_dict.values())
    _assert_same_adapter(bf16, again)
    fp32 = get_or_generate([DESCRIPTION], tiny_t2l_nonzero, cache=cache)[0]
    assert all(t.dtype == torch.float32 for t in fp32.state_dict.values()) and len(cache) == 2


def test_lru_eviction_keeps_the_size_bound(tmp_path, tiny_t2l_nonzero):
    probe = AdapterCache(tmp_path / "probe")
    get_or_generate(["probe"], tiny_t2l_nonzero, cache=probe)
    entry_size = probe.entries()[0].size
    cache = AdapterCache(tmp_path / "cache", max_size=int(2.5 * entry_size))
    names = ["first task", "second task", "third task"]
    paths = {}
    for i, name in enumerate(names[:2]):
        paths[name] = cache_entry(cache, tiny_t2l_nonzero, name)
        os.utime(paths[name], (1_000_000 + i, 1_000_000 + i))  # deterministic use order
    get_or_generate(["first task"], tiny_t2l_nonzero, cache=cache)[0]  # a hit: "first" becomes the most recently used
    assert paths["first task"].stat().st_mtime > paths["second task"].stat().st_mtime
    get_or_generate(["third task"], tiny_t2l_nonzero, cache=cache)[0]  # over the bound: the LRU entry goes
    remaining = {e.path for e in cache.entries()}
    assert paths["first task"] in remaining and paths["second task"] not in remaining
    assert len(remaining) == 2 and cache.size <= cache.max_size
    assert cache.clear() == 2 and len(cache) == 0


def test_failed_write_leaves_nothing(tmp_path, tiny_t2l_nonzero, monkeypatch):
    cache = AdapterCache(tmp_path)
    from text2lora.adapters import GeneratedLora

    real_save = GeneratedLora.save_pretrained

    def crash(self, directory, **kwargs):
        real_save(self, directory, **kwargs)
        raise RuntimeError("disk full")

    monkeypatch.setattr(GeneratedLora, "save_pretrained", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        get_or_generate([DESCRIPTION], tiny_t2l_nonzero, cache=cache)[0]
    monkeypatch.undo()
    assert len(cache) == 0 and cache.read(cache_key(tiny_t2l_nonzero, DESCRIPTION)) is None
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert leftovers == []


def test_damaged_entry_is_regenerated(tmp_path, tiny_t2l_nonzero):
    cache = AdapterCache(tmp_path)
    good = get_or_generate([DESCRIPTION], tiny_t2l_nonzero, cache=cache)[0]
    path = cache_entry(cache, tiny_t2l_nonzero, DESCRIPTION)
    weights = path / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    assert cache.read(cache_key(tiny_t2l_nonzero, DESCRIPTION)) is None
    _assert_same_adapter(get_or_generate([DESCRIPTION], tiny_t2l_nonzero, cache=cache)[0], good)


def test_cli_generate_uses_the_cache(tmp_path, tiny_t2l_nonzero, capsys, monkeypatch):
    folder = tmp_path / "t2l"
    tiny_t2l_nonzero.save_pretrained(folder)
    cache_dir = tmp_path / "cache"
    args = ["generate", DESCRIPTION, "--t2l", str(folder), "--cache-dir", str(cache_dir)]
    assert cli_main(args + ["--out", str(tmp_path / "a")]) == 0
    assert "generated 1 adapter" in capsys.readouterr().out
    assert len(AdapterCache(cache_dir)) == 1

    # Second run: every adapter is cached, so the hypernetwork is never loaded.
    monkeypatch.setattr(
        "text2lora.pipeline.load_hypernetwork", lambda *_: pytest.fail("loaded the hypernetwork")
    )
    assert cli_main(args + ["--out", str(tmp_path / "b")]) == 0
    assert "read 1 adapter(s) from the adapter cache" in capsys.readouterr().out
    monkeypatch.undo()
    a = (tmp_path / "a" / "adapter_model.safetensors").read_bytes()
    assert a == (tmp_path / "b" / "adapter_model.safetensors").read_bytes()

    assert cli_main(args + ["--out", str(tmp_path / "c"), "--no-cache", "--dtype", "bf16"]) == 0
    assert len(AdapterCache(cache_dir)) == 1


def test_load_description_adapter_uses_the_cache(tmp_path, tiny_base_dir, tiny_t2l_nonzero):
    from transformers import AutoModelForCausalLM

    cache = AdapterCache(tmp_path)
    counter = ForwardCounter(tiny_t2l_nonzero)
    model = AutoModelForCausalLM.from_pretrained(tiny_base_dir)
    first = load_description_adapter(model, DESCRIPTION, t2l=tiny_t2l_nonzero, adapter_name="one", cache=cache)
    second = load_description_adapter(model, 
        DESCRIPTION, t2l=tiny_t2l_nonzero, adapter_name="two", cache=cache
    )
    assert counter.calls == 1 and len(cache) == 1
    _assert_same_adapter(first, second)
    load_description_adapter(model, DESCRIPTION, t2l=tiny_t2l_nonzero, adapter_name="three", cache=False)
    assert counter.calls == 2


def test_resolve_cache_and_sizes(tmp_path, monkeypatch):
    monkeypatch.setenv("TEXT2LORA_ADAPTER_CACHE_DIR", str(tmp_path / "env"))
    monkeypatch.setenv("TEXT2LORA_ADAPTER_CACHE_SIZE", "3MB")
    default = resolve_cache(True)
    assert default.cache_dir == tmp_path / "env" and default.max_size == 3_000_000
    assert resolve_cache(False) is None
    assert resolve_cache(tmp_path / "x").cache_dir == tmp_path / "x"
    monkeypatch.setenv("TEXT2LORA_DISABLE_ADAPTER_CACHE", "1")
    assert resolve_cache(True) is None
    assert parse_size("2GiB") == 2 * 1024**3 and parse_size("500MB") == 500_000_000 and parse_size(123) == 123
    with pytest.raises(ValueError, match="cache size"):
        parse_size("lots")
    with pytest.raises(ValueError, match="positive"):
        AdapterCache(tmp_path, max_size=0)


def test_cache_cli(tmp_path, tiny_t2l_nonzero, capsys):
    cache = AdapterCache(tmp_path)
    get_or_generate([DESCRIPTION], tiny_t2l_nonzero, cache=cache)[0]
    assert cli_main(["cache", "info", "--cache-dir", str(tmp_path)]) == 0
    assert "1 adapter(s)" in capsys.readouterr().out
    assert cli_main(["cache", "list", "--cache-dir", str(tmp_path)]) == 0
    assert DESCRIPTION in capsys.readouterr().out
    assert cli_main(["cache", "clear", "--cache-dir", str(tmp_path)]) == 0
    assert len(cache) == 0


def test_unwritable_cache_degrades_to_generating(tmp_path, tiny_t2l_nonzero, monkeypatch, caplog):
    cache = AdapterCache(tmp_path)

    def refuse(*args, **kwargs):
        raise PermissionError("read-only file system")

    monkeypatch.setattr("text2lora.cache.atomic_directory", refuse)
    adapter = get_or_generate([DESCRIPTION], tiny_t2l_nonzero, cache=cache)[0]
    _assert_same_adapter(adapter, tiny_t2l_nonzero.generate_lora(DESCRIPTION))
    assert len(cache) == 0 and "Could not write to the adapter cache" in caplog.text


def test_get_or_generate_reads_each_hit_once_and_generates_only_the_misses(tmp_path, tiny_t2l_nonzero, monkeypatch):
    """Many requests at once: hits are read once each, the misses (and a repeated one, once) go through one batched
    call, a Mix is its own entry, and the order of the answers is the order of the requests."""
    cache = AdapterCache(tmp_path)
    first = get_or_generate([DESCRIPTION], tiny_t2l_nonzero, cache=cache)[0]
    reads, batches = [], []
    real_read, real_generate = AdapterCache.read, type(tiny_t2l_nonzero).generate_lora
    monkeypatch.setattr(AdapterCache, "read", lambda self, key, name=None: reads.append(key) or real_read(self, key, name))
    monkeypatch.setattr(
        type(tiny_t2l_nonzero), "generate_lora", lambda self, d, **kw: batches.append(d) or real_generate(self, d, **kw)
    )
    mix = Mix(["Translate English to French", DESCRIPTION], [0.5, 0.5])
    requests = ["Translate English to French", DESCRIPTION, "Count legs", "Translate English to French", mix]
    adapters = get_or_generate(requests, tiny_t2l_nonzero, cache=cache)
    assert len(reads) == 4 and len(set(reads)) == 4  # one read per distinct request
    assert batches == [["Translate English to French", "Count legs"]]  # the misses, in one batch
    _assert_same_adapter(adapters[1], first)
    assert adapters[0] is adapters[3] and adapters[4].mix_weights == [0.5, 0.5]
    _assert_same_adapter(adapters[4], tiny_t2l_nonzero.mix_lora(list(mix.descriptions), list(mix.weights)))
    assert len(cache) == 4
