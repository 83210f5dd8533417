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
