"""Nearest training tasks: centroids in the task-embedding space, the far-from-training threshold, the file that
`t2l train sft` writes beside its checkpoints, and the shipped default's centroids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from text2lora import T2LModel
from text2lora.nearest_tasks import (
    TASK_CENTROIDS_FILE,
    NearestTask,
    TaskCentroids,
    centroids_from_embeddings,
    far_warning,
    load_task_centroids,
    nearest_training_tasks,
)


def test_centroids_are_unit_means_and_the_threshold_is_the_leave_one_task_out_5th_percentile():
    e = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 2.0], [0.0, 0.0, 3.0], [0.6, 0.8, 0.0]])
    c = centroids_from_embeddings(["a", "b", "c"], e, [0, 2, 4, 5])
    s = 2**-0.5
    torch.testing.assert_close(c.centroids, torch.tensor([[s, s, 0.0], [0.0, 0.0, 1.0], [0.6, 0.8, 0.0]]))
    assert c.num_descriptions == [2, 2, 1]
    # nearest other-task similarity per description: a's (1,0,0)->c 0.6, (0,1,0)->c 0.8; b's -> 0, 0; c's -> a 0.99
    expected = torch.quantile(torch.tensor([0.6, 0.8, 0.0, 0.0, (0.6 + 0.8) * s]), 0.05)
    assert c.threshold == pytest.approx(float(expected), abs=1e-6)
    near = c.nearest(torch.tensor([0.0, 0.0, 5.0]), k=2)[0]
    assert near[0] == NearestTask("b", 1.0) and near[1].name in {"a", "c"}
    assert c.nearest(torch.tensor([[1.0, 1.0, 0.0]]), k=5)[0][0].name == "a" and len(c.nearest(e, k=5)[0]) == 3
    with pytest.raises(ValueError, match="3-d"):
        c.nearest(torch.ones(4))
    with pytest.raises(ValueError, match="no description embeddings"):
        centroids_from_embeddings(["a", "b"], e, [0, 0, 5])


def test_the_file_round_trips_and_a_corrupt_one_is_one_line(tmp_path):
    c = centroids_from_embeddings(["t1", "t2"], torch.randn(5, 8), [0, 3, 5], encoder="enc|x")
    path = c.save(tmp_path)
    assert path.name == TASK_CENTROIDS_FILE and not list(tmp_path.glob(".*tmp*"))
    back = TaskCentroids.load_file(path)
    assert back.names == ["t1", "t2"] and back.num_descriptions == [3, 2] and back.encoder == "enc|x"
    assert back.threshold == pytest.approx(c.threshold) and torch.equal(back.centroids, c.centroids)
    path.write_bytes(b"garbage")
    with pytest.raises(OSError, match="not a readable task-centroid file"):
        TaskCentroids.load_file(path)


def test_a_checkpoint_without_centroids_has_no_nearest_tasks(tmp_path, tiny_t2l):
    tiny_t2l.save_pretrained(tmp_path / "old")
    old = T2LModel.from_pretrained(tmp_path / "old")
    assert load_task_centroids(tmp_path / "old") is None
    assert nearest_training_tasks(old, "Sort the words.") is None
    old.generate_lora("Sort the words.")  # everything else still works


@pytest.mark.slow
def test_train_sft_writes_centroids_into_checkpoints_and_the_final_output(tmp_path, tiny_base_dir, tiny_encoder_dir):
    import sys

    from text2lora.cli import main

    sys.path.insert(0, str(Path(__file__).parent / "scripts"))
    from t2l_tiny_tasks import TASKS, task_dataset

    task_dataset().save_to_disk(str(tmp_path / "tasks"))
    config = tmp_path / "sft.yaml"
    config.write_text(
        f"base_model: {tiny_base_dir}\nhypernetwork:\n  encoder_name_or_path: {tiny_encoder_dir}\n"
        "  task_embedding_size: 32\n  latent_size: 16\n  head_in_size: 32\n"
        f"train_dataset: {tmp_path / 'tasks'}\ntraining:\n  output_dir: {tmp_path / 'out'}\n  max_steps: 2\n"
        "  tasks_per_batch: 2\n  max_length: 64\n  save_steps: 2\n  use_cpu: true\n  report_to: none\n"
        "  disable_tqdm: true\n  cache_dir: none\n  plot_loss: false\n"
    )
    assert main(["train", "sft", str(config)]) == 0
    out = tmp_path / "out"
    for folder in (out, out / "checkpoint-2"):
        centroids = load_task_centroids(folder)
        assert centroids is not None and sorted(centroids.names) == sorted(TASKS)
        assert centroids.centroids.shape == (len(TASKS), 32) and centroids.num_descriptions == [2] * len(TASKS)
    t2l = T2LModel.from_pretrained(out)
    for task, (descriptions, _) in TASKS.items():
        top = nearest_training_tasks(t2l, descriptions[0], k=2)[0]
        assert top.name == task and top.similarity > 0.5


# ------------------------------------------------------------------------------- the shipped default


@pytest.fixture(scope="module")
def shipped():
    from text2lora.nearest_tasks import default_hypernetwork

    return T2LModel.from_pretrained(default_hypernetwork()).eval()


@pytest.mark.integration
def test_the_shipped_default_carries_centroids_of_its_training_tasks(shipped):
    centroids = load_task_centroids()
    assert centroids is not None
    folder = Path(__file__).parents[1] / "src" / "text2lora" / "default_checkpoint"
    assert (folder / TASK_CENTROIDS_FILE).stat().st_size < 1024 * 1024
    assert centroids.centroids.shape == (len(centroids.names), shipped.config.task_embedding_size)
    assert 250 <= len(centroids.names) <= 277 and len(set(centroids.names)) == len(centroids.names)
    assert "reasoning_gym.basic_arithmetic" in centroids.names and "bigbench.tense" not in centroids.names
    torch.testing.assert_close(centroids.centroids.norm(dim=1), torch.ones(len(centroids.names)))
    assert 0.2 < centroids.threshold < 0.9
    assert shipped.config.encoder_name_or_path in centroids.encoder


@pytest.mark.integration
def test_a_training_description_lands_on_its_task(shipped):
    # One of reasoning_gym.basic_arithmetic's training descriptions (the collection's `descriptions` column).
    nearest = nearest_training_tasks(shipped, "Evaluate an integer arithmetic expression.", k=3)
    assert nearest[0].name == "reasoning_gym.basic_arithmetic" and nearest[0].similarity > 0.75
    assert [n.similarity for n in nearest] == sorted((n.similarity for n in nearest), reverse=True)
    both = nearest_training_tasks(shipped, ["Evaluate an integer arithmetic expression.", "Spell a word backward."])
    assert [b[0].name for b in both] == ["reasoning_gym.basic_arithmetic", "reasoning_gym.spell_backward"]
    embedding = shipped.encode_descriptions("Spell a word backward.")[0]
    assert nearest_training_tasks(shipped, embedding, k=1)[0].name == "reasoning_gym.spell_backward"


@pytest.mark.integration
def test_an_unrelated_text_is_far_from_every_training_task(shipped):
    centroids = load_task_centroids(shipped)
    far = nearest_training_tasks(shipped, "zq9 vlorp xx7 brindle kettle quasar mauve", k=1)
    assert centroids.is_far(far[0].similarity) and "far from every training task" in far_warning(far, centroids)
    near = nearest_training_tasks(shipped, "Evaluate an integer arithmetic expression.", k=1)
    assert not centroids.is_far(near[0].similarity) and far_warning(near, centroids) is None
    assert json.dumps([tuple(n) for n in near])  # plain (name, similarity) pairs for the CLI / Space


# ------------------------------------------------------------------------ adapters carry their nearest tasks

TINY_TASKS = {
    "spell_backward": ["Spell the word backward.", "Reverse the letters of a word."],
    "add_numbers": ["Add the two numbers and answer with the sum.", "Compute the sum of two integers."],
    "weather": ["Answer questions about the weather in one short sentence."],
}


@pytest.fixture
def tiny_folder_with_centroids(tmp_path, tiny_t2l_nonzero):
    """A saved tiny hypernetwork with task centroids of TINY_TASKS computed with its own encoder."""
    from text2lora.nearest_tasks import compute_task_centroids

    folder = tmp_path / "t2l"
    tiny_t2l_nonzero.save_pretrained(folder)
    centroids = compute_task_centroids(TINY_TASKS, tiny_t2l_nonzero.description_encoder)
    centroids.save(folder)
    return folder, centroids


def test_adapters_record_nearest_tasks_through_the_cache_and_save_pretrained(tmp_path, tiny_folder_with_centroids):
    from text2lora.adapters import read_adapter_metadata, read_generated_lora
    from text2lora.pipeline import LazyHypernetwork, Mix, get_or_generate

    folder, centroids = tiny_folder_with_centroids
    mix = Mix(["Spell the word backward.", "Compute the sum of two integers."], [0.7, 0.3])
    requests = ["Reverse the letters of a word.", mix]
    source = LazyHypernetwork(str(folder))
    made = get_or_generate(requests, source, cache=tmp_path / "cache")
    model = source.model
    assert source.generated == 2 and model.task_centroids is not None
    # a description: its own embedding's nearest centroids; the mix: the mixed embedding's (not re-encoded per part)
    expected_one = centroids.nearest(model.encode_descriptions("Reverse the letters of a word."))[0]
    embeddings = model.encode_descriptions(list(mix.descriptions))
    expected_mix = centroids.nearest(0.7 * embeddings[0] + 0.3 * embeddings[1])[0]
    assert made[0].nearest_tasks == [tuple(n) for n in expected_one] and made[0].nearest_tasks[0][0] == "spell_backward"
    assert made[1].nearest_tasks == [tuple(n) for n in expected_mix]
    assert len(made[0].nearest_tasks) == 3 and made[0].far_threshold == centroids.threshold

    again = LazyHypernetwork(str(folder))
    cached = get_or_generate(requests, again, cache=tmp_path / "cache")
    assert again.generated == 0 and not again.loaded  # read from the cache, no model built
    for a, b in zip(made, cached):
        assert b.nearest_tasks == a.nearest_tasks and b.far_threshold == a.far_threshold
        assert b.far_from_training_tasks == a.far_from_training_tasks

    made[1].save_pretrained(tmp_path / "adapter")
    meta = read_adapter_metadata(tmp_path / "adapter")
    assert meta["nearest_tasks"] == [list(n) for n in made[1].nearest_tasks] and "far_from_training_tasks" in meta
    back = read_generated_lora(tmp_path / "adapter")
    assert back.nearest_tasks == made[1].nearest_tasks and back.far_threshold == made[1].far_threshold
    assert back.to("bfloat16").nearest_tasks == made[1].nearest_tasks


def test_far_from_training_follows_the_threshold(tiny_t2l_nonzero):
    from text2lora.nearest_tasks import adapter_far_warning, format_nearest

    centroids = centroids_from_embeddings(["a", "b"], torch.eye(2, 32)[:2] * 3, [0, 1, 2])
    centroids.threshold = 0.5
    tiny_t2l_nonzero.task_centroids = centroids
    near = tiny_t2l_nonzero.generate_lora(torch.eye(32)[0] + 0.1 * torch.eye(32)[1])
    far = tiny_t2l_nonzero.generate_lora(torch.eye(32)[5])
    assert near.nearest_tasks[0][0] == "a" and not near.far_from_training_tasks and adapter_far_warning(near) is None
    assert far.far_from_training_tasks and "its adapter will be close to the generic one" in adapter_far_warning(far)
    assert format_nearest([("a", 0.834), ("b", 0.5)]) == "a 0.83, b 0.50"


def test_older_checkpoints_make_adapters_without_nearest_tasks(tmp_path, tiny_t2l):
    from text2lora.adapters import read_adapter_metadata

    tiny_t2l.save_pretrained(tmp_path / "old")
    adapter = T2LModel.from_pretrained(tmp_path / "old").generate_lora("Sort the words.")
    assert adapter.nearest_tasks == [] and adapter.far_threshold is None and not adapter.far_from_training_tasks
    adapter.save_pretrained(tmp_path / "adapter")
    assert "nearest_tasks" not in read_adapter_metadata(tmp_path / "adapter")
    assert T2LModel(tiny_t2l.config).generate_lora("Sort the words.").nearest_tasks == []  # unsaved: none either


# ------------------------------------------------------------------------------------ t2l generate --from-examples


def _examples(path: Path) -> Path:
    rows = [{"input": f"Spell this word backward: {w}", "output": w[::-1]} for w in ("sun", "apple", "river", "stone")]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_generate_from_examples_mixes_or_picks_and_records_the_candidates(tmp_path, capsys, tiny_folder_with_centroids):
    from text2lora.adapters import read_adapter_metadata
    from text2lora.cli import main
    from text2lora.nearest_tasks import pick_nearest_candidate

    folder, _ = tiny_folder_with_centroids
    examples = _examples(tmp_path / "examples.jsonl")
    common = ["generate", "--from-examples", str(examples), "--t2l", str(folder), "--candidates", "2",
              "--examples-per-candidate", "2", "--no-cache"]  # fmt: skip
    assert main([*common, "--out", str(tmp_path / "mixed")]) == 0
    printed = capsys.readouterr().out
    meta = read_adapter_metadata(tmp_path / "mixed")
    made = meta["from_examples"]
    assert made["mode"] == "mix" and len(made["candidates"]) == 2 and made["examples"] == str(examples)
    assert meta["description"] == made["candidates"] and meta["mix_weights"] == [0.5, 0.5]
    assert "mixing the 2 candidates" in printed and "nearest training tasks: " in printed
    assert [list(n) for n in meta["nearest_tasks"]] == meta["nearest_tasks"] and len(meta["nearest_tasks"]) == 3

    assert main([*common, "--pick", "--out", str(tmp_path / "picked")]) == 0
    picked = read_adapter_metadata(tmp_path / "picked")
    assert picked["from_examples"]["candidates"] == made["candidates"]  # same examples and seed: same candidates
    index = pick_nearest_candidate(T2LModel.from_pretrained(folder), made["candidates"])
    assert picked["from_examples"]["picked"] == index and picked["description"] == made["candidates"][index]
    assert f"picked candidate {index} (nearest to the training tasks)" in capsys.readouterr().out


def test_generate_from_examples_bad_combinations_are_one_line(tmp_path, capsys):
    from text2lora.cli import main

    examples = _examples(tmp_path / "examples.jsonl")
    assert main(["generate", "Sort words.", "--from-examples", str(examples), "--out", str(tmp_path / "a")]) == 1
    assert "give no descriptions, --file or --weights with it" in capsys.readouterr().err
    assert main(["generate", "Sort words.", "--pick", "--out", str(tmp_path / "a")]) == 1
    assert "give --from-examples FILE" in capsys.readouterr().err
    assert main(["generate", "--from-examples", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "a")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing.jsonl" in err


# ------------------------------------------------------------------------------ the shipped default, end to end


@pytest.mark.integration
def test_the_shipped_default_reports_nearest_tasks_in_the_api_and_the_cli(tmp_path, capsys):
    from text2lora.cli import main
    from text2lora.pipeline import get_or_generate

    training = "Count the prime numbers in a range."  # one of reasoning_gym.count_primes's training descriptions
    nonsense = "zq9 vlorp xx7 brindle kettle quasar mauve"
    near, far = get_or_generate([training, nonsense], cache=tmp_path / "cache")
    assert near.nearest_tasks[0][0] == "reasoning_gym.count_primes" and near.nearest_tasks[0][1] > 0.9
    assert not near.far_from_training_tasks
    threshold = load_task_centroids().threshold
    assert far.far_from_training_tasks and far.nearest_tasks[0][1] < threshold < 0.5  # 0.26 < 0.40

    args = ["generate", training, nonsense, "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")]
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    first = lines.index(next(line for line in lines if line.startswith("wrote ") and "prime" in line))
    assert lines[first + 1].startswith("  nearest training tasks: reasoning_gym.count_primes 0.9")
    assert not lines[first + 2].startswith("  warning")
    warning = [line for line in lines if line.startswith("  warning: ")]
    assert len(warning) == 1 and "its adapter will be close to the generic one" in warning[0]
    assert "read 2 adapter(s) from the adapter cache" in lines[-1]  # the cache kept the nearest tasks


def test_a_resaved_hypernetwork_keeps_its_centroids(tmp_path, tiny_folder_with_centroids):
    """save_pretrained writes the centroids it was loaded with, so a re-saved or pushed checkpoint keeps them."""
    folder, centroids = tiny_folder_with_centroids
    again = tmp_path / "again"
    T2LModel.from_pretrained(folder).save_pretrained(again)
    kept = load_task_centroids(again)
    assert kept is not None and kept.names == centroids.names
    assert torch.equal(kept.centroids, centroids.centroids) and kept.threshold == centroids.threshold
    fresh = tmp_path / "fresh"
    T2LModel(T2LModel.from_pretrained(folder).config).save_pretrained(fresh)  # a new network has no tasks yet
    assert not (fresh / TASK_CENTROIDS_FILE).exists()
