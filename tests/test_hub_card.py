"""Model cards and Hub uploads, against a fake Hub API that records what a push would upload (no network)."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from huggingface_hub import HfApi, RepoUrl
from safetensors.torch import load_file

from text2lora import T2LModel
from text2lora.cards import adapter_card, eval_table_markdown, hypernetwork_card
from text2lora.hub import push_adapter_to_hub

EVAL = {"base": {"arc_easy": 41.25, "gsm8k": 0.5}, "T2L": {"arc_easy": 45.0, "gsm8k": 2.0}}


class FakeHub:
    """Stands in for the Hub: every repo is a local folder; each commit's files are recorded."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.calls: list[tuple[str, dict]] = []

    def repo(self, repo_id: str) -> Path:
        return self.root / repo_id

    def create_repo(self, api, repo_id, **kwargs):
        self.calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))
        self.repo(repo_id).mkdir(parents=True, exist_ok=True)
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def create_branch(self, api, repo_id, branch, **kwargs):
        self.calls.append(("create_branch", {"repo_id": repo_id, "branch": branch}))

    def upload_folder(self, api, *, repo_id, folder_path, **kwargs):
        files = sorted(p.relative_to(folder_path).as_posix() for p in Path(folder_path).rglob("*") if p.is_file())
        self.calls.append(("upload_folder", {"repo_id": repo_id, "files": files, **kwargs}))
        shutil.copytree(folder_path, self.repo(repo_id), dirs_exist_ok=True)
        return SimpleNamespace(commit_url=f"https://huggingface.co/{repo_id}/commit/0", oid="0" * 40)

    def create_commit(self, api, repo_id, operations, **kwargs):
        # transformers' own push path ends here; recorded the same way so a regression shows in the content.
        files = []
        for op in operations:
            target = self.repo(repo_id) / op.path_in_repo
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(op.path_or_fileobj, target)
            files.append(op.path_in_repo)
        self.calls.append(("create_commit", {"repo_id": repo_id, "files": sorted(files), **kwargs}))
        return SimpleNamespace(commit_url=f"https://huggingface.co/{repo_id}/commit/0", oid="0" * 40)


@pytest.fixture
def fake_hub(monkeypatch, tmp_path) -> FakeHub:
    hub = FakeHub(tmp_path / "hub")
    for name in ("create_repo", "create_branch", "upload_folder", "create_commit"):
        method = getattr(hub, name)
        monkeypatch.setattr(HfApi, name, lambda api, *a, _m=method, **k: _m(api, *a, **k))
    return hub


def front_matter(text: str) -> tuple[dict, str]:
    assert text.startswith("---\n"), text[:80]
    head, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(head), body


@pytest.fixture
def hub_named_t2l(tiny_config) -> T2LModel:
    """A tiny trained-looking hypernetwork whose base model has a Hub name (so it appears in the metadata)."""
    config = copy.deepcopy(tiny_config)
    config.base_model_name_or_path = "HuggingFaceTB/SmolLM2-135M-Instruct"
    torch.manual_seed(0)
    model = T2LModel(config).eval()
    with torch.no_grad():
        for head in model.heads.values():
            head.weight.normal_(0.0, 0.05)
    return model


def test_save_pretrained_writes_card_with_metadata_and_eval_table(hub_named_t2l, tmp_path):
    hub_named_t2l.save_pretrained(tmp_path / "t2l", eval_results=EVAL, datasets=["allenai/ai2_arc"], tags=["smollm2"])
    meta, body = front_matter((tmp_path / "t2l" / "README.md").read_text())
    assert meta["library_name"] == "text2lora"
    assert meta["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert meta["datasets"] == ["allenai/ai2_arc"]
    assert {"text2lora", "hypernetwork", "lora", "smollm2"} <= set(meta["tags"])
    assert "| condition | arc_easy | gsm8k |" in body
    assert "| base | 41.25 | 0.500 |" in body and "| T2L | 45.00 | 2.00 |" in body
    assert "Untrained" not in body
    assert f"| Hypernetwork parameters | {hub_named_t2l.num_parameters():,} |" in body
    assert json.loads((tmp_path / "t2l" / "eval_results.json").read_text()) == EVAL

    # A reloaded checkpoint keeps its table, datasets and tags when saved again without them.
    reloaded = T2LModel.from_pretrained(tmp_path / "t2l")
    reloaded.save_pretrained(tmp_path / "again")
    meta2, body2 = front_matter((tmp_path / "again" / "README.md").read_text())
    assert meta2["datasets"] == ["allenai/ai2_arc"] and "smollm2" in meta2["tags"]
    assert "| T2L | 45.00 | 2.00 |" in body2


def test_a_broken_previous_card_does_not_stop_saving(hub_named_t2l, tmp_path):
    hub_named_t2l.save_pretrained(tmp_path / "t2l", datasets=["allenai/ai2_arc"])
    (tmp_path / "t2l" / "README.md").write_text("---\ndatasets: [unclosed\n---\nhand-edited\n")
    reloaded = T2LModel.from_pretrained(tmp_path / "t2l")
    reloaded.save_pretrained(tmp_path / "again")
    meta, _ = front_matter((tmp_path / "again" / "README.md").read_text())
    assert meta["library_name"] == "text2lora" and "datasets" not in meta


def test_untrained_card_says_so_and_local_base_is_not_metadata(tiny_t2l, tmp_path):
    tiny_t2l.save_pretrained(tmp_path / "t2l")
    meta, body = front_matter((tmp_path / "t2l" / "README.md").read_text())
    assert "base_model" not in meta  # a local path is not a valid Hub reference
    assert str(tiny_t2l.config.base_model_name_or_path) in body
    assert "**Untrained.**" in body
    assert "No evaluation results" in body
    tiny_t2l.save_pretrained(tmp_path / "no_card", model_card=False)
    assert not (tmp_path / "no_card" / "README.md").exists()


def test_push_to_hub_uploads_our_card_and_weights_that_load_back(hub_named_t2l, fake_hub):
    hub_named_t2l.push_to_hub("me/t2l-tiny", eval_results=EVAL, datasets=["allenai/ai2_arc"], commit_message="v1")
    uploads = [c for name, c in fake_hub.calls if name in ("upload_folder", "create_commit")]
    assert len(uploads) == 1 and uploads[0]["commit_message"] == "v1"
    assert {"README.md", "config.json", "model.safetensors", "eval_results.json", "modeling_t2l.py"} <= set(
        uploads[0]["files"]
    )
    repo = fake_hub.repo("me/t2l-tiny")
    meta, body = front_matter((repo / "README.md").read_text())
    assert meta["library_name"] == "text2lora" and meta["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert meta["datasets"] == ["allenai/ai2_arc"]
    assert 'T2LModel.from_pretrained("me/t2l-tiny")' in body
    assert 't2l="me/t2l-tiny"' in body and "load_description_adapter" in body
    assert 'AutoModel.from_pretrained("me/t2l-tiny", trust_remote_code=True)' in body
    assert "t2l generate" in body and "--t2l me/t2l-tiny" in body

    uploaded = T2LModel.from_pretrained(repo)
    original = hub_named_t2l.state_dict()
    for key, value in uploaded.state_dict().items():
        assert torch.equal(value, original[key]), key
    embedding = torch.randn(1, hub_named_t2l.config.task_embedding_size)
    a, b = hub_named_t2l(embedding), uploaded(embedding)
    for m in hub_named_t2l.config.target_modules:
        torch.testing.assert_close(a.lora_B[m], b.lora_B[m])  # same weights; float rounding may differ


def test_save_pretrained_push_to_hub_keyword_uploads_our_card(hub_named_t2l, fake_hub, tmp_path):
    hub_named_t2l.save_pretrained(tmp_path / "local", push_to_hub=True, repo_id="me/pushed")
    meta, body = front_matter((fake_hub.repo("me/pushed") / "README.md").read_text())
    assert meta["library_name"] == "text2lora"
    assert 'T2LModel.from_pretrained("me/pushed")' in body
    assert (tmp_path / "local" / "README.md").read_text() == (fake_hub.repo("me/pushed") / "README.md").read_text()


def test_push_adapter_to_hub_card_names_description_and_hypernetwork(tiny_t2l_nonzero, tiny_base_dir, fake_hub):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    tiny_t2l_nonzero.name_or_path = "me/t2l-tiny"
    description = "Answer questions about the weather in one word."
    adapter = tiny_t2l_nonzero.generate_lora(description)
    push_adapter_to_hub(adapter, "me/weather-adapter", dtype="bf16", tags=["weather"])
    repo = fake_hub.repo("me/weather-adapter")
    assert {"README.md", "adapter_config.json", "adapter_model.safetensors", "t2l_adapter.json"} <= {
        p.name for p in repo.iterdir()
    }
    meta, body = front_matter((repo / "README.md").read_text())
    assert meta["library_name"] == "peft" and meta["pipeline_tag"] == "text-generation"
    assert {"text2lora", "lora", "weather"} <= set(meta["tags"])
    assert f"> {description}" in body
    assert "[`me/t2l-tiny`](https://huggingface.co/me/t2l-tiny)" in body
    assert 'PeftModel.from_pretrained(base, "me/weather-adapter")' in body
    assert "leaves the base model unchanged" not in body

    saved = load_file(repo / "adapter_model.safetensors")
    assert set(saved) == set(adapter.state_dict)
    assert all(t.dtype == torch.bfloat16 for t in saved.values())
    base = AutoModelForCausalLM.from_pretrained(tiny_base_dir)
    peft_model = PeftModel.from_pretrained(base, repo)
    lora = {k: v for k, v in peft_model.state_dict().items() if ".lora_" in k}
    assert len(lora) == len(adapter.state_dict)
    for key, value in adapter.state_dict.items():
        loaded = lora[key.replace(".weight", ".default.weight")]
        torch.testing.assert_close(loaded.float(), value.to(torch.bfloat16).float())


def test_adapter_card_for_a_mix_and_for_an_untrained_hypernetwork(tiny_t2l):
    mixed = tiny_t2l.mix_lora(["Translate to French.", "Be terse."], [0.25, 0.75])
    _, body = front_matter(adapter_card(mixed))
    assert "> (weight 0.25) Translate to French." in body and "> (weight 0.75) Be terse." in body
    assert "leaves the base model unchanged" in body  # untrained: B = 0


def test_adapter_card_names_the_nearest_training_tasks_and_warns_when_far(tiny_t2l):
    from dataclasses import replace

    adapter = tiny_t2l.generate_lora("Count the prime numbers in a range.")
    assert "Nearest training tasks" not in front_matter(adapter_card(adapter))[1]  # no centroids: nothing claimed
    near = replace(adapter, nearest_tasks=[("reasoning_gym.count_primes", 0.9356), ("reasoning_gym.lcm", 0.4579)],
                   far_threshold=0.3956)  # fmt: skip
    _, body = front_matter(adapter_card(near))
    assert "`reasoning_gym.count_primes` 0.94, `reasoning_gym.lcm` 0.46." in body
    assert "Warning" not in body
    far = replace(near, nearest_tasks=[("bigbench.kannada", 0.24)])
    _, body = front_matter(adapter_card(far))
    assert "`bigbench.kannada` 0.24." in body
    assert "> **Warning**: This description is far from every training task (nearest: bigbench.kannada, cosine 0.24" in body


def test_eval_table_shapes_and_errors():
    rows = [{"condition": "base", "avg": 50.0}, {"condition": "T2L", "avg": 51.5, "n": 1200}]
    table, note = eval_table_markdown({"results": rows, "metric": "accuracy (%)", "notes": "3 seeds."})
    assert table.splitlines()[0] == "| condition | avg | n |"
    assert table.splitlines()[3] == "| T2L | 51.50 | 1,200 |"
    assert note == "Metric: accuracy (%). 3 seeds."
    assert eval_table_markdown(EVAL)[0] == eval_table_markdown(
        [{"condition": k, **v} for k, v in EVAL.items()]
    )[0]
    with pytest.raises(TypeError, match="benchmark -> score"):
        eval_table_markdown({"base": 3.0})
    with pytest.raises(TypeError, match="Cannot make a table"):
        eval_table_markdown(3.0)


def test_eval_table_from_t2l_eval_results():
    def task(metric, values):
        return {"kind": "benchmark", "primary_metric": metric, "n_examples": 40,
                "conditions": {c: {"metrics": {metric: {"mean": v, "std": 0.0}, "acc": {"mean": -1.0}}}
                               for c, v in values.items()}}

    results = {
        "format": "text2lora-eval/1",
        "conditions": {"base": {"label": "base"}, "t2l": {"label": "T2L (held-out descriptions)"}},
        "tasks": {"arc_easy": task("acc_norm", {"base": 0.25, "t2l": 0.5}), "gsm8k": task("exact_match", {"base": 0.1})},
        "summary": {"benchmarks": {"base": {"mean": 0.175}, "t2l": {"mean": 0.5}}},
    }
    table, note = eval_table_markdown(results)
    lines = table.splitlines()
    assert lines[0] == "| condition | arc_easy | gsm8k | mean: benchmarks |"
    assert lines[2] == "| base | 0.250 | 0.100 | 0.175 |"
    assert lines[3] == "| T2L (held-out descriptions) | 0.500 |  | 0.500 |"
    assert "arc_easy: acc_norm" in note and "gsm8k: exact_match" in note and "40 examples per task" in note


def test_t2l_eval_results_saved_with_a_checkpoint_are_compacted(tiny_t2l, tmp_path):
    results = {"format": "text2lora-eval/1", "conditions": {"base": {"label": "base"}},
               "tasks": {"piqa": {"primary_metric": "acc", "example_indices": {"validation": list(range(500))},
                                  "conditions": {"base": {"metrics": {"acc": {"mean": 0.6}}}}}},
               "summary": {}, "runs": [{"huge": "record"}] * 100}
    tiny_t2l.save_pretrained(tmp_path / "t2l", eval_results=results)
    saved = json.loads((tmp_path / "t2l" / "eval_results.json").read_text())
    assert "runs" not in saved and "example_indices" not in saved["tasks"]["piqa"]
    assert "| base | 0.600 |" in (tmp_path / "t2l" / "README.md").read_text()


def test_card_object_is_a_hub_model_card(hub_named_t2l):
    card = hypernetwork_card(hub_named_t2l, repo_id="me/x", license="apache-2.0")
    assert card.data.library_name == "text2lora" and card.data.license == "apache-2.0"


def test_tests_cannot_reach_the_network():
    """The guard in conftest: a Hub-like remote address is refused before any packet leaves, localhost is not."""
    import socket

    with pytest.raises(OSError, match="must not reach the network"):
        socket.create_connection(("203.0.113.7", 443), timeout=1)  # TEST-NET-3, never routed
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    try:
        socket.create_connection(server.getsockname(), timeout=1).close()
    finally:
        server.close()
