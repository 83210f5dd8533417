"""The generative protocol of `t2l eval`: the paper's scoring rule and the lenient one on hand-written replies,
the task scorers on the real benchmark prompts, and a run through lm-eval on the tiny model (every condition),
reported beside the log-likelihood protocol by `t2l eval-protocols`."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from text2lora.evaluation.benchmarks import BENCHMARKS, MULTIPLE_CHOICE_BENCHMARKS, load_task_configs
from text2lora.evaluation.metrics import (
    lenient_bool,
    lenient_choice,
    paper_bool,
    paper_choice,
    paper_choice_correct,
)
from text2lora.evaluation.eval_config import EvalConfig
from text2lora.evaluation.runner import EvalRunner

FIXTURES = Path(__file__).parent / "fixtures" / "eval"
DATA = FIXTURES / "benchmarks"
DESCRIPTIONS = FIXTURES / "descriptions"
LETTERS = ["A", "B", "C", "D"]
OPTIONS = ["a leg muscle relaxing", "a bacterial population in the bloodstream", "viral particles on the skin",
           "carbohydrates being digested"]


# ------------------------------------------------------------------------------------ hand-written replies


@pytest.mark.parametrize(
    ("reply", "paper", "lenient"),
    [
        ("B", True, True),
        ("B.", True, True),
        ("(B)", True, True),
        ("b: text", True, True),
        ("B: a bacterial population in the bloodstream.", True, True),
        (" 'B' ", True, True),
        ("**B**", False, True),  # the paper does not strip markdown
        ("The answer is B", False, True),  # the paper reads "t"
        ("The correct answer is B:", False, True),
        ("Answer: B", False, True),  # the paper reads "a"
        ("I think option B is right.", False, True),
        ("Sure!\nB: a bacterial population in the bloodstream", False, True),
        ("It is a bacterial population in the bloodstream.", False, True),  # only this option's text
        ("C", False, False),
        ("The answer is C", False, False),
        ("A bacterial population", False, False),  # the article "A" is not the label A (paper: "a", wrong here)
        ("", False, False),
        ("A\nB\nC\nD", False, False),  # paper: "a"; lenient: starts with A, not the gold B
    ],
)
def test_option_rules_on_letter_replies(reply, paper, lenient):
    assert paper_choice_correct(reply, "B") == float(paper)
    assert (lenient_choice(reply, LETTERS, OPTIONS) == "B") is lenient


def test_paper_rule_reads_the_first_label_and_lenient_what_is_named():
    assert paper_choice("B.") == "b" and paper_choice("(b)") == "b" and paper_choice("`C`") == "c"
    assert paper_choice("The answer is B") == "t"  # a letter, just not the answer's
    assert paper_choice("**B**") is None
    assert paper_choice("10") == "1"  # the paper tries 0-9 before 10
    assert lenient_choice("The answer is a plant.", LETTERS, OPTIONS) is None  # "a" before a word is an article
    assert lenient_choice("A man walks in.", LETTERS, OPTIONS) is None
    assert lenient_choice("A", LETTERS, OPTIONS) == "A" and lenient_choice("a.", LETTERS, OPTIONS) == "A"
    assert lenient_choice("A: x\nB: y", LETTERS, OPTIONS) == "A"  # starts with a label: that one
    assert lenient_choice("Options:\n- A: x\n- B: y", LETTERS, OPTIONS) is None  # lists several labels: none


@pytest.mark.parametrize(
    ("reply", "labels", "gold", "paper", "lenient"),
    [
        ("2", ["0", "1", "2", "3"], "2", True, True),  # HellaSwag: endings 0-3
        ("0", ["0", "1", "2", "3"], "0", True, True),
        ("3: starts pulling up roofing.", ["0", "1", "2", "3"], "3", True, True),
        ("The correct ending is 3.", ["0", "1", "2", "3"], "3", False, True),
        ("C", ["0", "1", "2", "3"], "2", False, False),  # a letter is not the third ending
        ("1", ["0", "1"], "1", True, True),  # PIQA: solutions 0 and 1
        ("`0`", ["0", "1"], "0", True, True),
        ("2", ["1", "2"], "2", True, True),  # WinoGrande: options 1 and 2
        ("Option 2", ["1", "2"], "2", False, True),
        ("Option 2: Maria", ["1", "2"], "2", False, True),
        ("1", ["1", "2"], "2", False, False),
        ("12", ["1", "2"], "1", True, False),  # paper: starts with "1"; lenient: no standalone label
    ],
)
def test_option_rules_on_numbered_replies(reply, labels, gold, paper, lenient):
    assert paper_choice_correct(reply, gold) == float(paper)
    assert (lenient_choice(reply, labels, ["first option", "second option", "third one", "fourth one"]) == gold) is lenient


@pytest.mark.parametrize(
    ("reply", "paper", "lenient"),
    [
        ("true", True, True),
        ("True.", True, True),
        ("yes", True, True),
        ("**Yes**", True, True),
        ("1", True, True),
        ("false", False, False),
        ("False.", False, False),
        ("No, it does not.", False, False),
        ("0", False, False),
        ("The statement is true.", True, True),
        ("I know it is true.", False, True),  # the paper finds "no" in "know" first
        ("It is invalid.", True, None),  # the paper finds "valid" first
        ("Maybe.", None, None),
        ("", None, None),
    ],
)
def test_boolean_rules(reply, paper, lenient):
    assert paper_bool(reply) is paper
    assert lenient_bool(reply) is lenient


# ------------------------------------------------------------------------------ task scorers on real docs


def _task_utils():
    path = Path(__import__("text2lora.evaluation.tasks", fromlist=["x"]).__file__).parent / "utils.py"
    spec = importlib.util.spec_from_file_location("t2l_task_utils_protocols", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_task_scorers_known_answers():
    utils = _task_utils()
    arc = {"labels": LETTERS, "options": OPTIONS, "gold_label": "B"}
    assert utils.option_process_results(arc, ["B"]) == {"acc": 1.0, "acc_lenient": 1.0}
    assert utils.option_process_results(arc, ["The answer is B"]) == {"acc": 0.0, "acc_lenient": 1.0}
    assert utils.option_process_results(arc, ["D"]) == {"acc": 0.0, "acc_lenient": 0.0}
    boolq = {"answer": True, "gold_label": "true"}
    assert utils.boolq_process_results(boolq, ["True."]) == {"acc": 1.0, "acc_lenient": 1.0}
    assert utils.boolq_process_results(boolq, ["false"]) == {"acc": 0.0, "acc_lenient": 0.0}
    assert utils.boolq_process_results({"answer": False, "gold_label": "false"}, ["No."]) == {"acc": 1.0, "acc_lenient": 1.0}


def test_generative_configs_render_the_papers_prompts_and_score_their_own_gold():
    """Every generative config over the real data: the paper's prompt wording, labels as the paper numbers them,
    and the gold answer (the few-shot target) scored right by both rules."""
    from lm_eval.tasks import TaskManager

    from text2lora.evaluation.benchmarks import DEFAULT_BENCHMARK_DIR

    if not DEFAULT_BENCHMARK_DIR.is_dir():
        pytest.skip(f"benchmark data not present at {DEFAULT_BENCHMARK_DIR}")
    expected = {
        "arc_easy": ("You must respond with the letter corresponding to the correct choice without any explanation.",
                     "\nA: ", set("ABCD1234E")),
        "arc_challenge": ("Answer the question below by choosing the correct choice.", "\nD: ", set("ABCD1234E")),
        "openbookqa": ("correct choice (A,B,C,D) without any explanation.", "\nC: ", set("ABCD")),
        "hellaswag": ("Treat the endings as being labelled 0, 1, 2, 3 in order.", "\n3: ", set("0123")),
        "piqa": ('"""', "\n1: ", {"0", "1"}),
        "winogrande": ("Which option is correct?", "Option 2: ", {"1", "2"}),
        "boolq": ("Please answer with either `true` or `false` without any explanation.", "\n\nQuestion: ",
                  {"true", "false"}),
    }
    configs = load_task_configs(list(MULTIPLE_CHOICE_BENCHMARKS), DEFAULT_BENCHMARK_DIR, "generative")
    assert set(configs) == set(expected)
    for name, cfg in configs.items():
        assert cfg["output_type"] == "generate_until" and cfg["generation_kwargs"]["do_sample"] is False
        task = TaskManager(include_defaults=False).load([cfg])["tasks"][cfg["task"]]
        docs = task.eval_docs
        phrase, option, golds = expected[name]
        for doc in [docs[i] for i in (0, 1, len(docs) - 1)]:
            prompt, target = task.doc_to_text(doc), task.doc_to_target(doc)
            assert phrase in prompt and option in prompt, name
            assert target in golds, (name, target)
            assert task.process_results(doc, [target]) == {"acc": 1.0, "acc_lenient": 1.0}
            assert task.process_results(doc, [f"**{target}**"])["acc_lenient"] == 1.0
    hellaswag = TaskManager(include_defaults=False).load([configs["hellaswag"]])["tasks"]["t2l_hellaswag_generative"]
    first = hellaswag.doc_to_text(hellaswag.eval_docs[0])
    assert "Passage: A man is sitting on a roof. he\n" in first  # the raw context, without the activity label


def test_generative_protocol_leaves_generation_benchmarks_alone():
    for name, spec in BENCHMARKS.items():
        if spec.kind == "multiple_choice":
            assert spec.yaml_path_for("generative").name == f"{name}_generative.yaml"
            assert spec.metrics_for("generative") == ("acc", "acc_lenient")
            assert spec.metrics_for("loglik") == ("acc_norm",)
        else:
            assert spec.yaml_path_for("generative") == spec.yaml_path_for("loglik") == spec.yaml_path
    with pytest.raises(ValueError, match="protocol"):
        EvalConfig(protocol="chat")


# ------------------------------------------------------------------------ end to end on the tiny model


def _save_lora(base_dir: Path, out: Path, seed: int) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base_dir),
                           LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    model.save_pretrained(out)
    return out


def _load(tiny_base_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_base_dir)
    tokenizer.bos_token, tokenizer.eos_token = tokenizer.cls_token, tokenizer.sep_token
    return AutoModelForCausalLM.from_pretrained(tiny_base_dir).eval(), tokenizer


@pytest.fixture(scope="module")
def protocol_runs(tiny_base_dir, tiny_config, tmp_path_factory):
    """ARC-Easy (fixture) under both protocols, every condition, on one tiny model with a non-zero T2L."""
    from text2lora import T2LModel

    root = tmp_path_factory.mktemp("protocols")
    mt_lora = _save_lora(tiny_base_dir, root / "mt_lora", seed=1)
    torch.manual_seed(0)
    t2l = T2LModel(tiny_config).eval()
    with torch.no_grad():
        for head in t2l.heads.values():
            head.weight.normal_(0.0, 0.05)
            head.bias.normal_(0.0, 0.05)
    out = {}
    for protocol in ("loglik", "generative"):
        model, tokenizer = _load(tiny_base_dir)  # a fresh model each time: a model keeps the adapters it was given
        config = EvalConfig(
            base_model="unused", t2l="tiny", mt_lora=str(mt_lora), benchmarks=["arc_easy"], protocol=protocol,
            limit=3, seed=0, num_descriptions=1, data_dir=str(DATA), descriptions_dir=str(DESCRIPTIONS),
            max_gen_toks=4, batch_size=4, bootstrap_iterations=100, output_dir=str(root / protocol),
            show_progress=False,
        )
        out[protocol] = EvalRunner(config, model=model, tokenizer=tokenizer, hypernetwork=t2l).run()
    return {"root": root, "results": out, "t2l": t2l, "mt_lora": mt_lora, "base_dir": tiny_base_dir}


def test_generative_protocol_runs_every_condition_through_lm_eval(protocol_runs):
    results = protocol_runs["results"]["generative"]
    arc = results["tasks"]["arc_easy"]
    assert arc["primary_metric"] == "acc" and arc["extra_metrics"] == ["acc_lenient"]
    assert set(arc["conditions"]) == {"base", "description", "fewshot", "mt_lora", "t2l", "t2l_other", "t2l_random"}
    examples = [json.loads(line) for line in (protocol_runs["root"] / "generative" / "examples.jsonl").open()]
    assert len(examples) == 7 * 3
    for example in examples:  # the recorded metrics are the rules applied to the recorded reply
        assert example["target"] in LETTERS and isinstance(example["response"], str)
        assert example["metrics"]["acc"] == paper_choice_correct(example["response"], example["target"])
        assert example["extracted"] == paper_choice(example["response"])
    runs = {r["condition"]: r for r in results["runs"]}
    assert "You must respond with the letter" in runs["base"]["example_prompt"]
    assert "<|im_start|>user" in runs["base"]["example_prompt"]  # one user message in the chat template
    assert runs["fewshot"]["example_prompt"].count("<|im_start|>assistant") == 4  # 3 answered shots + the reply
    assert runs["description"]["description"] in runs["description"]["example_prompt"]
    assert runs["mt_lora"]["adapter"]["active"] == "mt_lora" and runs["t2l"]["adapter"]["active"] == "t2l"
    assert results["summary"]["benchmarks [acc_lenient]"]["base"]["mean"] == arc["conditions"]["base"]["metrics"][
        "acc_lenient"]["mean"]
    markdown = (protocol_runs["root"] / "generative" / "results.md").read_text()
    assert "| arc_easy | acc | 3 |" in markdown and "| arc_easy | acc_lenient | 3 |" in markdown
    assert "protocol: `generative`" in markdown
    assert {r["metric"] for r in results["paired"] if r["scope"] == "all benchmarks"} <= {"primary", "acc_lenient"}
    assert any(r["metric"] == "acc_lenient" and r["scope"] == "arc_easy" for r in results["paired"])


def test_both_protocols_draw_the_same_examples_and_do_not_share_resumed_runs(protocol_runs):
    loglik, generative = protocol_runs["results"]["loglik"], protocol_runs["results"]["generative"]
    assert loglik["tasks"]["arc_easy"]["example_indices"] == generative["tasks"]["arc_easy"]["example_indices"]
    assert loglik["tasks"]["arc_easy"]["primary_metric"] == "acc_norm"
    fingerprints = {p: {r["condition"]: r["fingerprint"] for r in protocol_runs["results"][p]["runs"]} for p in
                    ("loglik", "generative")}
    assert all(fingerprints["loglik"][c] != fingerprints["generative"][c] for c in fingerprints["loglik"])
    # resuming the generative folder reuses its own runs, with the same numbers
    config = EvalConfig(
        base_model="unused", t2l="tiny", mt_lora=str(protocol_runs["mt_lora"]), benchmarks=["arc_easy"],
        protocol="generative", conditions=["base", "t2l"], limit=3, seed=0, num_descriptions=1, data_dir=str(DATA),
        descriptions_dir=str(DESCRIPTIONS), max_gen_toks=4, batch_size=4, bootstrap_iterations=100,
        output_dir=str(protocol_runs["root"] / "generative"), resume=True, show_progress=False,
    )
    model, tokenizer = _load(protocol_runs["base_dir"])
    resumed = EvalRunner(config, model=model, tokenizer=tokenizer, hypernetwork=protocol_runs["t2l"]).run()
    for run in resumed["runs"]:
        original = next(r for r in generative["runs"] if r["condition"] == run["condition"])
        assert run["wall_s"] == original["wall_s"] and run["metrics"] == original["metrics"]


def test_eval_protocols_puts_both_side_by_side(protocol_runs, tmp_path):
    from text2lora.cli import main

    root = protocol_runs["root"]
    out = tmp_path / "side-by-side"
    assert main(["eval-protocols", "--loglik", str(root / "loglik"), "--generative", str(root / "generative"),
                 "--out", str(out)]) == 0
    markdown = (out / "protocols.md").read_text()
    assert "generative, paper's rule (acc)" in markdown and "generative, lenient (acc_lenient)" in markdown
    report = json.loads((out / "protocols.json").read_text())
    single = {p: protocol_runs["results"][p]["tasks"]["arc_easy"]["conditions"]["base"]["metrics"] for p in
              ("loglik", "generative")}
    row = next(line for line in markdown.splitlines() if line.startswith("| base |"))
    cells = [c.strip() for c in row.strip("|").split("|")][1:]
    assert cells == [f"{100 * single['loglik']['acc_norm']['mean']:.1f}", f"{100 * single['generative']['acc']['mean']:.1f}",
                     f"{100 * single['generative']['acc_lenient']['mean']:.1f}"]
    assert report["benchmarks"] == ["arc_easy"]
    assert (out / "protocols.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="not 'loglik'"):
        main(["eval-protocols", "--loglik", str(root / "generative"), "--generative", str(root / "generative"),
              "--out", str(tmp_path / "bad"), "--debug"])


def test_papers_chat_set_up_a_template_file_and_an_empty_system_message(tiny_base_dir, tmp_path):
    """`--chat-template-file` replaces the tokenizer's template and `--empty-system-message` gives every prompt a
    system message (the paper's templates emit BOS only after one); both change the resume fingerprint."""
    template = tmp_path / "paper.jinja"
    template.write_text(
        "{{ bos_token }}{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}[/{{ m['role'] }}]{% endfor %}"
        "{% if add_generation_prompt %}[assistant]{% endif %}"
    )
    prompts, fingerprints = {}, {}
    for empty in (False, True):
        model, tokenizer = _load(tiny_base_dir)
        config = EvalConfig(
            base_model="unused", benchmarks=["arc_easy"], protocol="generative", conditions=["base"], limit=2,
            seed=0, data_dir=str(DATA), max_gen_toks=2, batch_size=2, chat_template_file=str(template),
            empty_system_message=empty, show_progress=False,
        )
        run = EvalRunner(config, model=model, tokenizer=tokenizer).run()["runs"][0]
        prompts[empty], fingerprints[empty] = run["example_prompt"], run["fingerprint"]
    bos = _load(tiny_base_dir)[1].bos_token
    assert prompts[False].startswith(f"{bos}[user]Answer the question below")
    assert prompts[True].startswith(f"{bos}[system][/system][user]Answer the question below")
    assert prompts[True].endswith("[/user][assistant]")
    assert fingerprints[False] != fingerprints[True]
    with pytest.raises(FileNotFoundError, match="chat-template-file"):
        EvalConfig(chat_template_file=str(tmp_path / "missing.jinja"))
    with pytest.raises(ValueError, match="dtype"):
        EvalConfig(dtype="int8")
