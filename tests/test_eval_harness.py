"""`t2l eval` end to end on the tiny model: two tiny local benchmarks (multiple choice and generation), a tiny
task collection, every condition, adapter bookkeeping, outputs, determinism and the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from text2lora.evaluation.benchmarks import BENCHMARKS, load_task_configs
from text2lora.evaluation.eval_config import EvalConfig
from text2lora.evaluation.runner import EvalRunner
from text2lora.fingerprints import model_fingerprint

FIXTURES = Path(__file__).parent / "fixtures" / "eval"
DATA = FIXTURES / "benchmarks"
DESCRIPTIONS = FIXTURES / "descriptions"


def _save_lora(base_dir: Path, out: Path, seed: int) -> Path:
    """A PEFT LoRA for the tiny base with non-zero A and B, so it changes the model's outputs."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(base_dir)
    model = get_peft_model(base, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.5)
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def adapters(tiny_base_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("adapters")
    mt = _save_lora(tiny_base_dir, root / "mt_lora", seed=1)
    _save_lora(tiny_base_dir, root / "oracles" / "arc_easy", seed=2)
    return {"mt": mt, "oracles": root / "oracles"}


@pytest.fixture(scope="module")
def collection_dir(tmp_path_factory):
    """A collection in the schema of text2lora.data.schema: one multiple-choice and one free-form held-out task."""
    from datasets import Dataset, DatasetDict

    rows = []
    for i in range(6):
        rows.append({
            "task": "fixture.colors", "source": "fixture", "license": "Apache-2.0",
            "descriptions": ["Name the colour of the object.", "Say what colour it is."],
            "heldout_descriptions": ["Pick the colour that matches the object.", "Which colour is it?"],
            "prompt": f"What colour is item {i}?\nOptions:\n- red\n- blue\n- green", "completion": ["red", "blue", "green"][i % 3],
            "choices": ["red", "blue", "green"], "answer": ["red", "blue", "green"][i % 3], "num_tokens": 20,
        })
        rows.append({
            "task": "fixture.echo", "source": "fixture", "license": "Apache-2.0",
            "descriptions": ["Repeat the word.", "Echo the input back."],
            "heldout_descriptions": ["Copy the given word exactly.", "Write the word again."],
            "prompt": f"Word: apple{i}", "completion": f"apple{i}", "choices": [], "answer": f"apple{i}", "num_tokens": 12,
        })
    path = tmp_path_factory.mktemp("collection") / "collection"  # laid out as `t2l data build` writes it
    dataset = DatasetDict({"train": Dataset.from_list(rows[:2]), "validation": Dataset.from_list(rows)})
    dataset.save_to_disk(str(path / "dataset"))
    return path


def _config(out: Path | None, adapters, collection_dir, **overrides) -> EvalConfig:
    settings = dict(
        base_model="unused-when-a-model-is-passed",
        t2l="tiny",
        mt_lora=str(adapters["mt"]),
        oracle_loras=str(adapters["oracles"]),
        benchmarks=["arc_easy", "gsm8k"],
        limit=4,
        generation_limit=2,
        seed=0,
        num_descriptions=2,
        data_dir=str(DATA),
        descriptions_dir=str(DESCRIPTIONS),
        collection=str(collection_dir),
        max_gen_toks=8,
        batch_size=4,
        bootstrap_iterations=200,
        output_dir=None if out is None else str(out),
        show_progress=False,
    )
    settings.update(overrides)
    return EvalConfig(**settings)


def _load(tiny_base_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_base_dir)
    tokenizer.bos_token, tokenizer.eos_token = tokenizer.cls_token, tokenizer.sep_token  # a word-piece tokenizer has neither
    return AutoModelForCausalLM.from_pretrained(tiny_base_dir).eval(), tokenizer


@pytest.fixture(scope="module")
def full_run(tiny_base_dir, tiny_config, adapters, collection_dir, tmp_path_factory):
    """Every condition once, on a model that is kept (with its adapters) for later checks."""
    from text2lora import T2LModel

    torch.manual_seed(0)
    t2l = T2LModel(tiny_config).eval()
    with torch.no_grad():
        for head in t2l.heads.values():
            head.weight.normal_(0.0, 0.05)
            head.bias.normal_(0.0, 0.05)
    model, tokenizer = _load(tiny_base_dir)
    out = tmp_path_factory.mktemp("eval") / "run1"
    results = EvalRunner(_config(out, adapters, collection_dir), model=model, tokenizer=tokenizer, hypernetwork=t2l).run()
    return {"results": results, "out": out, "model": model, "tokenizer": tokenizer, "t2l": t2l}


def test_every_condition_and_task_has_results(full_run):
    results = full_run["results"]
    assert list(results["conditions"]) == [
        "base", "description", "fewshot", "mt_lora", "oracle_lora", "t2l", "t2l_other", "t2l_random"
    ]
    assert set(results["tasks"]) == {"arc_easy", "gsm8k", "fixture.colors", "fixture.echo"}
    arc = results["tasks"]["arc_easy"]
    assert arc["primary_metric"] == "acc_norm" and arc["n_examples"] == 4 and arc["n_available"] == 10
    for condition in results["conditions"]:
        metrics = arc["conditions"][condition]["metrics"]
        assert 0.0 <= metrics["acc"]["mean"] <= 1.0 and 0.0 <= metrics["acc_norm"]["mean"] <= 1.0
    gsm = results["tasks"]["gsm8k"]
    assert gsm["n_examples"] == 2 and "exact_match" in gsm["conditions"]["base"]["metrics"]
    assert "oracle_lora" not in gsm["conditions"]  # no oracle folder for gsm8k: a gap, not a number
    assert "gsm8k" in results["missing_oracles"]
    assert results["tasks"]["fixture.colors"]["primary_metric"] == "acc_norm"
    echo = results["tasks"]["fixture.echo"]["conditions"]["base"]["metrics"]
    assert echo["completion_nll"]["mean"] > 0 and 0 <= echo["greedy_match"]["mean"] <= 1
    # description conditions ran once per description, with mean and spread
    t2l = arc["conditions"]["t2l"]
    assert t2l["n_runs"] == 2 and len(t2l["metrics"]["acc"]["runs"]) == 2


def test_each_run_records_the_adapter_the_model_reported(full_run):
    runs = full_run["results"]["runs"]
    by_condition = {}
    for run in runs:
        by_condition.setdefault(run["condition"], []).append(run)
    for condition in ("base", "description", "fewshot"):
        assert all(r["adapter"]["active"] is None for r in by_condition[condition])
    assert all(r["adapter"]["active"] == "mt_lora" for r in by_condition["mt_lora"])
    assert [r["adapter"]["active"] for r in by_condition["oracle_lora"]] == ["oracle_arc_easy"]
    assert by_condition["oracle_lora"][0]["adapter"]["path"].endswith("arc_easy")
    t2l_runs = [r for c in ("t2l", "t2l_other", "t2l_random") for r in by_condition[c]]
    assert all(r["adapter"]["active"] == "t2l" and r["adapter"]["description"] == r["description"] for r in t2l_runs)
    # a new description gives a new adapter: the weight checksums differ between descriptions
    checksums = {r["description"]: r["adapter"]["checksum"] for r in t2l_runs}
    assert len(set(checksums.values())) == len(checksums) > 2


def test_prompts_carry_the_description_or_the_shots(full_run):
    runs = {(r["condition"], r["task"], r["variant"]): r for r in full_run["results"]["runs"]}
    described = runs[("description", "arc_easy", 0)]
    assert described["description"] in described["example_prompt"]
    assert described["description"] not in runs[("base", "arc_easy", 0)]["example_prompt"]
    t2l = runs[("t2l", "arc_easy", 0)]
    assert t2l["description"] not in t2l["example_prompt"]  # T2L gets the description only as an adapter
    fewshot = runs[("fewshot", "arc_easy", 0)]["example_prompt"]
    lines = (DATA / "arc_easy" / "ARC-Easy-Train.jsonl").read_text().splitlines()
    train_stems = [json.loads(line)["question"]["stem"] for line in lines]
    assert sum(stem in fewshot for stem in train_stems) == 3
    assert "<|im_start|>" in runs[("base", "arc_easy", 0)]["example_prompt"]  # chat template applied
    other = [r for r in full_run["results"]["runs"] if r["condition"] == "t2l_other" and r["task"] == "arc_easy"]
    assert all(r["description_origin"] not in ("arc_easy", "arc_challenge") for r in other)


def test_adapters_change_outputs_and_base_stays_the_base(full_run):
    examples = [json.loads(line) for line in (full_run["out"] / "examples.jsonl").read_text().splitlines()]
    logliks = {(e["condition"], e["example"]): e["logliks"] for e in examples if e["task"] == "arc_easy" and e["variant"] == 0}
    shared = [ex for (c, ex) in logliks if c == "base"]
    assert shared and all(logliks[("mt_lora", ex)] != logliks[("base", ex)] for ex in shared)
    assert all(logliks[("oracle_lora", ex)] != logliks[("mt_lora", ex)] for ex in shared)


def test_base_after_adapters_were_loaded_matches_a_fresh_model(full_run, adapters, collection_dir, tiny_base_dir):
    """The model used above still holds mt_lora, an oracle and a T2L adapter: the base condition must disable
    them all and reproduce a never-adapted model exactly."""
    config = _config(None, adapters, collection_dir, conditions=["base"], collection=None, benchmarks=["arc_easy"])
    again = EvalRunner(config, model=full_run["model"], tokenizer=full_run["tokenizer"]).run()
    fresh_model, tokenizer = _load(tiny_base_dir)
    fresh = EvalRunner(config, model=fresh_model, tokenizer=tokenizer).run()
    assert again["tasks"]["arc_easy"]["conditions"] == fresh["tasks"]["arc_easy"]["conditions"]
    assert again["tasks"]["arc_easy"]["conditions"]["base"] == full_run["results"]["tasks"]["arc_easy"]["conditions"]["base"]
    assert again["runs"][0]["adapter"]["active"] is None


def test_mixed_descriptions_run_the_mix_of_the_held_out_descriptions(full_run, adapters, collection_dir):
    config = _config(None, adapters, collection_dir, benchmarks=["arc_easy"], collection=None, conditions=["t2l", "t2l_mix"])
    results = EvalRunner(config, model=full_run["model"], tokenizer=full_run["tokenizer"], hypernetwork=full_run["t2l"]).run()
    singles = [r for r in results["runs"] if r["condition"] == "t2l"]
    (mix,) = [r for r in results["runs"] if r["condition"] == "t2l_mix"]
    assert mix["description"] == [r["description"] for r in singles]  # the same held-out descriptions, all at once
    expected = full_run["t2l"].mix_lora(mix["description"], [0.5, 0.5])  # what the model had active
    assert mix["adapter"]["checksum"] == pytest.approx(sum(float(t.abs().sum()) for t in expected.state_dict.values()), rel=1e-5)
    assert mix["adapter"]["checksum"] not in [r["adapter"]["checksum"] for r in singles]
    pairs = {(r["a"], r["b"], r["scope"]) for r in results["paired"]}
    assert ("t2l_mix", "t2l", "arc_easy") in pairs


def test_outputs_are_written(full_run):
    out = full_run["out"]
    for name in ("results.json", "examples.jsonl", "results.md", "results.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = (out / "results.md").read_text()
    assert "| arc_easy | acc_norm | 4 |" in markdown and "T2L (held-out desc.)" in markdown
    assert "Paired per-example differences" in markdown
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["tasks"].keys() == full_run["results"]["tasks"].keys()
    pairs = {(r["a"], r["b"], r["scope"]) for r in on_disk["paired"]}
    assert ("t2l", "t2l_random", "arc_easy") in pairs and ("t2l", "t2l_random", "all benchmarks") in pairs


def test_rerun_with_the_same_seed_gives_identical_numbers(full_run, adapters, collection_dir, tiny_base_dir):
    """A fresh model and runner, same seed: identical examples, descriptions and numbers; another seed draws
    other examples."""
    model, tokenizer = _load(tiny_base_dir)
    config = _config(None, adapters, collection_dir)
    second = EvalRunner(config, model=model, tokenizer=tokenizer, hypernetwork=full_run["t2l"]).run()
    first = full_run["results"]
    assert second["tasks"] == first["tasks"]
    assert second["paired"] == first["paired"]
    assert [r["description"] for r in second["runs"]] == [r["description"] for r in first["runs"]]
    other_seed = EvalRunner(
        _config(None, adapters, collection_dir, seed=1, conditions=["base"], collection=None),
        model=model, tokenizer=tokenizer,
    ).run()
    assert other_seed["tasks"]["arc_easy"]["example_indices"] != first["tasks"]["arc_easy"]["example_indices"]


def test_resume_reuses_finished_runs(full_run, adapters, collection_dir, tiny_base_dir):
    model, tokenizer = _load(tiny_base_dir)
    config = _config(full_run["out"], adapters, collection_dir, resume=True)
    resumed = EvalRunner(config, model=model, tokenizer=tokenizer, hypernetwork=full_run["t2l"]).run()
    assert resumed["tasks"] == full_run["results"]["tasks"]
    assert [r["wall_s"] for r in resumed["runs"]] == [r["wall_s"] for r in full_run["results"]["runs"]]


def test_resume_keys_saved_runs_by_content_not_by_name_or_path(full_run, collection_dir, tiny_base_dir, tmp_path):
    """A hypernetwork, an adapter folder or a base model changed under the same name and path is never mistaken
    for the old one: only the runs that depend on what changed are computed again, the rest are reused."""
    import copy

    mt = _save_lora(tiny_base_dir, tmp_path / "mt_lora", seed=1)
    settings = dict(conditions=["base", "mt_lora", "t2l"], benchmarks=["arc_easy"], collection=None, resume=True)
    config = _config(tmp_path / "out", {"mt": mt, "oracles": None}, collection_dir, oracle_loras=None, **settings)

    def run(hypernetwork, model=None, tokenizer=None):  # each run's fingerprint and the inode of its saved file
        model, tokenizer = model or _load(tiny_base_dir)[0], tokenizer or full_run["tokenizer"]
        result = EvalRunner(config, model=model, tokenizer=tokenizer, hypernetwork=hypernetwork).run()
        saved = {path.stem: path.stat().st_ino for path in (tmp_path / "out" / "runs").glob("*.json")}
        return {
            (r["condition"], r["variant"]): (r["fingerprint"], saved[f"{r['condition']}__arc_easy__{r['variant']}"])
            for r in result["runs"]
        }

    first = run(full_run["t2l"])
    assert run(full_run["t2l"]) == first  # nothing changed: every run reused

    _save_lora(tiny_base_dir, mt, seed=3)  # the adapter retrained in place: same folder, new weights
    retrained = copy.deepcopy(full_run["t2l"])  # the hypernetwork retrained: same name ("tiny"), new weights
    with torch.no_grad():
        next(iter(retrained.heads.values())).bias.add_(0.01)
    second = run(retrained)
    assert second[("base", 0)] == first[("base", 0)]
    for key in second:
        if key[0] != "base":
            assert second[key][0] != first[key][0] and second[key][1] != first[key][1], key

    model = _load(tiny_base_dir)[0]
    with torch.no_grad():
        next(model.parameters()).add_(0.01)  # a different base model under the same name
    third = run(retrained, model)
    assert all(third[key][0] != second[key][0] for key in third)
    saved = {r["condition"]: r["content"] for r in json.loads((tmp_path / "out" / "results.json").read_text())["runs"]}
    assert set(saved["base"]) == {"base_model", "tokenizer"}  # the records say what they ran on
    assert saved["base"]["base_model"] == saved["t2l"]["base_model"] != saved["mt_lora"]["adapter"]
    assert saved["t2l"]["adapter"] == model_fingerprint(retrained) != model_fingerprint(full_run["t2l"])

    tokenizer = copy.deepcopy(full_run["tokenizer"])
    tokenizer.add_tokens(["<new-token>"])  # another tokenizer under the same name
    assert all(run(retrained, model, tokenizer)[key][0] != third[key][0] for key in third)
    again = {r["condition"]: r["content"] for r in json.loads((tmp_path / "out" / "results.json").read_text())["runs"]}
    # the same model, now carrying the adapters the last run injected: its base weights hash as before
    assert again["base"]["base_model"] == saved["base"]["base_model"]
    assert again["base"]["tokenizer"] != saved["base"]["tokenizer"]


def test_a_pickled_adapter_is_refused_with_a_clear_error(full_run, adapters, collection_dir, tmp_path):
    folder = tmp_path / "bin_adapter"
    folder.mkdir()
    shutil.copy(adapters["mt"] / "adapter_config.json", folder)
    (folder / "adapter_model.bin").write_bytes(b"not loaded")
    with pytest.raises(FileNotFoundError, match="adapter_model.bin is a pickle"):  # --mt-lora: before anything runs
        _config(None, {"mt": folder, "oracles": None}, collection_dir, oracle_loras=None, conditions=["mt_lora"],
                benchmarks=["arc_easy"], collection=None)
    from text2lora.evaluation.adapter_switch import AdapterSwitch
    from text2lora.evaluation.conditions import AdapterRef

    switch = AdapterSwitch(full_run["model"], None)  # an oracle LoRA folder is checked when it is loaded
    with pytest.raises(FileNotFoundError, match="adapter_model.bin is a pickle"):
        switch.activate(AdapterRef(kind="peft", name="oracle_x", path=str(folder)))


def test_collection_generate_reports_exact_match_beside_nll(full_run, adapters, collection_dir, tmp_path):
    """--collection-generate: a generation task's exact match is a metric of its own in the table, the summary
    and the paired differences; `t2l eval-combine` shows it for runs saved before it was listed."""
    from text2lora.evaluation.paired import HELDOUT_NLL_SCOPE
    from text2lora.evaluation.pooling import combined_paired_report

    out = tmp_path / "generate"
    config = _config(out, adapters, collection_dir, benchmarks=[], conditions=["base", "t2l"], collection_generate=True)
    results = EvalRunner(config, model=full_run["model"], tokenizer=full_run["tokenizer"], hypernetwork=full_run["t2l"]).run()
    echo, colors = results["tasks"]["fixture.echo"], results["tasks"]["fixture.colors"]
    assert (echo["primary_metric"], echo["extra_metrics"], colors["extra_metrics"]) == ("completion_nll", ["exact_match"], [])
    rows = [json.loads(line) for line in (out / "examples.jsonl").read_text().splitlines()]
    matches = [r["metrics"]["exact_match"] for r in rows if r["task"] == "fixture.echo" and "exact_match" in r["metrics"]]
    assert len(matches) == 3 * 4 and set(matches) <= {0.0, 1.0}  # base and 2 descriptions' T2L runs x 4 examples
    summary = results["summary"][f"{HELDOUT_NLL_SCOPE} [exact_match]"]
    assert summary["base"]["mean"] == echo["conditions"]["base"]["metrics"]["exact_match"]["mean"]
    assert any(r["metric"] == "exact_match" for r in results["paired"])

    saved = json.loads((out / "results.json").read_text())
    for task in saved["tasks"].values():
        task["extra_metrics"] = []  # as written before exact match was listed
    (out / "results.json").write_text(json.dumps(saved))
    pooled = combined_paired_report([out])
    assert pooled["tasks"]["fixture.echo"]["extra_metrics"] == ["exact_match"]
    assert pooled["tasks"]["fixture.echo"]["conditions"]["base"]["metrics"]["exact_match"]["mean"] == summary["base"]["mean"]


def test_cli_runs_base_and_fewshot(tiny_base_dir, tmp_path, capsys):
    import shutil

    from text2lora.cli import main

    base = tmp_path / "base"
    shutil.copytree(tiny_base_dir, base)
    _load(tiny_base_dir)[1].save_pretrained(base)  # with bos/eos tokens set
    out = tmp_path / "cli"
    code = main([
        "eval", "--base", str(base), "--benchmarks", "arc_easy", "--conditions", "base,fewshot",
        "--limit", "3", "--data-dir", str(DATA), "--out", str(out), "--quiet", "--batch-size", "4",
    ])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["tasks"]["arc_easy"]["conditions"]) == {"base", "fewshot"}
    assert "| arc_easy |" in capsys.readouterr().out


def test_bad_inputs_fail_with_clear_messages(tmp_path, tiny_base_dir):
    from text2lora.cli import main

    with pytest.raises(ValueError, match="Unknown benchmark"):
        EvalConfig(benchmarks=["nope"])
    with pytest.raises(ValueError, match="positive"):
        EvalConfig(limit=0)
    with pytest.raises(FileNotFoundError, match="mt-lora"):
        EvalConfig(mt_lora=str(tmp_path / "missing"))
    code = main(["eval", "--base", str(tiny_base_dir), "--benchmarks", "arc_easy", "--conditions", "t2l",
                 "--data-dir", str(DATA), "--out", str(tmp_path / "o"), "--quiet"])
    assert code == 1  # t2l without --t2l: a message, not a traceback
    with pytest.raises(FileNotFoundError, match="data-dir"):
        load_task_configs(["arc_easy"], tmp_path)


def test_every_shipped_task_config_points_at_its_files():
    """The ten YAMLs parse and name data files; checked against the real data folder when it is present."""
    from text2lora.evaluation.benchmarks import DEFAULT_BENCHMARK_DIR

    for spec in BENCHMARKS.values():
        assert spec.yaml_path.is_file(), spec.yaml_path
    if DEFAULT_BENCHMARK_DIR.is_dir():
        configs = load_task_configs(list(BENCHMARKS), DEFAULT_BENCHMARK_DIR)
        assert {c["task"] for c in configs.values()} == {s.task_name for s in BENCHMARKS.values()}


def test_eval_combine_pools_runs(full_run, tmp_path, capsys):
    from text2lora.cli import main

    code = main(["eval-combine", str(full_run["out"]), str(full_run["out"]), "--pairs", "t2l-t2l_random",
                 "--out", str(tmp_path / "combined")])
    assert code == 0
    pooled = json.loads((tmp_path / "combined" / "paired.json").read_text())["paired"]
    single = {r["scope"]: r for r in full_run["results"]["paired"] if (r["a"], r["b"]) == ("t2l", "t2l_random")}
    for row in pooled:
        # the same run twice: twice the rows, the same mean difference
        assert row["n"] == 2 * single[row["scope"]]["n"]
        assert row["mean_diff"] == pytest.approx(single[row["scope"]]["mean_diff"])
    assert "t2l_random" in capsys.readouterr().out


def test_eval_combine_pools_means_and_plots(full_run, tmp_path):
    from text2lora.cli import main

    other = tmp_path / "other"
    shutil.copytree(full_run["out"], other)
    rows = [json.loads(line) for line in (other / "examples.jsonl").read_text().splitlines()]
    for row in rows:  # a second "seed" on which T2L got every arc_easy example wrong
        if row["task"] == "arc_easy" and row["condition"] == "t2l":
            row["metrics"]["acc_norm"] = 0.0
    (other / "examples.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))

    out = tmp_path / "combined"
    assert main(["eval-combine", str(full_run["out"]), str(other), "--out", str(out)]) == 0
    report = json.loads((out / "paired.json").read_text())
    single = full_run["results"]["tasks"]["arc_easy"]["conditions"]
    arc = report["tasks"]["arc_easy"]
    assert arc["n_examples"] == 2 * full_run["results"]["tasks"]["arc_easy"]["n_examples"]
    assert arc["conditions"]["base"]["metrics"]["acc_norm"]["mean"] == pytest.approx(
        single["base"]["metrics"]["acc_norm"]["mean"]
    )
    assert arc["conditions"]["t2l"]["metrics"]["acc_norm"]["mean"] == pytest.approx(
        single["t2l"]["metrics"]["acc_norm"]["mean"] / 2
    )
    benchmarks = report["summary"]["benchmarks"]
    assert set(benchmarks) == set(full_run["results"]["conditions"])
    assert report["seeds"] == [full_run["results"]["config"]["seed"]] * 2
    markdown = (out / "paired.md").read_text()
    assert "| arc_easy | acc_norm |" in markdown and "T2L (held-out desc.)" in markdown
    assert (out / "pooled.png").read_bytes()[:4] == b"\x89PNG"


def test_other_task_descriptions_do_not_depend_on_how_held_out_tasks_are_split(full_run, adapters, collection_dir, tmp_path):
    """A run over one held-out task picks the same "other task" descriptions as a run over all of them, so an
    evaluation split over processes with --collection-tasks and assembled with --resume reuses every run."""

    def other_runs(out, **overrides):
        config = _config(out, adapters, collection_dir, benchmarks=[], conditions=["t2l_other"], **overrides)
        runner = EvalRunner(config, model=full_run["model"], tokenizer=full_run["tokenizer"], hypernetwork=full_run["t2l"])
        runs = runner.run()["runs"]
        return {(r["task"], r["variant"]): (r["description"], r["description_origin"]) for r in runs}

    together = other_runs(tmp_path / "all")
    alone = other_runs(tmp_path / "one", collection_tasks=["fixture.colors"])
    assert set(alone) == {k for k in together if k[0] == "fixture.colors"} and alone
    assert alone == {k: v for k, v in together.items() if k[0] == "fixture.colors"}
    assert all(origin == "fixture.echo" for _, origin in alone.values())  # the only other held-out task


def test_plot_labels_wrap_long_task_names_without_losing_characters():
    from text2lora.evaluation.report import _wrapped

    name = "natural_instructions.subtask027_drop_answer_type_generation"
    lines = _wrapped(name, width=16).split("\n")
    assert "".join(lines) == name and len(lines) > 2
    assert all(len(line) <= 16 or "_" not in line and "." not in line for line in lines)
    assert _wrapped("arc_easy") == "arc_easy"
    assert _wrapped("avg: held-out tasks (completion NLL)", width=16).replace("\n", " ") == "avg: held-out tasks (completion NLL)"
